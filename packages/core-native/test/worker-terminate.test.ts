// Terminating a worker, or exiting the process, while the worker is inside any binding never
// aborts the process. When V8 terminates a worker it refuses every further call into JS; before
// NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, node-addon-api turned the failed throw into a C++
// exception out of a noexcept callback: "terminate called after throwing an instance of
// 'Napi::Error'", rc 134, in 19 of 19 runs. Each scenario runs in a child process, so an abort
// fails the test instead of killing the runner.
import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { loadAddon } from '../lib/index.js';

// The worker: calls every export (and every Tensor method and getter) with a few argument sets,
// forever, swallowing the errors the calls throw. A getter-driven case re-enters JS mid-binding.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.path);
const { Tensor } = addon;
const mk = () => Tensor.fromArray(new Float32Array(16).fill(0.5), [4, 4]);
const t = mk(), u = mk(), o = mk();
const ids = Tensor.fromArray(new Int32Array([0, 1, 2, 3]), [4]);
const argSets = [[], [t], [t, u], [t, u, o], [t, u, o, 1], [ids, t, o], [[t, u]], ['cpu', 'relu', ['f32'], [4]], ['f32', 1, 1000], [t, u, o, 1, 'ref']];
// Process-wide side effects: the pool size, the NVML sampler, and the dist* collectives (distAbort
// stops every rank of the job by design).
const skip = new Set(['Tensor', 'setNumThreads', 'nvmlStart']);
const fns = Object.entries(addon).filter(([k, v]) => typeof v === 'function' && !skip.has(k) && !k.startsWith('dist'));
const methods = ['toArray', 'bytes', 'scales', 'clone', 'reshape', 'narrow'];
const getters = ['shape', 'strides', 'dtype', 'device', 'numel', 'nbytes', 'blockSize', 'contiguous', 'disposed'];
let announced = false;
for (let i = 0; ; i++) {
  for (const [, fn] of fns) for (const args of argSets) { try { const r = fn(...args); if (r && r.dispose) r.dispose(); } catch {} }
  for (const m of methods) { try { const r = t[m](...(m === 'reshape' ? [[16]] : m === 'narrow' ? [0, 1, 2] : [])); if (r && r.dispose) r.dispose(); } catch {} }
  for (const g of getters) void t[g];
  // Re-entrancy: the binding calls back into JS (an element getter) while terminating.
  const shape = [2]; Object.defineProperty(shape, 1, { get: () => { for (let k = 0; k < 50; k++) void t.shape; return 8; }, enumerable: true });
  try { t.reshape(shape).dispose(); } catch {}
  try { Tensor.fromArray(new Float32Array(16), shape).dispose(); } catch {}
  if (!announced) { announced = true; parentPort.postMessage('busy'); }
}
`;

function runChild(mainSource: string): { status: number | null; signal: string | null; out: string } {
  const r = spawnSync(process.execPath, ['-e', mainSource], {
    env: { ...process.env, LORA_WORKER_SOURCE: workerSource, LORA_ADDON: loadAddon().path },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, signal: r.signal, out: `${r.stdout}\n${r.stderr}` };
}

const startWorkers = `
const { Worker } = require('node:worker_threads');
function start(n) {
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const w = new Worker(process.env.LORA_WORKER_SOURCE, { eval: true, workerData: { path: process.env.LORA_ADDON } });
    w.once('message', () => resolve(w));
    w.once('error', reject);
  })));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
`;

describe('worker threads inside bindings', () => {
  it('terminate() of workers looping over every export never aborts the process', () => {
    const rounds = 12;
    const r = runChild(`${startWorkers}
      (async () => {
        let terminated = 0;
        for (let round = 0; round < ${rounds}; round++) {
          const ws = await start(2);
          await sleep(round % 4 * 7);  // 0-21 ms into the loop: a different binding each time
          for (const code of await Promise.all(ws.map((w) => w.terminate()))) if (code === 1) terminated++;
        }
        console.log('terminated ' + terminated);
      })().catch((e) => { console.error(e); process.exit(3); });
    `);
    console.log(`[worker terminate] ${rounds} rounds x 2 busy workers: rc ${r.status}${r.signal ? ` (${r.signal})` : ''}, ${r.out.match(/terminated \d+/)?.[0]}`);
    expect(r.out).not.toMatch(/terminate called|FATAL ERROR|Aborted/);
    expect(r.signal).toBeNull();
    expect(r.status, r.out.slice(-3000)).toBe(0);
    expect(r.out).toContain(`terminated ${rounds * 2}`);
  });

  it('process.exit() while workers are busy in bindings exits cleanly', () => {
    for (let run = 0; run < 3; run++) {
      const r = runChild(`${startWorkers}
        start(3).then(async () => { await sleep(${run * 5}); process.exit(0); }).catch((e) => { console.error(e); process.exit(3); });
      `);
      expect(r.out).not.toMatch(/terminate called|FATAL ERROR|Aborted/);
      expect(r.signal).toBeNull();
      expect(r.status, r.out.slice(-3000)).toBe(0);
    }
  });

  it('process.exit() from a worker inside a binding (an element getter) ends only that worker', () => {
    const r = runChild(`
      const { Worker } = require('node:worker_threads');
      const src = "const { workerData } = require('node:worker_threads'); const { Tensor } = require(workerData);" +
        "const s = [1]; Object.defineProperty(s, 1, { get() { process.exit(7); }, enumerable: true });" +
        "Tensor.fromArray(new Float32Array(4), s);";
      const w = new Worker(src, { eval: true, workerData: process.env.LORA_ADDON });
      w.on('exit', (code) => { console.log('worker exit ' + code); });
    `);
    expect(r.out).not.toMatch(/terminate called|FATAL ERROR|Aborted/);
    expect(r.status, r.out.slice(-3000)).toBe(0);
    expect(r.out).toContain('worker exit 7');
  });
});
