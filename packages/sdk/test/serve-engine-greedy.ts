// The serve engine tests' two halves: greedy generate() alone per row (the reference), and the same
// rows decoded greedily through a DecodeEngine in ragged batches - one row prefilled in chunks while
// the others already decode - so a test compares the two token for token.
import { sampleToken, type LoraAdapter } from '../src/index.js';
import type { DecodeEngine, ForwardRow, KvCache } from '../src/serve/engine.js';

export const greedy = (l: Float32Array) => sampleToken(l, { temperature: 0, topP: 1, topK: 0 }, () => 0);

interface GenerateModel {
  lora: LoraAdapter | undefined;
  generate(ids: number[], o: { maxNewTokens: number; stopTokens: number[] }): Promise<{ tokens: number[] }>;
}

/** Greedy generate() of `steps` tokens per prompt, with that row's adapter on the model (left on the last row's). */
export async function generateAlonePerRow(m: GenerateModel, prompts: number[][], adapters: (LoraAdapter | undefined)[], steps: number): Promise<number[][]> {
  const expected: number[][] = [];
  for (const [i, p] of prompts.entries()) {
    m.lora = adapters[i];
    expected.push((await m.generate(p, { maxNewTokens: steps, stopTokens: [] })).tokens);
  }
  return expected;
}

/**
 * Greedy decode of `steps` tokens per row through `engine`: every row but `chunked` prefills its
 * whole prompt in the first step; row `chunked` prefills `chunk` tokens a step beside the others'
 * decode rows (wanting logits only with its last chunk), then decodes too. Caches are freed here.
 */
export function decodeRaggedBatches(engine: DecodeEngine, prompts: number[][], adapters: (LoraAdapter | undefined)[], steps: number, chunked = 2, chunk = 4): number[][] {
  const others = prompts.map((_, i) => i).filter((i) => i !== chunked);
  const caches: KvCache[] = prompts.map((p) => engine.allocate(p.length + steps));
  try {
    const got: number[][] = prompts.map(() => []);
    const first = engine.forward(others.map((i) => ({ cache: caches[i], ids: prompts[i], adapter: adapters[i], wantLogits: true })));
    others.forEach((i, j) => got[i].push(greedy(first[j]!)));
    let fed = 0;
    while (got.some((g) => g.length < steps)) {
      const rows: ForwardRow[] = [];
      const who: number[] = [];
      for (const i of others) if (got[i].length < steps) (rows.push({ cache: caches[i], ids: [got[i].at(-1)!], adapter: adapters[i], wantLogits: true }), who.push(i));
      if (fed < prompts[chunked].length) {
        const ids = prompts[chunked].slice(fed, fed + chunk);
        fed += ids.length;
        rows.unshift({ cache: caches[chunked], ids, adapter: adapters[chunked], wantLogits: fed === prompts[chunked].length });
        who.unshift(chunked);
      } else if (got[chunked].length < steps) {
        rows.push({ cache: caches[chunked], ids: [got[chunked].at(-1)!], adapter: adapters[chunked], wantLogits: true });
        who.push(chunked);
      }
      const logits = engine.forward(rows);
      who.forEach((i, j) => logits[j] && got[i].push(greedy(logits[j]!)));
    }
    return got;
  } finally {
    for (const c of caches) c.dispose();
  }
}
