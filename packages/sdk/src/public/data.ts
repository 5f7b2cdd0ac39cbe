/**
 * Training data: CodeAlpaca-style records (`instruction`, `input`, `output`) from JSON, JSONL or
 * Parquet, the Alpaca prompt template, seeded train/test splits, tokenization (OPT's byte-level BPE),
 * batching with padding or packing, and synthetic records for tests.
 *
 * @module Data
 */
export * from '../data/index.js';
export * from '../tokenizer/index.js';
