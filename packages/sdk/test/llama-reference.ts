// A scalar float64 reference of the Llama-shaped forward (transformers' modeling_llama / qwen2 /
// qwen3 eager paths) with PEFT LoRA (no dropout), written independently of the SDK's block, for the
// family tests: logits and the mean causal-LM loss. Also writes tiny random models to disk.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { encodeSafetensors, ropeInvFreq, seededRandom, type LlamaConfig, type RawTensor } from '../src/index.js';

export type Weights = Map<string, Float64Array>;
/** LoRA of one target in one layer: A [r, in], B [out, r]. */
export type Lora = { scale: number; r: number; mods: Map<string, { a: Float64Array; b: Float64Array }> };

/** Random weights for every tensor of the table (norm weights around 1), rounded to f32. */
export function randomWeights(shapes: Map<string, number[]>, seed: number): Weights {
  // The SDK's seeded generator (mulberry32): only the inputs come from it, the math below stays independent.
  const rand = seededRandom(seed);
  const w: Weights = new Map();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float64Array(n);
    const norm = name.endsWith('norm.weight') || name.endsWith('layernorm.weight');
    for (let i = 0; i < n; i++) v[i] = Math.fround(norm ? 0.8 + 0.4 * rand() : (rand() * 2 - 1) * 0.3);
    w.set(name, v);
  }
  return w;
}

/** Writes config.json + model.safetensors (`model.` prefix, top-level lm_head) as save_pretrained would. */
export function writeModel(dir: string, config: Record<string, unknown>, w: Weights, shapes: Map<string, number[]>): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, RawTensor>();
  for (const [name, v] of w) tensors.set(name === 'lm_head.weight' ? name : `model.${name}`, { dtype: 'F32', shape: shapes.get(name)!, data: Float32Array.from(v) });
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

const rmsNorm = (x: Float64Array, w: Float64Array | undefined, eps: number) => {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * (w ? w[i] : 1));
};

/** y = x·Wᵀ + b (+ scale·(x·Aᵀ)·Bᵀ): x [n], W [out, n]. */
function linear(x: Float64Array, w: Float64Array, b: Float64Array | undefined, lora?: { a: Float64Array; b: Float64Array; r: number; scale: number }): Float64Array {
  const n = x.length;
  const out = new Float64Array(w.length / n);
  for (let o = 0; o < out.length; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < n; i++) s += x[i] * w[o * n + i];
    out[o] = s;
  }
  if (lora) {
    const xa = new Float64Array(lora.r);
    for (let j = 0; j < lora.r; j++) for (let i = 0; i < n; i++) xa[j] += x[i] * lora.a[j * n + i];
    for (let o = 0; o < out.length; o++) for (let j = 0; j < lora.r; j++) out[o] += lora.scale * xa[j] * lora.b[o * lora.r + j];
  }
  return out;
}

function rope(x: Float64Array, heads: number, D: number, pos: number, inv: Float32Array): Float64Array {
  const y = new Float64Array(x.length);
  const half = D / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      // transformers forms the angle as an f32 product and rounds cos/sin to f32.
      const th = Math.fround(inv[i] * pos);
      const cos = Math.fround(Math.cos(th));
      const sin = Math.fround(Math.sin(th));
      const a = x[h * D + i];
      const b = x[h * D + i + half];
      y[h * D + i] = a * cos - b * sin;
      y[h * D + i + half] = b * cos + a * sin;
    }
  }
  return y;
}

/**
 * Logits [B·T, V] and the mean loss over labels shifted by one (−100 ignored). Positions as HF's
 * generate forms them (cumsum(mask) − 1); rows at padding positions are computed but see no key
 * beyond padding, so callers compare real positions only.
 */
