#!/usr/bin/env node
// Does fusing SwiGLU into the gate|up product pay on this CPU? (issue 13: "SwiGLU, fused with its
// products where it pays"). Times, at a model's MLP shape and 4 × 512 tokens, the bf16 gate|up
// product (x [M, C] bf16 · W [2F, C] bf16p, what the llama block runs under autocast), then SwiGLU
// forward and backward on its bf16 gate|up, and the down product's backward pieces, alternating,
// median of several repeats. A fused epilogue would save at most SwiGLU's own pass over [M, 2F].
//
//   node bench/kernels/swiglu-share.mjs [--shape smollm2-360m|qwen2.5-0.5b] [--reps 7] [--out FILE]
import { writeFileSync, renameSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';

import { native, ops } from '../../packages/core-native/dist/index.js';

const SHAPES = { 'smollm2-360m': { C: 960, F: 2560 }, 'qwen2.5-0.5b': { C: 896, F: 4864 } };
const { values } = parseArgs({ options: { shape: { type: 'string', default: 'smollm2-360m' }, reps: { type: 'string', default: '7' }, out: { type: 'string' } } });
const shape = SHAPES[values.shape];
if (!shape) throw new Error(`--shape: one of ${Object.keys(SHAPES).join(', ')}`);
const reps = Number(values.reps);
if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps: a positive integer');

const { C, F } = shape;
const M = 4 * 512;
const T = native().Tensor;
const rnd = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s * 78.233) * 0.5);
const x = ops.cast(T.fromArray(rnd(M * C, 1), [M, C], 'f32'), 'bf16');
const w = ops.quantize(T.fromArray(rnd(2 * F * C, 2), [2 * F, C], 'f32'), 'bf16p');
const gateUp = T.empty('bf16', [M, 2 * F], 'cpu');
const g32 = T.fromArray(rnd(M * F, 3), [M, F], 'f32');
const u32 = T.fromArray(rnd(M * F, 4), [M, F], 'f32');
const g = ops.cast(g32, 'bf16');
const u = ops.cast(u32, 'bf16');
const h = T.empty('f32', [M, F], 'cpu');
const dh = T.fromArray(rnd(M * F, 5), [M, F], 'f32');
const dg = T.empty('f32', [M, F], 'cpu');
const du = T.empty('f32', [M, F], 'cpu');

const time = (f) => {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
};
const runs = { gateUpProduct: [], swigluForward: [], swigluBackward: [] };
for (let i = 0; i < reps; i++) {
  runs.gateUpProduct.push(time(() => ops.matmulXWt(x, w, { out: gateUp, backend: 'cpu' })));
  runs.swigluForward.push(time(() => ops.swiGlu(g, u, { out: h, backend: 'cpu' })));
  runs.swigluBackward.push(time(() => ops.swiGluBackward(g, u, dh, { dgate: dg, dup: du, backend: 'cpu' })));
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, +median(v).toFixed(2)]));
const result = {
  bench: 'swiglu share of the gate|up product (bench/kernels/swiglu-share.mjs)', date: new Date().toISOString(),
  cpu: cpus()[0]?.model, vcpus: cpus().length, loadavg: loadavg(), shape: { name: values.shape, M, C, F },
  medianMs: med,
  swigluForwardOverProduct: +(med.swigluForward / med.gateUpProduct).toFixed(3),
  swigluBackwardOverProduct: +(med.swigluBackward / med.gateUpProduct).toFixed(3),
  samplesMs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((t) => +t.toFixed(2))])),
};
console.log(JSON.stringify(result, null, 1));
if (values.out) {
  writeFileSync(`${values.out}.tmp`, JSON.stringify(result, null, 1));
  renameSync(`${values.out}.tmp`, values.out);
}
