// The `cuda` backend (cuda/kernels compiled by nvcc). Without a usable GPU the suite skips with
// the reason the addon gives, and checks that the reason reaches callers (backends(), op calls)
// as a clear "CUDA unavailable: ..." instead of a crash.
import { describe, expect, it } from 'vitest';

import { native } from '../lib/index.js';

const addon = native() as any;
const { Tensor } = addon;
const cuda = (addon.backends() as { name: string; built: boolean; usable: boolean; reason: string }[]).find((b) => b.name === 'cuda')!;

describe('cuda backend status', () => {
  it('is listed with a reason whenever it is not usable', () => {
    console.log(`[cuda] built=${cuda.built} usable=${cuda.usable}${cuda.usable ? '' : ` reason: ${cuda.reason}`}`);
    if (!cuda.usable) expect(cuda.reason).toMatch(/^CUDA unavailable: .+/);
  });

  it.skipIf(cuda.usable)('refuses ops with the unavailability reason (no GPU here)', () => {
    console.log(`[cuda] op suite skipped: ${cuda.reason}`);
    using x = Tensor.fromArray(new Float32Array(6), [2, 3]);
    using w = Tensor.fromArray(new Float32Array(12), [4, 3]);
    using y = Tensor.fromArray(new Float32Array(8), [2, 4]);
    let err: any;
    try {
      addon.opMatmulXWt(x, w, null, y, false, 'cuda');
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe('ERR_LORA_UNSUPPORTED');
    expect(String(err?.message)).toMatch(/CUDA unavailable/);
  });

  it.skipIf(!cuda.usable)('with a GPU: reports why the op bindings cannot run it yet', () => {
    // The kernels need device pointers; the op bindings validate host tensors ('cpu'/'emu').
    using x = Tensor.fromArray(new Float32Array(6), [2, 3]);
    using w = Tensor.fromArray(new Float32Array(12), [4, 3]);
    using y = Tensor.fromArray(new Float32Array(8), [2, 4]);
    expect(() => addon.opMatmulXWt(x, w, null, y, false, 'cuda')).toThrow(/device/);
  });
});
