import { describe, expect, it } from 'vitest';

import { native } from '../lib/index.js';

const { Tensor } = native();

describe('Tensor runtime', () => {
  it('round-trips f32, i32, i64, i8 and u8 data', () => {
    const cases = [
      new Float32Array([1.5, -2, 3e-7, Number.POSITIVE_INFINITY, 0, -0]),
      new Int32Array([1, -2, 2147483647, -2147483648, 0, 7]),
      new BigInt64Array([1n, -2n, 9007199254740993n, -5n, 0n, 7n]),
      new Int8Array([1, -2, 127, -128, 0, 7]),
      new Uint8Array([1, 2, 255, 128, 0, 7]),
    ];
    for (const data of cases) {
      using t = Tensor.fromArray(data, [2, 3]);
      expect(t.shape).toEqual([2, 3]);
      expect(t.strides).toEqual([3, 1]);
      expect(t.numel).toBe(6);
      expect(Array.from(t.toArray() as ArrayLike<unknown>)).toEqual(Array.from(data as ArrayLike<unknown>));
    }
  });

  it('rounds f32 to bf16 to nearest even, like torch', () => {
    // 1 + 2^-8 is exactly halfway between bf16 1 and 1 + 2^-7: ties go to the even mantissa (1).
    // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to even (1 + 2^-6).
    const x = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.14159, -0.1, Number.NaN, -0, 3.4e38]);
    using t = Tensor.fromArray(x, [7], 'bf16');
    const y = t.toArray() as Float32Array;
    expect(y[0]).toBe(1);
    expect(y[1]).toBe(1 + 2 ** -6);
    expect(y[2]).toBe(3.140625);
    expect(y[3]).toBe(-0.10009765625);
    expect(Number.isNaN(y[4])).toBe(true);
    expect(Object.is(y[5], -0)).toBe(true);
    expect(y[6]).toBe(Number.POSITIVE_INFINITY); // above bf16 max (3.3895e38) + half an ulp: overflows like torch
    // Raw bits: 1.0 is 0x3f80.
    expect(Array.from(new Uint16Array(t.bytes().buffer).slice(0, 1))).toEqual([0x3f80]);
  });

  it('rounds f32 to f16 to nearest even, with subnormals and overflow', () => {
    const x = new Float32Array([65504, 65519, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, 0.1]);
    using t = Tensor.fromArray(x, [8], 'f16');
    const y = t.toArray() as Float32Array;
    expect(y[0]).toBe(65504);
    expect(y[1]).toBe(65504); // below the halfway point to 65536
    expect(y[2]).toBe(Number.POSITIVE_INFINITY); // the tie rounds to the (infinite) even value
    expect(y[3]).toBe(2 ** -24); // smallest subnormal is exact
    expect(y[4]).toBe(0); // half of it ties to even zero
    expect(y[5]).toBe(2 ** -23); // 1.5 ulp rounds to 2 ulp
    expect(y[6]).toBe(1); // tie to even
    expect(y[7]).toBeCloseTo(0.0999755859375, 12);
  });

  it('accepts raw f16/bf16 bits from a Uint16Array', () => {
    using t = Tensor.fromArray(new Uint16Array([0x3f80, 0xc000]), [2], 'bf16');
    expect(Array.from(t.toArray() as Float32Array)).toEqual([1, -2]);
  });

  it('makes views with reshape and narrow, and copies with clone', () => {
    using t = Tensor.fromArray(new Float32Array([0, 1, 2, 3, 4, 5]), [2, 3]);
    using r = t.reshape([3, -1]);
    expect(r.shape).toEqual([3, 2]);
    using n = t.narrow(1, 1, 2);
    expect(n.shape).toEqual([2, 2]);
    expect(n.contiguous).toBe(false);
    expect(() => n.toArray()).toThrow(/contiguous/);
    using c = n.clone();
    expect(Array.from(c.toArray() as Float32Array)).toEqual([1, 2, 4, 5]);
    // Views share memory with their base.
    t.copyFrom(new Float32Array([9, 9, 9, 9, 9, 9]));
    expect(Array.from(r.toArray() as Float32Array)).toEqual([9, 9, 9, 9, 9, 9]);
  });

  it('holds packed 4-bit weights with their block scales', () => {
    const packed = new Uint8Array([0x1f, 0x80, 0x00, 0xff]);
    const scales = new Float32Array([0.5]);
    using q = Tensor.fromQuantized(packed, scales, [1, 8], 'nf4', 8);
    expect(q.dtype).toBe('nf4');
    expect(q.nbytes).toBe(4);
    expect(q.blockSize).toBe(8);
    expect(Array.from(q.toArray() as Uint8Array)).toEqual([0x1f, 0x80, 0x00, 0xff]);
    expect(Array.from(q.scales()!)).toEqual([0.5]);
    using q8 = Tensor.fromQuantized(new Int8Array([1, -1, 127, -127]), new Float32Array([0.1, 0.2]), [2, 2], 'i8', 0);
    expect(q8.scales()!.length).toBe(2);
  });

  it('dispose is idempotent and later use throws ERR_LORA_DISPOSED', () => {
    const t = Tensor.empty('f32', [4]);
    expect(t.disposed).toBe(false);
    t.dispose();
    t.dispose();
    t[Symbol.dispose]();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow(expect.objectContaining({ code: 'ERR_LORA_DISPOSED' }));
  });

  it('reuses freed blocks through the caching allocator and reports peaks', () => {
    native().emptyCache('cpu');
    native().resetPeakMemory('cpu');
    const before = native().memoryStats('cpu');
    for (let i = 0; i < 10; i++) {
      const t = Tensor.empty('f32', [1 << 18]); // 1 MiB -> one 2 MiB block
      t.dispose();
    }
    const after = native().memoryStats('cpu');
    expect(after.numAllocs - before.numAllocs).toBe(10);
    expect(after.numRawAllocs - before.numRawAllocs).toBe(1);
    expect(after.cacheHits - before.cacheHits).toBe(9);
    expect(after.peakAllocated).toBeGreaterThanOrEqual(before.allocated + (2 << 20));
    expect(after.allocated).toBe(before.allocated);
    native().emptyCache('cpu');
    expect(native().memoryStats('cpu').reserved).toBe(after.allocated);
  });

  it('keeps emu memory separate from cpu memory and copies between them', () => {
    const built = native().buildInfo().emu;
    if (!built) return; // the emulator backend is optional in a build; covered by its own tests
    using a = Tensor.fromArray(new Float32Array([1, 2, 3]), [3]);
    using b = a.to('emu');
    expect(b.device).toBe('emu');
    expect(Array.from(b.toArray() as Float32Array)).toEqual([1, 2, 3]);
  });

  it('reports CUDA as unavailable with a reason instead of failing when there is no GPU', () => {
    const cuda = native().cudaInfo();
    if (cuda.usable) return;
    expect(cuda.reason.length).toBeGreaterThan(0);
    expect(() => Tensor.empty('f32', [2], 'cuda')).toThrow(/not available/);
    const b = native().backends().find((x) => x.name === 'cuda')!;
    expect(b.usable).toBe(false);
    expect(b.reason).toMatch(/^CUDA unavailable: /);
  });
});
