// The `cuda` backend (cuda/kernels compiled by nvcc). Without a usable GPU the suite skips with
// the reason the addon gives, and checks that the reason reaches callers (backends(), op calls)
// as a clear "CUDA unavailable: ..." instead of a crash.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { native } from '../lib/index.js';

const addon = native() as any;
const { Tensor } = addon;
const cuda = (addon.backends() as { name: string; built: boolean; usable: boolean; reason: string }[]).find((b) => b.name === 'cuda')!;

/** What a small matmul of host tensors on the 'cuda' backend throws (undefined if it returns). */
function matmulOnCudaError(): any {
  using x = Tensor.fromArray(new Float32Array(6), [2, 3]);
  using w = Tensor.fromArray(new Float32Array(12), [4, 3]);
  using y = Tensor.fromArray(new Float32Array(8), [2, 4]);
  try {
    addon.opMatmulXWt(x, w, null, y, false, 'cuda');
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('cuda backend status', () => {
  it('is listed with a reason whenever it is not usable', () => {
    console.log(`[cuda] built=${cuda.built} usable=${cuda.usable}${cuda.usable ? '' : ` reason: ${cuda.reason}`}`);
    if (!cuda.usable) expect(cuda.reason).toMatch(/^CUDA unavailable: .+/);
  });

  it.skipIf(cuda.usable)('refuses ops with the unavailability reason (no GPU here)', () => {
    console.log(`[cuda] op suite skipped: ${cuda.reason}`);
    const err = matmulOnCudaError();
    expect(err?.code).toBe('ERR_LORA_UNSUPPORTED');
    expect(String(err?.message)).toMatch(/CUDA unavailable/);
  });

  it.skipIf(!cuda.usable)('with a GPU: host tensors given to the cuda backend are refused with ERR_LORA_DEVICE', () => {
    const err = matmulOnCudaError();
    expect(err?.code).toBe('ERR_LORA_DEVICE');
    expect(String(err?.message)).toMatch(/backend 'cuda' takes tensors on a CUDA device, got cpu/);
  });

  it.skipIf(!cuda.usable)('with a GPU: the emu op matrix passes on cuda against ref (child process, LORA_OPS_TARGET=cuda)', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
    const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--project', 'core-native', 'test/emu-ops.test.ts'], {
      cwd: root,
      env: { ...process.env, LORA_OPS_TARGET: 'cuda' },
      encoding: 'utf8',
      timeout: 600_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    const lines = out.split('\n').filter((l) => l.includes('[cuda] ok') || l.includes('[cuda] FAIL'));
    for (const l of lines) console.log(l.trim());
    expect(r.status, out.slice(-4000)).toBe(0);
    expect(lines.length).toBeGreaterThan(20);
    expect(lines.filter((l) => l.includes('FAIL'))).toEqual([]);
  });
});
