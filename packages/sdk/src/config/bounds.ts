import { LoraError } from '../io/errors.js';

/**
 * Upper bounds for the integers of a config.json, whatever the family. They sit far above every
 * published model (the largest: 126 layers, hidden 16384, intermediate 53248, vocabulary 256k, 1 M
 * positions) and far below what would make loading itself the problem: `num_hidden_layers: 1e12`
 * spent 51 s and 2.85 GB listing expected tensor names before failing with an uncoded RangeError.
 */
export const CONFIG_INT_LIMITS: Readonly<Record<string, number>> = {
  num_hidden_layers: 1024,
  hidden_size: 65536,
  word_embed_proj_dim: 65536,
  ffn_dim: 1 << 20,
  intermediate_size: 1 << 20,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 4096,
  vocab_size: 1 << 22,
  max_position_embeddings: 1 << 24,
};

/**
 * Refuses any of the fields above whose number exceeds its limit, with E_CONFIG naming the field
 * (err.field), before any work sized by it. Types, lower bounds and relations (heads dividing
 * hidden_size...) stay with each family's parser, which reports all of its problems at once.
 */
export function checkConfigBounds(raw: Record<string, unknown>, where: string): void {
  for (const [field, max] of Object.entries(CONFIG_INT_LIMITS)) {
    const v = raw[field];
    if (typeof v === 'number' && v > max) {
      throw new LoraError('E_CONFIG', `${where}: ${field} is ${v}; the most this library accepts is ${max}`, { field });
    }
  }
}
