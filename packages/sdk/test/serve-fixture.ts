// A tiny generated OPT (byte-level tokenizer, random weights) with two random adapters, for the
// serve tests: small enough that a request takes milliseconds on two cores.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ensureTinyModel, LORA_TARGETS, OptForCausalLM, OptTokenizer, syntheticCodeInstructions } from '../src/index.js';

export interface ServeFixture {
  root: string;
  modelDir: string;
  adapters: Record<string, string>;
  cleanup(): Promise<void>;
}

export async function makeServeFixture(adapterNames: string[]): Promise<ServeFixture> {
  const root = await mkdtemp(join(tmpdir(), 'lora-serve-'));
  const records = syntheticCodeInstructions(24, 3);
  const { dir } = await ensureTinyModel(join(root, 'model'), records, { hidden: 64, ffn: 128, layers: 2, heads: 4, embedDim: 32, merges: 200, maxPositions: 256, warmupRounds: 0 });
  const adapters: Record<string, string> = {};
  for (const [i, name] of adapterNames.entries()) {
    using m = await OptForCausalLM.fromPretrained(dir, { device: 'cpu' });
    // Random A and B (not PEFT's zero B), scaled up so each adapter visibly changes the output.
    m.addLora({ r: 4, alpha: 64, targetModules: [...LORA_TARGETS], initLoraWeights: false, seed: 11 + i });
    adapters[name] = join(root, `adapter-${name}`);
    await m.saveAdapter(adapters[name]);
  }
  return { root, modelDir: dir, adapters, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** What in-process greedy generate() gives for this text prompt and adapter (the reference). */
export async function referenceText(modelDir: string, adapterDir: string | undefined, prompt: string, maxNewTokens: number): Promise<{ text: string; tokens: number; ids: number[]; promptTokens: number }> {
  const tok = await OptTokenizer.fromPretrained(modelDir);
  using m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
  if (adapterDir) await m.loadAdapter(adapterDir);
  const ids = tok.encode(prompt);
  const r = await m.generate(ids, { maxNewTokens }); // a Promise since generate() went non-blocking; awaiting a plain result works too
  return { text: tok.decode(r.tokens, { skipSpecialTokens: true }), tokens: r.tokens.length, ids: r.tokens, promptTokens: ids.length };
}
