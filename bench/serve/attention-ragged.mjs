// One layer's decode attention of a serve step: R requests of one new token each, every request
// over its own KV cache, as one ragged call (attentionRagged, what models/batch-step.ts runs) against
// one attention call per request (B = 1, what it ran before). Alternating repeats; median and best.
//
//   node bench/serve/attention-ragged.mjs [--rows 16] [--heads 12] [--dim 64] [--past 40] [--reps 400] [--backend cpu]
//
// Defaults: opt-125m's attention (12 heads of 64) at a past of 40 positions (a 24-token prompt
// plus some generated tokens, the throughput bench's streams), caches of 128 positions.
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';

import { native, ops } from '../../packages/core-native/dist/index.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '16' }, heads: { type: 'string', default: '12' }, dim: { type: 'string', default: '64' },
    past: { type: 'string', default: '40' }, cap: { type: 'string', default: '128' }, reps: { type: 'string', default: '400' }, backend: { type: 'string', default: 'cpu' },
  },
});
const [R, H, D, past, cap, reps] = ['rows', 'heads', 'dim', 'past', 'cap', 'reps'].map((k) => +values[k]);
const backend = values.backend;
const { Tensor } = native();
const C = H * D;
const rand = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
const qkv = Tensor.fromArray(rand(R * 3 * C), [R, 3 * C], 'f32');
const [q, k, v] = [0, 1, 2].map((g) => qkv.narrow(1, g * C, C));
const caches = Array.from({ length: R }, () => ({ k: Tensor.fromArray(rand(cap * C), [1, cap, C], 'f32'), v: Tensor.fromArray(rand(cap * C), [1, cap, C], 'f32') }));
const out = Tensor.empty('f32', [R, C]);
const lse = Tensor.empty('f32', [H * R]);
// The per-request views, made once (the serve step makes them per call; their cost is not counted here).
const perRow = caches.map((c, r) => {
  const rows = qkv.narrow(0, r, 1).reshape([1, 1, 3 * C]);
  return {
    q: rows.narrow(2, 0, C), k: rows.narrow(2, C, C), v: rows.narrow(2, 2 * C, C),
    o: out.narrow(0, r, 1).reshape([1, 1, C]), lse: lse.narrow(0, r * H, H), cache: { k: c.k, v: c.v, offset: past },
  };
});
const rows = caches.map((c, r) => ({ start: r, len: 1, cache: { k: c.k, v: c.v, offset: past } }));
const ragged = () => ops.attentionRagged(q, k, v, rows, { heads: H, out, lse, backend });
const each = () => {
  for (const p of perRow) ops.attention(p.q, p.k, p.v, { heads: H, out: p.o, lse: p.lse, cache: p.cache, backend });
};
for (let i = 0; i < 20; i++) (ragged(), each());
const times = { ragged: [], perRow: [] };
for (let i = 0; i < reps; i++) {
  for (const [name, f] of i % 2 ? [['ragged', ragged], ['perRow', each]] : [['perRow', each], ['ragged', ragged]]) {
    const t0 = process.hrtime.bigint();
    f();
    times[name].push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
}
const stat = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return { medianUs: +s[s.length >> 1].toFixed(1), bestUs: +s[0].toFixed(1) };
};
const result = {
  date: new Date().toISOString(), cpu: cpus()[0]?.model, threads: process.env.LORA_NUM_THREADS ?? 'default', loadAverage: loadavg(), backend,
  rows: R, heads: H, headDim: D, past, cap, reps, perRowCalls: stat(times.perRow), raggedCall: stat(times.ragged),
};
result.speedupMedian = +(result.perRowCalls.medianUs / result.raggedCall.medianUs).toFixed(2);
console.log(JSON.stringify(result));
