// Throws garbage at every binding the addon exports (including op families added later) and checks
// that each call either returns or throws an Error carrying a stable ERR_LORA_* code — and that the
// process survives. Calls are sampled with a fixed seed so a failure reproduces.
import { types } from 'node:util';

import { describe, expect, it } from 'vitest';

import { native, type NativeTensor } from '../lib/index.js';
import { mulberry32 } from './ops-helpers.js';

const addon = native();
const { Tensor } = addon;

function garbage(): unknown[] {
  const disposed = Tensor.empty('f32', [2, 2]);
  disposed.dispose();
  // Look-alikes and odd buffers (issue 18): a proxy of a tensor, an object inheriting from one, a
  // tensor with no prototype, a detached array, a view tracking a resizable buffer, a sparse shape.
  const proto = Tensor.fromArray(new Float32Array(4), [2, 2]);
  const bare = Object.setPrototypeOf(Tensor.fromArray(new Float32Array(6), [2, 3]), null);
  const detached = new Float32Array(6);
  structuredClone(detached.buffer, { transfer: [detached.buffer] });
  const tracking = new Float32Array(new ArrayBuffer(24, { maxByteLength: 48 }));
  // eslint-disable-next-line no-sparse-arrays
  const sparse = [2, , 3];
  return [
    new Proxy(proto, {}), Object.create(proto), bare, detached, tracking, sparse,
    undefined, null, 0, -1, 3, 1e20, Number.NaN, Number.POSITIVE_INFINITY, 2.5, 'x', 'bf16', 'cuda:99', '',
    {}, [], [-1], [1e12, 1e12], [2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9], 1n, Symbol('s'), () => 1, true,
    new Float32Array(3), new Float64Array(6), new Uint16Array(6), new Int32Array(2), new Uint8Array(0),
    disposed,
    Tensor.fromArray(new Float32Array(6), [2, 3]),
    Tensor.fromArray(new Float32Array(6), [3, 2], 'bf16'),
    Tensor.fromArray(new Int32Array(4), [4]),
    Tensor.fromArray(new BigInt64Array(4), [2, 2]),
    Tensor.fromArray(new Float32Array([Number.NaN, Number.POSITIVE_INFINITY, 1, -1]), [2, 2]),
    Tensor.empty('f32', [0, 4]),
    Tensor.fromQuantized(new Uint8Array(32), new Float32Array(1), [1, 64], 'nf4', 64),
  ];
}

function expectCleanFailure(call: () => unknown, label: string): void {
  try {
    const r = call();
    if (r && typeof (r as NativeTensor).dispose === 'function') (r as NativeTensor).dispose();
  } catch (e) {
    const err = e as Error & { code?: string };
    if (!(err instanceof Error) || typeof err.code !== 'string' || !err.code.startsWith('ERR_LORA_')) {
      throw new Error(`${label}: threw something without an ERR_LORA_* code: ${String(err?.message ?? err)}`);
    }
    expect(err.message.length, `${label}: ${err.code}`).toBeGreaterThan(5);
  }
}

describe('bad input never crashes the process', () => {
  it('rejects garbage in Tensor constructors with clear errors', () => {
    expect(() => Tensor.empty('f32', [-1])).toThrow(expect.objectContaining({ code: 'ERR_LORA_INVALID_ARG', arg: 'shape' }));
    expect(() => Tensor.empty('float8' as never, [1])).toThrow(expect.objectContaining({ code: 'ERR_LORA_DTYPE', arg: 'dtype' }));
    expect(() => Tensor.empty('f32', [2 ** 20, 2 ** 20, 2 ** 20])).toThrow(expect.objectContaining({ code: 'ERR_LORA_SHAPE' }));
    expect(() => Tensor.empty('f32', [2 ** 39])).toThrow(expect.objectContaining({ code: 'ERR_LORA_OOM' }));
    expect(() => Tensor.empty('f32', [1], 'tpu' as never)).toThrow(expect.objectContaining({ code: 'ERR_LORA_DEVICE' }));
    expect(() => Tensor.fromArray(new Float32Array(5), [2, 3])).toThrow(/5 elements but shape \[2, 3\] needs 6/);
    expect(() => Tensor.fromArray(new Int32Array(6), [2, 3], 'f32')).toThrow(expect.objectContaining({ code: 'ERR_LORA_DTYPE' }));
    expect(() => Tensor.fromArray([1, 2, 3] as never, [3])).toThrow(expect.objectContaining({ code: 'ERR_LORA_INVALID_ARG' }));
    expect(() => Tensor.fromQuantized(new Uint8Array(31), new Float32Array(1), [1, 64], 'nf4', 64)).toThrow(/32 bytes/);
    expect(() => Tensor.fromQuantized(new Uint8Array(32), new Float32Array(2), [1, 64], 'nf4', 64)).toThrow(/1 values/);
    expect(() => Tensor.fromQuantized(new Uint8Array(32), new Float32Array(1), [1, 64], 'nf4', 7)).toThrow(/blockSize/);
    expect(() => new (Tensor as unknown as new () => unknown)()).toThrow(/Tensor.empty/);
    const t = Tensor.fromArray(new Float32Array(6), [2, 3]);
    expect(() => t.reshape([4, 2])).toThrow(/6 elements/);
    expect(() => t.narrow(2, 0, 1)).toThrow(expect.objectContaining({ arg: 'dim' }));
    expect(() => t.narrow(1, 2, 5)).toThrow(expect.objectContaining({ arg: 'length' }));
    t.dispose();
    expect(() => t.clone()).toThrow(expect.objectContaining({ code: 'ERR_LORA_DISPOSED' }));
  });

  it('survives sampled garbage calls to every exported function and Tensor method', () => {
    const rand = mulberry32(1234);
    const pool = garbage();
    const pick = () => pool[Math.floor(rand() * pool.length)];
    const functions = Object.entries(addon).filter(([, v]) => typeof v === 'function') as [string, (...a: unknown[]) => unknown][];
    const statics = ['empty', 'fromArray', 'fromQuantized'].map((k) => [`Tensor.${k}`, (Tensor as unknown as Record<string, (...a: unknown[]) => unknown>)[k]] as const);
    const methods = ['toArray', 'bytes', 'scales', 'copyFrom', 'to', 'clone', 'reshape', 'narrow', 'dispose'];
    let calls = 0;
    for (const [name, fn] of [...functions.filter(([n]) => n !== 'Tensor'), ...statics]) {
      for (let i = 0; i < 150; i++) {
        const args = Array.from({ length: Math.floor(rand() * 7) }, pick);
        expectCleanFailure(() => fn.apply(name.startsWith('Tensor.') ? Tensor : addon, args), name);
        calls++;
      }
    }
    for (const m of methods) {
      for (let i = 0; i < 60; i++) {
        // Real tensors only: a method called on a proxy or an object inheriting from a tensor is
        // refused by V8's receiver check ("Illegal invocation") before the addon runs.
        const fresh = garbage().filter((g): g is NativeTensor => typeof g === 'object' && g !== null && !types.isProxy(g) && Object.getPrototypeOf(g) === Tensor.prototype);
        const self = fresh[Math.floor(rand() * fresh.length)];
        const args = Array.from({ length: Math.floor(rand() * 4) }, pick);
        expectCleanFailure(() => (self as unknown as Record<string, (...a: unknown[]) => unknown>)[m].apply(self, args), `Tensor#${m}`);
        calls++;
      }
    }
    console.log(`[bad input] ${calls} sampled calls over ${functions.length - 1 + statics.length} exports and ${methods.length} methods, all returned or threw a coded error`);
    expect(calls).toBeGreaterThan(1000);
  });
});
