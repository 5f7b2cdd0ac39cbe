// Device placement of the op bindings ('cuda' tensors for the cuda backend, host tensors for the
// host backends), launcher scratch through the caching allocator, and NVML sampling. Most of it
// runs without a GPU: the placement rules through opPlacement (the function every op binding
// calls), the "unavailable" paths, the scratch hooks on the emulator; the GPU cases are skipped
// here with the reason printed and run where cudaInfo().usable is true.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { loadAddon, native } from '../lib/index.js';

const addon = native() as any;
const { Tensor } = addon;
const cuda = addon.cudaInfo() as { usable: boolean; reason: string; totalMemory: number };
const hasEmu = !!(addon.backends() as { name: string; usable: boolean }[]).find((b) => b.name === 'emu')?.usable;
const nvml = addon.nvmlInfo() as { available: boolean; reason: string; deviceCount: number; deviceName: string };

function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('op placement (opPlacement: the check pick_backend runs on every op\'s tensors)', () => {
  it('host backends take cpu and emu tensors and refuse cuda ones, naming the argument', () => {
    for (const b of ['ref', 'cpu', 'emu']) {
      expect(addon.opPlacement(b, [['x', 'cpu'], ['w', 'emu']])).toEqual({ backend: b, device: 'cpu' });
      const e = thrown(() => addon.opPlacement(b, [['x', 'cpu'], ['w', 'cuda:0']]));
      expect(e.code).toBe('ERR_LORA_DEVICE');
      expect(e.arg).toBe('w');
      expect(e.message).toBe(`w: backend '${b}' takes host tensors ('cpu' or 'emu'), got cuda:0 (run the op with backend 'cuda', or copy the tensor with .to('cpu'))`);
    }
  });

  it('cuda takes tensors on one CUDA device and runs there; host tensors or a second device are refused', () => {
    expect(addon.opPlacement('cuda', [['x', 'cuda:1'], ['w', 'cuda:1']])).toEqual({ backend: 'cuda', device: 'cuda:1' });
    let e = thrown(() => addon.opPlacement('cuda', [['x', 'cuda:0'], ['w', 'cuda:1']]));
    expect(e.code).toBe('ERR_LORA_DEVICE');
    expect(e.arg).toBe('w');
    expect(e.message).toBe("w: on cuda:1 but 'x' is on cuda:0; every tensor of a 'cuda' op must be on the same device");
    e = thrown(() => addon.opPlacement('cuda', [['ids', 'cpu'], ['table', 'cuda']]));
    expect(e.code).toBe('ERR_LORA_DEVICE');
    expect(e.arg).toBe('ids');
    expect(e.message).toBe("ids: backend 'cuda' takes tensors on a CUDA device, got cpu (copy it with .to('cuda:0'))");
    e = thrown(() => addon.opPlacement('cuda', [['x', 'cuda:0'], ['mask', 'emu']]));
    expect(e.message).toMatch(/^mask: backend 'cuda' takes tensors on a CUDA device, got emu/);
  });

  it("'auto' runs on cuda when a tensor is on a CUDA device (all of them must be), else on the host", () => {
    const host = addon.opPlacement('auto', [['x', 'cpu'], ['w', 'emu']]);
    expect(host.device).toBe('cpu');
    expect(['cpu', 'ref']).toContain(host.backend);
    expect(addon.opPlacement('auto', [['x', 'cuda:0'], ['w', 'cuda:0']])).toEqual({ backend: 'cuda', device: 'cuda:0' });
    const e = thrown(() => addon.opPlacement('auto', [['x', 'cpu'], ['w', 'cuda:0']]));
    expect(e.code).toBe('ERR_LORA_DEVICE');
    expect(e.arg).toBe('x');
  });

  it('rejects malformed input with ERR_LORA_INVALID_ARG', () => {
    expect(thrown(() => addon.opPlacement('cpu', [['x', 'gpu']])).code).toBe('ERR_LORA_INVALID_ARG');
    expect(thrown(() => addon.opPlacement('cpu', 'x')).code).toBe('ERR_LORA_INVALID_ARG');
  });
});

describe.skipIf(cuda.usable)('without a usable GPU', () => {
  it('cuda tensors cannot be made; the error says why', () => {
    console.log(`[cuda-device] no GPU: ${cuda.reason}`);
    expect(cuda.reason.length).toBeGreaterThan(0);
    for (const make of [
      () => Tensor.empty('f32', [2, 3], 'cuda'),
      () => Tensor.fromArray(new Float32Array(6), [2, 3], 'f32', 'cuda:0'),
      () => {
        using h = Tensor.fromArray(new Float32Array(6), [2, 3]);
        return h.to('cuda');
      },
    ]) {
      const e = thrown(make);
      expect(e.code).toBe('ERR_LORA_DEVICE');
      expect(e.message).toContain(cuda.reason);
    }
  });

  it("ops asked for backend 'cuda' say CUDA unavailable with the reason (before any placement error)", () => {
    using ids = Tensor.fromArray(new Int32Array([0, 1]), [2], 'i32');
    using table = Tensor.fromArray(new Float32Array(8), [4, 2]);
    using out = Tensor.fromArray(new Float32Array(4), [2, 2]);
    using h = Tensor.fromArray(new Float32Array(4), [2, 2]);
    const calls: [string, () => unknown][] = [
      ['embedding', () => addon.opEmbedding(ids, table, out, null, null, 2, 'cuda')],
      ['crossEntropy', () => addon.opCrossEntropy(h, table, ids, null, null, null, -100, 1, 4, 'cuda')],
      ['sumSquares', () => addon.opSumSquares([table, h], 'cuda')],
      ['relu', () => addon.opRelu(h, out, 'cuda')],
    ];
    for (const [name, call] of calls) {
      const e = thrown(call);
      expect(e.code, name).toBe('ERR_LORA_UNSUPPORTED');
      expect(e.message, name).toContain(`CUDA unavailable: ${cuda.reason}`);
    }
  });
});