export function referenceForward(c: LlamaConfig, w: Weights, lora: Lora | undefined, ids: number[], mask: number[], labels: number[] | undefined, B: number, T: number): { logits: Float64Array; loss: number } {
  const C = c.hiddenSize;
  const H = c.numAttentionHeads;
  const Hkv = c.numKeyValueHeads;
  const D = c.headDim;
  const V = c.vocabSize;
  const inv = ropeInvFreq(c);
  const get = (n: string) => w.get(n)!;
  const lin = (l: number, target: string, module: string, x: Float64Array) => {
    const m = lora?.mods.get(`${l}.${target}`);
    return linear(x, get(`layers.${l}.${module}.${target}.weight`), w.get(`layers.${l}.${module}.${target}.bias`), m && { ...m, r: lora!.r, scale: lora!.scale });
  };
  const logits = new Float64Array(B * T * V);
  let lossSum = 0;
  let count = 0;
  for (let bi = 0; bi < B; bi++) {
    const rowMask = mask.slice(bi * T, (bi + 1) * T);
    let run = 0;
    const pos = rowMask.map((m) => (m ? (run += 1) - 1 : 1));
    let xs = Array.from({ length: T }, (_, t) => get('embed_tokens.weight').slice(ids[bi * T + t] * C, (ids[bi * T + t] + 1) * C));
    for (let l = 0; l < c.numHiddenLayers; l++) {
      const a = xs.map((x) => rmsNorm(x, get(`layers.${l}.input_layernorm.weight`), c.rmsNormEps));
      const q = a.map((v, t) => {
        let y = lin(l, 'q_proj', 'self_attn', v);
        if (c.qkNorm) y = perHead(y, H, D, get(`layers.${l}.self_attn.q_norm.weight`), c.rmsNormEps);
        return rope(y, H, D, pos[t], inv);
      });
      const k = a.map((v, t) => {
        let y = lin(l, 'k_proj', 'self_attn', v);
        if (c.qkNorm) y = perHead(y, Hkv, D, get(`layers.${l}.self_attn.k_norm.weight`), c.rmsNormEps);
        return rope(y, Hkv, D, pos[t], inv);
      });
      const v = a.map((x) => lin(l, 'v_proj', 'self_attn', x));
      const o = q.map((qt, t) => {
        const out = new Float64Array(H * D);
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / (H / Hkv));
          const scores: number[] = [];
          for (let j = 0; j <= t; j++) {
            if (!rowMask[j]) continue;
            let s = 0;
            for (let d = 0; d < D; d++) s += qt[h * D + d] * k[j][g * D + d];
            scores.push(s / Math.sqrt(D));
          }
          const js = [...Array(t + 1).keys()].filter((j) => rowMask[j]);
          const mx = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - mx));
          const z = e.reduce((p, q2) => p + q2, 0);
          js.forEach((j, n) => {
            for (let d = 0; d < D; d++) out[h * D + d] += (e[n] / z) * v[j][g * D + d];
          });
        }
        return out;
      });
      const s1 = xs.map((x, t) => {
        const proj = lin(l, 'o_proj', 'self_attn', o[t]);
        return x.map((xv, i) => xv + proj[i]);
      });
      xs = s1.map((s) => {
        const f = rmsNorm(s, get(`layers.${l}.post_attention_layernorm.weight`), c.rmsNormEps);
        const gate = lin(l, 'gate_proj', 'mlp', f);
        const up = lin(l, 'up_proj', 'mlp', f);
        const h = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
        const down = lin(l, 'down_proj', 'mlp', h);
        return s.map((sv, i) => sv + down[i]);
      });
    }
    const head = w.get('lm_head.weight') ?? get('embed_tokens.weight');
    for (let t = 0; t < T; t++) {
      const hN = rmsNorm(xs[t], get('norm.weight'), c.rmsNormEps);
      const row = linear(hN, head, undefined);
      logits.set(row, (bi * T + t) * V);
      const target = labels && t + 1 < T ? labels[bi * T + t + 1] : -100;
      if (target === -100) continue;
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((p, x) => p + Math.exp(x - mx), 0));
      lossSum += lse - row[target];
      count++;
    }
  }
  return { logits, loss: lossSum / count };
}

function perHead(y: Float64Array, heads: number, D: number, w: Float64Array, eps: number): Float64Array {
  const out = new Float64Array(y.length);
  for (let h = 0; h < heads; h++) out.set(rmsNorm(y.subarray(h * D, (h + 1) * D), w, eps), h * D);
  return out;
}
