// The cpu GEMM's blocking at tile sizes far below its defaults (KC 4096 = one k-block for every
// OPT linear, so the shapes of the op matrix rarely cross a block edge): a child process with
// LORA_GEMM_KC/_MC/_NC set small runs the three matmul layouts and the fused LoRA forward/backward
// on cpu and ref, so several k-blocks, m-blocks, panels and column tiles meet in one product,
// and the low-rank tail lands on a later k-block than the first.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = pathToFileURL(resolve(__dirname, '../dist/index.js')).href;

const script = `
import { native, ops } from ${JSON.stringify(dist)};
const T = native().Tensor;
const rnd = (n, seed) => { let s = seed >>> 0; const o = new Float32Array(n); for (let i = 0; i < n; ++i) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; o[i] = s / 4294967296 - 0.5; } return o; };
const nmse = (a, b) => { let n = 0, d = 0; for (let i = 0; i < a.length; ++i) { n += (a[i] - b[i]) ** 2; d += b[i] ** 2; } return d ? n / d : n; };
const out = {};
for (const xd of ['f32', 'bf16']) {
  const [M, K, N] = [61, 1100, 208];  // N % 16 == 0 for bf16p; its last panel 16 wide
  const x = T.fromArray(rnd(M * K, 1), [M, K], xd);
  const w = ops.cast(T.fromArray(rnd(N * K, 2), [N, K]), 'bf16');
  const dy = T.fromArray(rnd(M * N, 3), [M, N], xd);
  const run = (b) => [
    ops.matmulXWt(x, w, { outDtype: 'f32', backend: b }).toArray(),
    ops.matmulDYW(dy, w, { outDtype: 'f32', backend: b }).toArray(),
    (() => { const dw = T.fromArray(new Float32Array(N * K), [N, K]); ops.matmulDW(dy, x, dw, { backend: b }); return dw.toArray(); })(),
  ];
  const [c, r] = [run('cpu'), run('ref')];
  out['xwt ' + xd] = nmse(c[0], r[0]);
  out['dyw ' + xd] = nmse(c[1], r[1]);
  out['dw ' + xd] = nmse(c[2], r[2]);
  // The same weight pre-packed (bf16p): its panels read across k-blocks, and repacked for dY·W.
  const wp = ops.quantize(T.fromArray(rnd(N * K, 2), [N, K]), 'bf16p');
  out['xwt bf16p ' + xd] = nmse(ops.matmulXWt(x, wp, { outDtype: 'f32', backend: 'cpu' }).toArray(), r[0]);
  out['dyw bf16p ' + xd] = nmse(ops.matmulDYW(dy, wp, { outDtype: 'f32', backend: 'cpu' }).toArray(), r[1]);
  // Fused LoRA on three stacked groups of 64 columns (the grouped low-rank segment), rank 8.
  const [G, Nn, R] = [3, 64, 8];
  const wl = ops.cast(T.fromArray(rnd(G * Nn * K, 4), [G * Nn, K]), 'bf16');
  const a = T.fromArray(rnd(G * R * K, 5), [G * R, K]);
  const bm = T.fromArray(rnd(G * Nn * R, 6), [G * Nn, R]);
  const dyl = T.fromArray(rnd(M * G * Nn, 7), [M, G * Nn], 'bf16');
  const o = { scale: 2, groups: G, dropout: 0.1, seed: 9 };
  const lora = (b) => {
    const { y, xa } = ops.loraForward(x, wl, a, bm, { ...o, outDtype: 'f32', backend: b });
    const da = T.fromArray(new Float32Array(G * R * K), [G * R, K]), db = T.fromArray(new Float32Array(G * Nn * R), [G * Nn, R]);
    const { dx } = ops.loraBackward(dyl, x, wl, a, bm, xa, { ...o, da, db, dxDtype: 'f32', backend: b });
    return [y.toArray(), dx.toArray(), da.toArray(), db.toArray()];
  };
  const [lc, lr] = [lora('cpu'), lora('ref')];
  ['y', 'dx', 'da', 'db'].forEach((n, i) => { out['lora ' + n + ' ' + xd] = nmse(lc[i], lr[i]); });
}
console.log(JSON.stringify(out));
`;

describe('cpu GEMM blocking', () => {
  it('matches ref with tiny KC/MC/NC (many k-blocks, m-blocks and panels per product)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lora-gemm-blocking-'));
    const file = join(dir, 'run.mjs');
    writeFileSync(file, script);
    const env = { ...process.env, LORA_GEMM_KC: '128', LORA_GEMM_MC: '12', LORA_GEMM_NC: '128' };
    const res = JSON.parse(execFileSync(process.execPath, [file], { env, encoding: 'utf8' })) as Record<string, number>;
    for (const [name, e] of Object.entries(res)) {
      // bf16 operands (weights, and x / dy when bf16) carry 2^-9 relative rounding; the NMSE of
      // a dot product of such operands against ref's f64 accumulation sits around 1e-5.
      console.log(`cpu blocked (KC 128, MC 12, NC 128) ${name}: nmse ${e.toExponential(1)} (tol 1e-4)`);
      expect(e, name).toBeLessThan(1e-4);
    }
  });
});
