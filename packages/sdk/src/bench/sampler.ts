// Memory sampling on a background thread. Kernels run synchronously on the main thread, so a
// main-thread timer would only fire between steps; a worker keeps sampling while a step runs.
// RSS is process-wide (/proc/self/statm) and the addon's allocators are process-wide statics, so
// the worker sees the training's memory. With `gpu`, the addon's NVML sampler (a native thread,
// nvmlStart/nvmlStop) runs alongside, and each memory sample gets the GPU utilisation and
// memory-access % of the NVML sample nearest in time; without NVML those fields stay unset.
import { Worker } from 'node:worker_threads';

import type { MemorySample } from './results.js';

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const page = 4096;
let addon;
try { addon = require(workerData.addonPath); } catch { addon = undefined; }
const samples = [];
const t0 = workerData.t0;
let nvmlOffset = -1;
if (workerData.gpu && addon && addon.nvmlStart) {
  try { if (addon.nvmlStart(workerData.intervalMs).started) nvmlOffset = Date.now() - t0; } catch {}
}
function attachNvml() {
  if (nvmlOffset < 0) return;
  let gpu = [];
  try { gpu = addon.nvmlStop(); } catch { gpu = []; }
  const slack = Math.max(2 * workerData.intervalMs, 250);
  let j = 0;
  for (const s of samples) {
    while (j + 1 < gpu.length && Math.abs(nvmlOffset + gpu[j + 1].tMs - s.tMs) <= Math.abs(nvmlOffset + gpu[j].tMs - s.tMs)) ++j;
    const g = gpu[j];
    if (g && Math.abs(nvmlOffset + g.tMs - s.tMs) <= slack) { s.gpuUtilPct = g.gpuUtilPct; s.gpuMemAccessPct = g.memAccessPct; }
  }
}
function sample() {
  let rss = 0;
  try { rss = Number(fs.readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * page; } catch { rss = 0; }
  let a = 0, r = 0;
  try { if (addon) { const s = addon.memoryStats(workerData.device); a = s.allocated; r = s.reserved; } } catch {}
  samples.push({ tMs: Date.now() - t0, rssBytes: rss, deviceAllocatedBytes: a, deviceReservedBytes: r });
}
sample();
const timer = setInterval(sample, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m === 'stop') { clearInterval(timer); sample(); attachNvml(); parentPort.postMessage(samples); }
});
`;

export class MemorySampler {
  private readonly worker: Worker;

  /** gpu: also sample NVML utilisation (GPU %, memory-access %) into each sample. */
  constructor(o: { addonPath: string; device: string; intervalMs?: number; gpu?: boolean }) {
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: { addonPath: o.addonPath, device: o.device === 'ref' ? 'cpu' : o.device, intervalMs: o.intervalMs ?? 100, t0: Date.now(), gpu: !!o.gpu },
    });
    this.worker.unref();
  }

  /** Stops sampling and returns every sample, oldest first. */
  stop(): Promise<MemorySample[]> {
    return new Promise((resolve, reject) => {
      this.worker.once('message', (samples: MemorySample[]) => {
        void this.worker.terminate();
        resolve(samples);
      });
      this.worker.once('error', reject);
      this.worker.postMessage('stop');
    });
  }
}

export function summarize(values: number[]): { mean: number; std: number; min: number; max: number } {
  if (!values.length) return { mean: 0, std: 0, min: 0, max: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return { mean, std, min: Math.min(...values), max: Math.max(...values) };
}
