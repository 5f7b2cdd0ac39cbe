/**
 * Loading models (a Hugging Face folder or hub id, safetensors or a restricted-unpickled
 * pytorch_model.bin), the OPT model with its forward, backward and KV-cached generation, LoRA
 * adapters in PEFT's format, quantized bases (int8, int4, NF4), merge and merged export, and the
 * model configuration.
 *
 * @module Models
 */
export * from '../model/index.js';
export * from '../config/index.js';
export * from '../hub/index.js';
