/**
 * Serving: an OpenAI-compatible HTTP server over a base model with LoRA adapters loaded by name.
 *
 * @module Serving
 */
export * from '../serve/index.js';
