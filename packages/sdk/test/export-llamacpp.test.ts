// The GGUF export checked by the real consumer: llama.cpp (the prebuilt binary node-llama-cpp
// 3.21.1 ships) loads our files, and its next-token logits and greedy continuation match a PyTorch
// port of transformers' eager Llama / Qwen2 / Qwen3 forward on the same HF folder, and our own
// forward (the SDK's llama family); the LoRA adapter GGUF applied by llama.cpp changes the model as
// the merged export and our base + adapter do.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { exportModel } from '../src/export/export-model.js';
import { AutoModelForCausalLM } from '../src/models/auto.js';
import type { GgmlTypeName } from '../src/export/gguf-format.js';
import { hasTorch, makeTinyAdapter, makeTinyModel, torchReference, type Family, type Reference } from './export-tiny-models.js';

const dir = await mkdtemp(join(tmpdir(), 'gguf-llamacpp-'));
const torch = await hasTorch();
if (!torch) console.warn('export-llamacpp: skipped, /usr/bin/python3 has no torch (scripts/setup-system.sh installs python3-torch)');
// node-llama-cpp is a devDependency: if its prebuilt llama.cpp does not load, the tests fail (they do not skip).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let llama: any;
beforeAll(async () => {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  // build: 'never' — the prebuilt linux-x64 binary from the npm package, no download, no compile.
  llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
}, 120_000); // loading the binary took 3.5 s alone and over vitest's 10 s hook limit beside other test files
afterAll(async () => { await llama?.dispose(); await rm(dir, { recursive: true, force: true }); });

const PROMPT = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000];

interface CppRun { logprobs: Float64Array; greedy: number[] }

/**
 * llama.cpp's log-softmax over the whole vocab at the last prompt position, and 16 greedy tokens,
 * for the model alone and with each LoRA adapter given (one load, one context each).
 * Flash attention off and an f32 K/V cache: llama.cpp's CPU flash attention and its default f16
 * cache round K, V and the scores to f16 (measured 8e-3 on these log-probs for an f32 file, 6e-6
 * without), so with them on the comparison would measure the cache, not the file.
 */
async function runLlamaCpp(modelPath: string, vocab: number, loras: (string | undefined)[] = [undefined], inspect?: (model: any) => void): Promise<CppRun[]> {
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  try {
    inspect?.(model);
    const runs: CppRun[] = [];
    for (const lora of loras) {
      // One thread: a tiny model gains nothing from two, and ggml's spinning workers lose badly on a
      // shared 2-core machine (62 s -> 40 s for one family under load).
      const ctx = await model.createContext({
        contextSize: 64, batchSize: 64, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
        ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
      });
      const seq = ctx.getSequence();
      // No temperature: node-llama-cpp's greedy sampler, whose candidates are the full vocab with raw
      // logits; the probabilities it returns are their softmax.
      const first = await seq.controlledEvaluate([...PROMPT.slice(0, -1), [PROMPT.at(-1), { generateNext: { token: true, probabilities: true } }]]);
      const out = first.at(-1).next;
      const probs: Map<number, number> = out.probabilities;
      expect(probs.size).toBe(vocab);
      const logprobs = new Float64Array(vocab);
      for (const [id, p] of probs) logprobs[id] = Math.log(p);
      const greedy = [out.token as number];
      while (greedy.length < 16) {
        const r = await seq.controlledEvaluate([[greedy.at(-1), { generateNext: { token: true } }]]);
        greedy.push(r[0].next.token);
      }
      await ctx.dispose();
      runs.push({ logprobs, greedy });
    }
    return runs;
  } finally {
    await model.dispose();
  }
}

function logSoftmax(x: number[]): Float64Array {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return Float64Array.from(x, (v) => v - lse);
}

