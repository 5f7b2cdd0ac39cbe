// The bench's background sampler: memory samples, and with `gpu` the NVML utilisation merged into
// them. No GPU here, so the NVML side is exercised two ways: the real addon (NVML unavailable:
// the GPU fields stay unset) and a stand-in addon module whose nvmlStart/nvmlStop behave like a
// GPU's (the merge by time, the worker-side plumbing).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { loadAddon, native } from '@lora/core-native';

import { MemorySampler } from '../src/bench/sampler.js';

const dir = mkdtempSync(join(tmpdir(), 'lora-sampler-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('MemorySampler', () => {
  it('samples memory; with gpu and no NVML the GPU fields stay unset', async () => {
    const nvml = (native() as any).nvmlInfo();
    const s = new MemorySampler({ addonPath: loadAddon().path, device: 'cpu', intervalMs: 20, gpu: true });
    await sleep(120);
    const samples = await s.stop();
    expect(samples.length).toBeGreaterThanOrEqual(2);
    expect(samples.every((x) => x.rssBytes > 0)).toBe(true);
    if (!nvml.available) {
      expect(samples.every((x) => x.gpuUtilPct === undefined && x.gpuMemAccessPct === undefined)).toBe(true);
      expect((native() as any).nvmlRunning()).toBe(false);
    }
  });

  it('merges NVML samples into the memory samples by time (stand-in addon)', async () => {
    const fake = join(dir, 'fake-addon.cjs');
    // nvmlStop reports a sample every 10 ms since nvmlStart, GPU % = 10 * index (capped), memory % = 50.
    writeFileSync(fake, `
let t0 = 0;
exports.memoryStats = () => ({ allocated: 1024, reserved: 2048 });
exports.nvmlStart = () => { t0 = Date.now(); return { started: true, reason: '' }; };
exports.nvmlStop = () => {
  const n = Math.floor((Date.now() - t0) / 10) + 1, out = [];
  for (let i = 0; i < n; ++i) out.push({ tMs: i * 10, gpuUtilPct: Math.min(100, i * 10), memAccessPct: 50, memUsedBytes: 0 });
  return out;
};
`);
    const s = new MemorySampler({ addonPath: fake, device: 'cuda', intervalMs: 20, gpu: true });
    await sleep(150);
    const samples = await s.stop();
    expect(samples.length).toBeGreaterThanOrEqual(3);
    for (const x of samples) {
      expect(x.deviceAllocatedBytes).toBe(1024);
      expect(x.gpuMemAccessPct).toBe(50);
      expect(x.gpuUtilPct).toBeGreaterThanOrEqual(0);
      expect(x.gpuUtilPct).toBeLessThanOrEqual(100);
    }
    // Later memory samples pair with later NVML samples.
    expect(samples.at(-1)!.gpuUtilPct!).toBeGreaterThan(samples[0].gpuUtilPct!);

    const off = new MemorySampler({ addonPath: fake, device: 'cuda', intervalMs: 20 });
    await sleep(60);
    expect((await off.stop()).every((x) => x.gpuUtilPct === undefined)).toBe(true);
  });
});
