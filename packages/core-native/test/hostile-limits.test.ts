// Sizes and settings that used to take the process down or hold it forever: typed-array results
// over the engine's limit (a V8 FATAL ERROR, SIGABRT), LORA_NUM_THREADS=1024 (accepted, 31x
// slower), benchPeak with a huge iteration count (blocked the thread with no way out).
import { spawnSync } from 'node:child_process';

import { describe, expect, it, vi } from 'vitest';

import { loadAddon, native } from '../lib/index.js';

const addon = native();
const { Tensor } = addon;
type AnyFn = (...a: unknown[]) => unknown;

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'NO_ERROR';
  } catch (e) {
    return (e as { code?: string }).code ?? `UNCODED: ${(e as Error).message}`;
  }
}

describe('typed-array results over the engine limit', () => {
  // 2^32 + 1 u8 elements: the allocator's aligned_alloc maps 4 GiB that nothing touches (the
  // check runs before any copy), so resident memory stays small. The ASan allocator would
  // account the mapping differently: release build only.
  it.skipIf(addon.buildInfo().sanitize)('toArray()/bytes() of more than 2^32 elements throw ERR_LORA_UNSUPPORTED', () => {
    const rss0 = process.memoryUsage().rss;
    let t;
    try {
      t = Tensor.empty('u8', [2 ** 32 + 1]);
    } catch (e) {
      console.log(`[limits] a 4 GiB host tensor could not be mapped here (${(e as { code?: string }).code}); skipped`);
      return;
    }
    try {
      for (const m of ['toArray', 'bytes'] as const) {
        expect(() => t[m]()).toThrow(expect.objectContaining({ code: 'ERR_LORA_UNSUPPORTED', message: expect.stringMatching(/typed-array limit of 4294967296/) }));
      }
      const part = t.narrow(0, 2 ** 32 - 3, 4);  // the documented way out: parts of it
      using copy = part.clone();
      expect((copy.toArray() as Uint8Array).length).toBe(4);
      part.dispose();
      const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
      console.log(`[limits] 2^32+1-element u8 tensor: toArray/bytes refused, RSS +${grown.toFixed(0)} MiB`);
      expect(grown).toBeLessThan(512);
    } finally {
      t.dispose();
      addon.emptyCache('cpu');
    }
  });
});

describe('LORA_NUM_THREADS', () => {
  const max = (addon.maxNumThreads as () => number)();

  it('the loader refuses a value outside [1, maxNumThreads()] with a coded error', async () => {
    expect(max).toBeGreaterThanOrEqual(4);
    expect(max).toBeLessThanOrEqual(256);
    const saved = process.env.LORA_NUM_THREADS;
    try {
      for (const bad of ['1024', '0', '-2', 'four', '2.5', '4x', String(max + 1)]) {
        process.env.LORA_NUM_THREADS = bad;
        vi.resetModules();
        const fresh = await import('../lib/loader.js');
        expect(() => fresh.loadAddon(), bad).toThrow(expect.objectContaining({ code: 'ERR_LORA_INVALID_ARG', arg: 'LORA_NUM_THREADS' }));
      }
      process.env.LORA_NUM_THREADS = String(max);
      vi.resetModules();
      expect((await import('../lib/loader.js')).loadAddon().addon).toBe(addon);
    } finally {
      if (saved === undefined) delete process.env.LORA_NUM_THREADS;
      else process.env.LORA_NUM_THREADS = saved;
      vi.resetModules();
    }
  });

  it('the addon loaded directly (a worker, another loader) warns and clamps', () => {
    const script = `const a = require(process.env.LORA_ADDON); console.log('threads=' + a.getNumThreads() + ' max=' + a.maxNumThreads());`;
    const run = (v: string) => spawnSync(process.execPath, ['-e', script], { env: { ...process.env, LORA_ADDON: loadAddon().path, LORA_NUM_THREADS: v }, encoding: 'utf8' });
    const big = run('1024');
    expect(big.status).toBe(0);
    expect(big.stdout).toContain(`threads=${max} max=${max}`);
    expect(big.stderr).toMatch(/LORA_NUM_THREADS='1024' is not an integer in \[1, \d+\] \(ERR_LORA_INVALID_ARG\)/);
    const junk = run('lots');
    expect(junk.stderr).toContain('ERR_LORA_INVALID_ARG');
    const ok = run('3');
    expect(ok.stdout).toContain('threads=3');
    expect(ok.stderr).not.toContain('LORA_NUM_THREADS');
  });

  it('setNumThreads takes [1, maxNumThreads()] only', () => {
    const before = (addon.getNumThreads as () => number)();
    expect(codeOf(() => (addon.setNumThreads as AnyFn)(1024))).toBe('ERR_LORA_INVALID_ARG');
    expect(codeOf(() => (addon.setNumThreads as AnyFn)(max + 1))).toBe('ERR_LORA_INVALID_ARG');
    expect((addon.getNumThreads as () => number)()).toBe(before);
  });
});

describe('benchPeak', () => {
  it('refuses iteration and thread counts that would hold the thread for long', () => {
    const benchPeak = addon.benchPeak as AnyFn;
    expect(codeOf(() => benchPeak('bf16', 1, 2 ** 40))).toBe('ERR_LORA_INVALID_ARG');
    expect(codeOf(() => benchPeak('bf16', 1, 2 ** 26 + 1))).toBe('ERR_LORA_INVALID_ARG');
    expect(codeOf(() => benchPeak('f32', 1024, 1000))).toBe('ERR_LORA_INVALID_ARG');
    if (!addon.cpuInfo().features.avx512bf16) return;
    const t0 = performance.now();
    const r = benchPeak('bf16', 1, 4e6) as { seconds: number };
    console.log(`[limits] benchPeak bf16 x 4e6 iters: ${(r.seconds * 1e3).toFixed(1)} ms (${((r.seconds / 4e6) * 2 ** 26).toFixed(2)} s at the 2^26 cap)`);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