/** Max |Δ| of log-probabilities over the tokens the reference gives at least 1e-6 (smaller ones are noise in llama.cpp's f32 softmax). */
function maxLogprobError(cpp: Float64Array, ref: Reference): number {
  const want = logSoftmax(ref.logits);
  let worst = 0;
  for (let i = 0; i < want.length; i++) if (want[i] > Math.log(1e-6)) worst = Math.max(worst, Math.abs(cpp[i] - want[i]));
  return worst;
}

/**
 * llama.cpp's tokenizer from our metadata agrees with tokenizer.json: whole-word tokens, the
 * pre-tokenizer's digit split (Llama 3: runs of up to 3; Qwen: one digit each), special tokens
 * parsed as one id, and the bos/eos it reports.
 */
function checkTokenizer(model: any, family: Family, hf: string): void {
  const tj = JSON.parse(readFileSync(join(hf, 'tokenizer.json'), 'utf8'));
  const id = (t: string) => tj.model.vocab[t] ?? tj.added_tokens.find((a: { content: string }) => a.content === t)?.id;
  expect(model.tokenize('Hello world')).toEqual([id('Hello'), id('Ġworld')]);
  expect(model.tokenize('12345')).toEqual(family === 'llama' ? [id('123'), id('45')] : ['1', '2', '3', '4', '5'].map(id));
  const turnEnd = family === 'llama' ? '<|eot_id|>' : '<|im_end|>';
  expect(model.tokenize(turnEnd, true)).toEqual([id(turnEnd)]);
  expect(model.detokenize(model.tokenize('Grüße, 世界! 3.14'))).toBe('Grüße, 世界! 3.14');
  expect(model.tokens.eos).toBe(family === 'llama' ? id('<|end_of_text|>') : id('<|im_end|>'));
  if (family === 'llama') expect(model.tokens.bos).toBe(id('<|begin_of_text|>'));
}

const FAMILIES: Family[] = ['llama', 'qwen2', 'qwen3'];
const VOCAB: Record<Family, number> = { llama: 128256, qwen2: 151936, qwen3: 151936 };

// Tolerances on next-token log-probabilities (max |Δ| over tokens with p >= 1e-6), against a float64
// PyTorch forward of the weights the file holds (f16-rounded for 16-bit and quantized files),
// llama.cpp run with an f32 K/V cache and no flash attention. Measured (2026-12-05, this machine):
// - f32: llama.cpp computes in f32: 2e-5..4e-5 (qwen2/qwen3), 5e-4 for llama, whose llama3 rope
//   factors reach ggml as an f32 tensor dividing f32 angles. Bound 2e-3.
// - f16: ggml rounds each matmul's activations to f16 too (2^-11 relative) before the dot products:
//   1e-2..3.1e-2. Bound 0.1.
// - bf16 (qwen3): activations rounded to bf16 as well (2^-8 relative, 8x f16's step): 0.15. Bound 0.5.
// - q8_0: 8-bit weight blocks (|err| <= d/2 + the f16 scale, d = amax/127) and activations quantized
//   to q8_0 as well (vec_dot_q8_0_q8_0): 0.28..0.80 (the tied models' blocks write 3x larger outputs).
//   Bound 2.
// - q4_0: 4-bit blocks (error up to d = amax/8 per weight): 2.8. Bound 6 — loose, but a block layout
//   error (nibble order, scale sign) scrambles whole rows and costs far more.
const TOL: Record<string, number> = { f32: 2e-3, f16: 0.1, bf16: 0.5, q8_0: 2, q4_0: 6 };

