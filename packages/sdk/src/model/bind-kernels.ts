// Binds the model's Kernels interface to the addon's op bindings for one backend. This is the only
// file of the SDK that knows the native argument order.
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { Backend } from './device.js';
import type { Kernels } from './kernels.js';

type Op = (...args: unknown[]) => unknown;

const zeroCache = new Map<number, Float32Array>();
const zeros = (n: number) => {
  let z = zeroCache.get(n);
  if (!z) zeroCache.set(n, (z = new Float32Array(n)));
  return z;
};

/**
 * Whether a linear with this frozen weight computes in bf16 (autocast): bf16 and quantised
 * weights do; f32 and f16 ones keep f32 inputs (f16 does not fit in bf16 without rounding).
 */
export function autocast(w: NativeTensor): boolean {
  return w.dtype === 'bf16' || w.dtype === 'bf16p' || w.dtype === 'i8' || w.dtype === 'int4' || w.dtype === 'nf4';
}

export function bindKernels(backend: Backend): Kernels {
  const addon = native() as unknown as Record<string, Op>;
  const op = (name: string): Op => {
    const f = addon[name];
    if (typeof f !== 'function') throw new Error(`the native addon has no ${name}: rebuild @lora/core-native`);
    return f;
  };
  const matmulXWt = op('opMatmulXWt');
  const matmulDYW = op('opMatmulDYW');
  const lazy = (name: string): Op => (...args) => op(name)(...args);
  const loraFwd = op('opLoraForward');
  const loraBwd = op('opLoraBackward');
  const loraSegments = lazy('opLoraSegments');
  const embedding = op('opEmbedding');
  const layerNorm = op('opLayerNorm');
  const layerNormBwd = op('opLayerNormBackward');
  const layerNormBwdOut = op('opLayerNormBackwardFromOutput');
  const attn = op('opAttention');
  const attnBwd = op('opAttentionBackward');
  const relu = op('opRelu');
  const reluMask = op('opReluMask');
  const reluMaskBwd = op('opReluMaskBackward');
  const add = op('opAdd');
  const scale = op('opScale');
  const dropout = op('opDropout');
  const crossEntropy = op('opCrossEntropy');
  const adamw = op('opAdamW');
  const sumSquares = op('opSumSquares');
  const quantize = op('opQuantize');
  const dequantize = op('opDequantize');
  const cast = op('opCast');
  // The Llama-shaped ops (and serving's segmented LoRA) are looked up when first called, so a model
  // runs on an addon without them.
  const rmsNorm = lazy('opRmsNorm');
  const rmsNormBwd = lazy('opRmsNormBackward');
  const rope = lazy('opRope');
  const attnRagged = lazy('opAttentionRagged');
  const swiGlu = lazy('opSwiGlu');
  const swiGluBwd = lazy('opSwiGluBackward');
  const b = backend;

  // Autocast, as torch.autocast(bf16) does it: a linear whose frozen weight is bf16 or quantised
  // computes in bf16, so its f32 inputs (x, and dy in the backward) are rounded to bf16 once, here.
  // The base product would round them to the same values while packing anyway; the LoRA branch's
  // products then run in bf16 as well (PyTorch's numerics under autocast), on the kernels' bf16
  // paths (rows used in place, the small-rank backward fused into the dX GEMM). One reusable
  // buffer per role; f32/f16 weights keep f32 inputs.
  const { Tensor } = native();
  const scratch: { x?: NativeTensor; dy?: NativeTensor; zero?: NativeTensor } = {};
  // A view shaped like `like` on the reusable buffer of `role` (remade, by `make`, when too small
  // or on another device); the views go to `views` for the caller to dispose.
  const scratchView = (role: keyof typeof scratch, like: NativeTensor, make: (n: number, d: DeviceName) => NativeTensor, views: NativeTensor[]) => {
    let buf = scratch[role];
    if (!buf || buf.numel < like.numel || buf.device !== like.device) {
      buf?.dispose();
      buf = scratch[role] = make(like.numel, like.device as DeviceName);
    }
    const flat = buf.narrow(0, 0, like.numel);
    const v = flat.reshape(like.shape);
    views.push(flat, v);
    return v;
  };
  const toBf16 = (t: NativeTensor, role: 'x' | 'dy', views: NativeTensor[]): NativeTensor => {
    if (t.dtype !== 'f32' || !t.contiguous) return t;
    const v = scratchView(role, t, (n, d) => Tensor.empty('bf16', [n], d), views);
    cast(t, v, b);
    return v;
  };
  // fn on t, rounded to bf16 first when w autocasts; the scratch views are released after.
  const autocasting = <R>(w: NativeTensor, t: NativeTensor, role: 'x' | 'dy', fn: (t: NativeTensor) => R): R => {
    const views: NativeTensor[] = [];
    try {
      return fn(autocast(w) ? toBf16(t, role, views) : t);
    } finally {
      for (const v of views) v.dispose();
    }
  };

  // q | k | v column slices of a [B*T, 3C] buffer, as [B, T, C] views.
  const splitQkv = (qkv: NativeTensor, B: number, T: number): NativeTensor[] => {
    const C = qkv.shape[1] / 3;
    const v3 = qkv.reshape([B, T, 3 * C]);
    try {
      return [0, 1, 2].map((g) => v3.narrow(2, g * C, C));
    } finally {
      v3.dispose();
    }
  };
  const as3 = (t: NativeTensor, B: number, T: number) => t.reshape([B, T, t.shape[t.shape.length - 1]]);

  return {
    backend,
    linear(x0, w, bias, y, lora) {
      autocasting(w, x0, 'x', (x) => {
        if (!lora) {
          matmulXWt(x, w, bias ?? null, y, false, b);
          return;
        }
        const d = lora.spec.dropout;
        loraFwd(x, w, bias ?? null, lora.spec.a, lora.spec.b, y, lora.xa, lora.spec.scale, d?.p ?? 0, d?.seed ?? 0, d?.offset ?? 0, lora.spec.groups, b);
      });
    },
    linearSegments(x0, w, bias, y, segs) {
      const groups = segs[0]?.spec.groups ?? 1;
      if (segs.some((s) => s.spec.groups !== groups)) throw new Error('linearSegments: every segment needs the same LoRA groups');
      if (segs.some((s) => s.spec.dropout && s.spec.dropout.p > 0)) throw new Error('linearSegments: serving has no dropout');
      autocasting(w, x0, 'x', (x) =>
        loraSegments(x, w, bias ?? null, y, segs.map((s) => s.spec.a), segs.map((s) => s.spec.b), segs.map((s) => s.start), segs.map((s) => s.len),
          segs.map((s) => s.spec.scale), groups, b));
    },
    linearBackward(dy0, x0, w, dx, accumulate, lora) {
      if (!lora && !dx) return;
      const views: NativeTensor[] = [];
      try {
        const dy = autocast(w) ? toBf16(dy0, 'dy', views) : dy0;
        if (!lora) {
          matmulDYW(dy, w, dx, accumulate, b);
          return;
        }
        const x = autocast(w) ? toBf16(x0, 'x', views) : x0;
        const d = lora.spec.dropout;
        loraBwd(dy, x, w, lora.spec.a, lora.spec.b, lora.xa, dx ?? null, lora.da, lora.db, lora.spec.scale, d?.p ?? 0, d?.seed ?? 0, d?.offset ?? 0, lora.spec.groups, accumulate, b);
      } finally {
        for (const t of views) t.dispose();
      }
    },
    linearRelu(x0, w, bias, y, bits) {
      autocasting(w, x0, 'x', (x) => matmulXWt(x, w, bias ?? null, y, false, b, bits));
    },
    linearResidual(x0, w, bias, y, residual, drop) {
      autocasting(w, x0, 'x', (x) => matmulXWt(x, w, bias ?? null, y, false, b, null, residual, drop?.p ?? 0, drop?.seed ?? 0, drop?.offset ?? 0));
    },
    linearBackwardMasked(dy0, w, dx, bits) {
      autocasting(w, dy0, 'dy', (dy) => matmulDYW(dy, w, dx, false, b, bits));
    },
    embedding(ids, table, out, pos) {
      embedding(ids, table, out, pos?.ids ?? null, pos?.table ?? null, 0, b);
    },
    layerNorm(x, gamma, beta, eps, y, mean, rstd) {
      layerNorm(x, gamma ?? null, beta ?? null, y, mean, rstd, eps, b);
    },
    layerNormBackward(dy, x, gamma, mean, rstd, dx) {
      layerNormBwd(dy, x, gamma ?? null, mean, rstd, dx, null, null, b);
    },
    layerNormBackwardFromOutput(dy, y, gamma, beta, rstd, dx) {
      layerNormBwdOut(dy, y, gamma, beta ?? null, rstd, dx, null, null, b);
    },
    attention(qkv, mask, s, sc, o, lse, cache) {
      const [q, k, v] = splitQkv(qkv, s.B, s.T);
      const o3 = as3(o, s.B, s.T);
      try {
        // Decoding: the attention op with a query offset over the cached keys and values.
        if (cache) attn(q, k, v, o3, lse, s.H, sc, null, null, b, cache.past, cache.k, cache.v);
        else attn(q, k, v, o3, lse, s.H, sc, null, mask ?? null, b);
      } finally {
        for (const t of [q, k, v, o3]) t.dispose();
      }
    },
    attentionBackward(qkv, mask, s, sc, o, lse, dout, dqkv) {
      const [q, k, v] = splitQkv(qkv, s.B, s.T);
      const [dq, dk, dv] = splitQkv(dqkv, s.B, s.T);
      const o3 = o ? as3(o, s.B, s.T) : null;
      const do3 = as3(dout, s.B, s.T);
      try {
        attnBwd(do3, q, k, v, o3, lse, dq, dk, dv, s.H, sc, null, mask ?? null, b);
      } finally {
        for (const t of [q, k, v, dq, dk, dv, do3]) t.dispose();
        o3?.dispose();
      }
    },
    attentionDecode(qkv, kCache, vCache, past, s, sc, o) {
      // The attention op with a query offset; its lse (a backward's cache) is scratch here.
      const [q, k, v] = splitQkv(qkv, s.B, s.T);
      const o3 = as3(o, s.B, s.T);
      const lse = Tensor.empty('f32', [s.B * s.H * s.T], o.device as DeviceName);
      try {
        attn(q, k, v, o3, lse, s.H, sc, null, null, b, past, kCache, vCache);
      } finally {
        for (const t of [q, k, v, o3, lse]) t.dispose();
      }
    },
    attend(q0, k0, v0, mask, s, sc, o, lse, cache) {
      const [q, k, v, o3] = [q0, k0, v0, o].map((t) => as3(t, s.B, s.T));
      try {
        // Decoding: the same op with a query offset over the cached keys and values (written at past).
        if (cache) attn(q, k, v, o3, lse, s.H, sc, null, null, b, cache.past, cache.k, cache.v);
        else attn(q, k, v, o3, lse, s.H, sc, null, mask ?? null, b);
      } finally {
        for (const t of [q, k, v, o3]) t.dispose();
      }
    },
    attendRagged(q, k, v, rows, s, sc, o, lse) {
      const r = rows;
      attnRagged(q, k, v, o, lse, s.H, sc, r.map((x) => x.start), r.map((x) => x.len), r.map((x) => x.cache.past), r.map((x) => x.cache.k), r.map((x) => x.cache.v), b);
    },
    attendBackward(dout, q0, k0, v0, o, lse, mask, s, sc, dq0, dk0, dv0) {
      const views = [dout, q0, k0, v0, dq0, dk0, dv0].map((t) => as3(t, s.B, s.T));
      const [do3, q, k, v, dq, dk, dv] = views;
      const o3 = o ? as3(o, s.B, s.T) : null;
      try {
        attnBwd(do3, q, k, v, o3, lse, dq, dk, dv, s.H, sc, null, mask ?? null, b);
      } finally {
        for (const t of views) t.dispose();
        o3?.dispose();
      }
    },
    rmsNorm(x, w, eps, y, rstd, width) {
      rmsNorm(x, w ?? null, y, rstd, eps, width ?? null, b);
    },
    rmsNormBackward(dy, x, w, rstd, dx, width) {
      rmsNormBwd(dy, x, w ?? null, rstd, dx, null, width ?? null, b);
    },
    rope(x, y, positions, invFreq, heads, inverse) {
      rope(x, y, positions, invFreq, heads, inverse, b);
    },
    swiGlu(gate, up, y) {
      swiGlu(gate, up, y, b);
    },
    swiGluBackward(gate, up, dy, dgate, dup) {
      swiGluBwd(gate, up, dy, dgate, dup, b);
    },
    relu(x, y) {
      relu(x, y, b);
    },
    reluMask(x, y, bits) {
      reluMask(x, y, bits, b);
    },
    reluMaskBackward(bits, dy, dx) {
      reluMaskBwd(bits, dy, dx, b);
    },
    add(x, y, out, alpha = 1) {
      add(x, y, out, alpha, b);
    },
    dropout(x, spec, out) {
      dropout(x, out, spec.p, spec.seed, spec.offset ?? 0, b);
    },
    crossEntropy(h, w, targets, o) {
      // 2048 vocabulary rows per chunk: the op's [M, chunk] buffers are live at the step's memory
      // peak (all activations kept), and the GEMMs run as fast as with 4096 (measured).
      const r = crossEntropy(h, w, targets, o.dh ?? null, o.logits ?? null, null, -100, o.gradScale, o.chunk ?? 2048, b) as { loss: number; count: number };
      // The op returns the mean over counted tokens; its dh is gradScale · ∂mean/∂h.
      return { lossSum: r.loss * r.count, count: r.count };
    },
    adamw(p, g, m, v, o) {
      adamw(p, g, m, v, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step, o.gradScale, b);
    },
    sumSquares(x) {
      return sumSquares([x], b) as number;
    },
    scale(x, alpha, out) {
      scale(x, out, alpha, b);
    },
    cast(x, out) {
      cast(x, out, b);
    },
    quantize(w, dtype, block) {
      return quantize(w, dtype, block, b) as NativeTensor;
    },
    dequantize(w) {
      return dequantize(w, b) as NativeTensor;
    },
    dispose() {
      scratch.x?.dispose();
      scratch.dy?.dispose();
      scratch.zero?.dispose();
      scratch.x = scratch.dy = scratch.zero = undefined;
    },
    zero(t) {
      // Written, not multiplied by 0, so a NaN left by a failed step cannot survive a reset: an f32
      // tensor is copied from a kept native zero buffer (one device-side pass, no host staging).
      if (t.dtype !== 'f32' || !t.contiguous) {
        t.copyFrom(zeros(t.numel));
        return;
      }
      const views: NativeTensor[] = [];
      try {
        cast(scratchView('zero', t, (n, d) => Tensor.fromArray(new Float32Array(n), [n], 'f32', d), views), t, b);
      } finally {
        for (const v of views) v.dispose();
      }
    },
  };
}