describe('host backends with host tensors', () => {
  it.skipIf(!hasEmu)("'ref' takes 'emu' tensors and its value checks still read them", () => {
    using ids = Tensor.fromArray(new Int32Array([0, 3, 1]), [3], 'i32', 'emu');
    using table = Tensor.fromArray(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]), [4, 2], 'f32', 'emu');
    using out = Tensor.empty('f32', [3, 2], 'emu');
    addon.opEmbedding(ids, table, out, null, null, 2, 'ref');
    expect(Array.from(out.toArray() as Float32Array)).toEqual([0, 1, 6, 7, 2, 3]);
    using bad = Tensor.fromArray(new Int32Array([0, 4, 1]), [3], 'i32', 'emu');
    const e = thrown(() => addon.opEmbedding(bad, table, out, null, null, 2, 'emu'));
    expect(e.code).toBe('ERR_LORA_INVALID_ARG');
    expect(e.message).toBe('ids[1] = 4 is outside [0, 4)');
  });

  it('sumSquares checks every tensor before picking the backend', () => {
    using a = Tensor.fromArray(new Float32Array([1, 2]), [2]);
    using b = Tensor.fromArray(new Float32Array([3]), [1]);
    expect(addon.opSumSquares([a, b], 'ref')).toBe(14);
    expect(addon.opSumSquares([], 'ref')).toBe(0);
    const e = thrown(() => addon.opSumSquares([a, 3], 'ref'));
    expect(e.code).toBe('ERR_LORA_INVALID_ARG');
  });
});

describe.skipIf(!hasEmu)('launcher scratch goes through the caching allocator (emu; cuda installs the same hooks)', () => {
  it('cross-entropy scratch is counted in memoryStats and handed back', () => {
    const M = 5, C = 8, V = 40;
    using h = Tensor.fromArray(Float32Array.from({ length: M * C }, (_, i) => Math.sin(i)), [M, C], 'f32', 'emu');
    using w = Tensor.fromArray(Float32Array.from({ length: V * C }, (_, i) => Math.cos(i) * 0.1), [V, C], 'f32', 'emu');
    using tg = Tensor.fromArray(new Int32Array([1, 7, 39, -100, 0]), [M], 'i32', 'emu');
    addon.resetPeakMemory('emu');
    const before = addon.memoryStats('emu');
    const r = addon.opCrossEntropy(h, w, tg, null, null, null, -100, 1, 16, 'emu');
    const after = addon.memoryStats('emu');
    console.log(`[cuda-device] emu cross-entropy scratch: ${after.numAllocs - before.numAllocs} allocations, peak +${after.peakAllocated - before.allocated} B`);
    expect(r.count).toBe(4);
    // lbuf [M, chunk] + stats [4M] in the launcher, the f64 loss/count staging in the table.
    expect(after.numAllocs - before.numAllocs).toBeGreaterThanOrEqual(3);
    expect(after.peakAllocated).toBeGreaterThan(before.allocated);
    expect(after.allocated).toBe(before.allocated);
    // The next call reuses the cached blocks.
    addon.opCrossEntropy(h, w, tg, null, null, null, -100, 1, 16, 'emu');
    const again = addon.memoryStats('emu');
    expect(again.cacheHits - after.cacheHits).toBeGreaterThanOrEqual(3);
    expect(again.numRawAllocs).toBe(after.numRawAllocs);
  });
});