describe.skipIf(!torch)('GGUF export loaded by llama.cpp', () => {
  for (const family of FAMILIES) {
    it(`${family}: llama.cpp gives PyTorch's logits and greedy tokens (f32, f16, bf16), q8_0/q4_0 close; the LoRA GGUF acts like the merged model`, async () => {
      const hf = await makeTinyModel(join(dir, `${family}-hf`), family, 11);
      const adapter = await makeTinyAdapter(join(dir, `${family}-lora`), hf, { r: 8, alpha: 16, rslora: family !== 'llama' });
      const ref = await torchReference(hf, PROMPT, join(dir, `${family}-ref.json`), {
        base: {}, base16: { weights_dtype: 'f16' }, lora: { adapter }, lora16: { adapter, weights_dtype: 'f16' }, baseBf16: { weights_dtype: 'bf16' },
      });
      const errors: Record<string, number> = {};
      const check = (name: string, dtype: string, cpp: CppRun, want: Reference) => {
        errors[name] = maxLogprobError(cpp.logprobs, want);
        expect(errors[name], `${name} log-prob error`).toBeLessThanOrEqual(TOL[dtype]);
        if (dtype === 'f32' || dtype === 'f16' || dtype === 'bf16') expect(cpp.greedy, `${name} greedy (reference gaps ${want.gaps.map((g) => g.toFixed(3))})`).toEqual(want.greedy);
      };
      // The adapter must matter: its greedy continuation differs from the base's.
      expect(ref.lora.greedy).not.toEqual(ref.base.greedy);
      // Our own forward (the SDK's llama family, f32 on the cpu backend) on the same folder: the same
      // greedy tokens as PyTorch, with and without the adapter, and next-token log-probs within f32's bound.
      const ours = await AutoModelForCausalLM.fromPretrained(hf, { device: 'cpu', dtype: 'f32' });
      try {
        for (const [name, want] of [['ours', ref.base], ['ours+lora', ref.lora]] as const) {
          if (name === 'ours+lora') await ours.loadAdapter(adapter);
          const logits = new Float32Array(PROMPT.length * VOCAB[family]);
          ours.step({ batch: 1, seq: PROMPT.length, inputIds: Int32Array.from(PROMPT), labels: new Int32Array(PROMPT.length).fill(-100) }, { training: false, logits });
          const last = Array.from(logits.subarray((PROMPT.length - 1) * VOCAB[family]));
          check(name, 'f32', { logprobs: logSoftmax(last), greedy: (await ours.generate(PROMPT, { maxNewTokens: 16 })).tokens }, want);
        }
      } finally {
        ours.dispose();
      }

      // Unmerged: the f32 base and the adapter as separate GGUF files (what --lora loads).
      const sep = join(dir, `${family}-sep`);
      await exportModel({ model: hf, adapter, adapterOnly: true, format: 'gguf', dtype: 'f32', out: sep });
      const [base, withLora] = await runLlamaCpp(join(sep, 'model.gguf'), VOCAB[family], [undefined, join(sep, 'adapter.gguf')], (m) => checkTokenizer(m, family, hf));
      check('f32', 'f32', base, ref.base);
      check('f32+lora', 'f32', withLora, ref.lora);
      // Merged, 16-bit: the same tokens as llama.cpp's --lora and as PyTorch's base + adapter.
      const merged = join(dir, `${family}-merged16`);
      await exportModel({ model: hf, adapter, format: 'gguf', dtype: 'f16', out: merged });
      check('f16 merged', 'f16', (await runLlamaCpp(join(merged, 'model.gguf'), VOCAB[family]))[0], ref.lora16);
      // q4_0 on llama and bf16 on qwen3 only: each load costs seconds, and the layouts do not depend on the family.
      for (const dtype of ['q8_0', ...(family === 'llama' ? ['q4_0'] : []), ...(family === 'qwen3' ? ['bf16'] : [])] as GgmlTypeName[]) {
        const out = join(dir, `${family}-${dtype}`);
        await exportModel({ model: hf, format: 'gguf', dtype, out });
        check(dtype, dtype, (await runLlamaCpp(join(out, 'model.gguf'), VOCAB[family]))[0], dtype === 'bf16' ? ref.baseBf16 : ref.base16);
      }
      console.log(`${family} max |Δ log p| vs PyTorch: ${JSON.stringify(errors)}`);
    });
  }
});
