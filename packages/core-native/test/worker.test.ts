// The addon is context-aware: a worker thread may load it too (the bench's memory sampler does),
// and tensors made on either thread keep working. Process-wide N-API references would crash here.
import { Worker } from 'node:worker_threads';

import { describe, expect, it } from 'vitest';

import { loadAddon, native } from '../lib/index.js';

describe('worker threads', () => {
  it('loads the addon in a worker while the main thread keeps using it', async () => {
    const { Tensor } = native();
    using before = Tensor.fromArray(new Float32Array([1, 2]), [2]);
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData);
      const t = addon.Tensor.fromArray(new Float32Array([3, 4, 5]), [3]);
      parentPort.postMessage({ sum: Array.from(t.toArray()).reduce((a, b) => a + b, 0), stats: addon.memoryStats('cpu').allocated > 0 });
      t.dispose();
    `;
    const msg = await new Promise<{ sum: number; stats: boolean }>((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: loadAddon().path });
      w.once('message', resolve);
      w.once('error', reject);
    });
    expect(msg).toEqual({ sum: 12, stats: true });
    using after = Tensor.fromArray(new Float32Array([6]), [1]);
    expect(Array.from(before.toArray() as Float32Array)).toEqual([1, 2]);
    expect(Array.from(after.toArray() as Float32Array)).toEqual([6]);
  });
});