describe.skipIf(!cuda.usable)('with a GPU', () => {
  it('runs ops on cuda tensors (auto picks cuda) and refuses mixed devices', () => {
    using x = Tensor.fromArray(new Float32Array([1, -2, 3, -4]), [4], 'f32', 'cuda');
    using y = Tensor.empty('f32', [4], 'cuda');
    addon.opRelu(x, y);
    expect(Array.from(y.toArray() as Float32Array)).toEqual([1, 0, 3, 0]);
    using hy = Tensor.empty('f32', [4]);
    let e = thrown(() => addon.opRelu(x, hy, 'cuda'));
    expect(e.code).toBe('ERR_LORA_DEVICE');
    expect(e.arg).toBe('y');
    e = thrown(() => addon.opRelu(x, y, 'cpu'));
    expect(e.code).toBe('ERR_LORA_DEVICE');
    expect(e.arg).toBe('x');
  });

  it('checks index values of device tensors (copied to the host)', () => {
    using table = Tensor.fromArray(new Float32Array(8), [4, 2], 'f32', 'cuda');
    using out = Tensor.empty('f32', [3, 2], 'cuda');
    using bad = Tensor.fromArray(new Int32Array([0, 9, 1]), [3], 'i32', 'cuda');
    let e = thrown(() => addon.opEmbedding(bad, table, out, null, null, 2, 'cuda'));
    expect(e.code).toBe('ERR_LORA_INVALID_ARG');
    expect(e.message).toBe('ids[1] = 9 is outside [0, 4)');
    using h = Tensor.fromArray(new Float32Array(6), [3, 2], 'f32', 'cuda');
    e = thrown(() => addon.opCrossEntropy(h, table, bad, null, null, null, -100, 1, 4, 'cuda'));
    expect(e.code).toBe('ERR_LORA_INVALID_ARG');
    expect(e.message).toMatch(/^targets\[1\] = 9 is outside \[0, 4\)/);
  });

  it("launcher scratch is counted in memoryStats('cuda')", () => {
    const M = 5, C = 8, V = 40;
    using h = Tensor.fromArray(Float32Array.from({ length: M * C }, (_, i) => Math.sin(i)), [M, C], 'f32', 'cuda');
    using w = Tensor.fromArray(Float32Array.from({ length: V * C }, (_, i) => Math.cos(i) * 0.1), [V, C], 'f32', 'cuda');
    using tg = Tensor.fromArray(new Int32Array([1, 7, 39, -100, 0]), [M], 'i32', 'cuda');
    const before = addon.memoryStats('cuda');
    expect(addon.opCrossEntropy(h, w, tg, null, null, null, -100, 1, 16, 'cuda').count).toBe(4);
    const after = addon.memoryStats('cuda');
    expect(after.numAllocs - before.numAllocs).toBeGreaterThanOrEqual(3);
    expect(after.allocated).toBe(before.allocated);
  });
});

describe('NVML', () => {
  it('nvmlInfo says whether it is available, with "NVML unavailable: <reason>" when not', () => {
    console.log(`[nvml] ${nvml.available ? `available: ${nvml.deviceCount} device(s), sampling ${nvml.deviceName}` : nvml.reason}`);
    if (!nvml.available) expect(nvml.reason).toMatch(/^NVML unavailable: .+/);
    else expect(nvml.deviceCount).toBeGreaterThan(0);
  });

  it.skipIf(nvml.available)('nvmlStart/nvmlStop/nvmlRunning are safe without NVML', () => {
    expect(addon.nvmlStart(10)).toEqual({ started: false, reason: nvml.reason });
    expect(addon.nvmlRunning()).toBe(false);
    expect(addon.nvmlStop()).toEqual([]);
    expect(addon.nvmlStop()).toEqual([]);
    expect(thrown(() => addon.nvmlStart(0)).code).toBe('ERR_LORA_INVALID_ARG');
  });

  it('reports a library that cannot be loaded or lacks the NVML symbols (LORA_NVML_LIBRARY, child processes)', () => {
    const script = `const a = require(${JSON.stringify(loadAddon().path)}); const s = a.nvmlStart(5); process.stdout.write(JSON.stringify({ info: a.nvmlInfo(), s, stop: a.nvmlStop() }));`;
    const run = (lib: string) => {
      const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, LORA_NVML_LIBRARY: lib }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout);
    };
    const missing = run('/nonexistent/libnvidia-ml.so.1');
    expect(missing.info.available).toBe(false);
    expect(missing.info.reason).toMatch(/^NVML unavailable: could not load \/nonexistent\/libnvidia-ml\.so\.1: /);
    expect(missing.s).toEqual({ started: false, reason: missing.info.reason });
    expect(missing.stop).toEqual([]);
    const libc = run('libc.so.6');
    expect(libc.info.reason).toBe('NVML unavailable: symbol nvmlInit_v2 not found in the NVML library');
  });

  it.skipIf(!nvml.available)('samples GPU and memory-access utilisation on a background thread', async () => {
    expect(addon.nvmlStart(20).started).toBe(true);
    expect(addon.nvmlRunning()).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    const s = addon.nvmlStop() as { tMs: number; gpuUtilPct: number; memAccessPct: number; memUsedBytes: number }[];
    expect(addon.nvmlRunning()).toBe(false);
    console.log(`[nvml] ${s.length} samples, last: ${JSON.stringify(s.at(-1))}`);
    expect(s.length).toBeGreaterThanOrEqual(5);
    for (const x of s) {
      expect(x.gpuUtilPct).toBeGreaterThanOrEqual(0);
      expect(x.gpuUtilPct).toBeLessThanOrEqual(100);
      expect(x.memAccessPct).toBeGreaterThanOrEqual(0);
      expect(x.memAccessPct).toBeLessThanOrEqual(100);
    }
    for (let i = 1; i < s.length; ++i) expect(s[i].tMs).toBeGreaterThan(s[i - 1].tMs);
  });
});
