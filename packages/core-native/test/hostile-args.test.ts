// Hostile arguments: JS code that runs while a binding reads its arguments (array element getters,
// holes read through Array.prototype, Symbol.hasInstance, proxy traps) and disposes tensors,
// detaches, shrinks or grows buffers, or grows the array being read. Bindings read every argument
// into C++ values first, snapshot lengths once, hold the tensors they use for the whole call and
// recognise tensors by a type tag, so each call returns the right result or throws a coded error.
// Before, these were a SIGSEGV (fromArray/fromQuantized), a heap-buffer-overflow (opSumSquares)
// and heap-use-after-frees (reshape, opAdd, opMatmulXWt); hostile-asan.test.ts runs this file in
// the AddressSanitizer build.
import { afterEach, describe, expect, it } from 'vitest';

import { native, type NativeTensor } from '../lib/index.js';
import { mulberry32 } from './ops-helpers.js';

const addon = native();
const { Tensor } = addon;
type AnyFn = (...a: unknown[]) => unknown;
const call = (name: string, ...args: unknown[]) => (addon[name] as AnyFn)(...args);

class HostileError extends Error {}

// An array whose element `at` runs `effect` when read, then yields `value`.
function trap<T>(items: T[], at: number, effect: () => void, value: T = items[at]): T[] {
  const a = items.slice();
  Object.defineProperty(a, at, { get: () => (effect(), value), enumerable: true, configurable: true });
  return a;
}
const detach = (buf: ArrayBuffer) => void structuredClone(buf, { transfer: [buf] });
const f32 = (v: number[], shape = [v.length]) => Tensor.fromArray(Float32Array.from(v), shape);
const values = (t: NativeTensor) => Array.from(t.toArray() as Float32Array);

function codeOf(fn: () => unknown): string {
  try {
    const r = fn();
    if (r && typeof (r as NativeTensor).dispose === 'function') (r as NativeTensor).dispose();
    return 'NO_ERROR';
  } catch (e) {
    if (e instanceof HostileError) return 'HOSTILE';
    const err = e as { code?: unknown; message?: string };
    return typeof err.code === 'string' ? err.code : `UNCODED: ${String(err.message ?? e)}`;
  }
}

afterEach(() => {
  delete (Tensor as unknown as Record<symbol, unknown>)[Symbol.hasInstance];
  delete (Array.prototype as unknown as Record<number, unknown>)[1];
});

describe('a getter detaches, shrinks or grows a typed array while the tensor makers read their arguments', () => {
  it('fromArray: the data buffer is detached by a shape getter', () => {
    for (const dtype of [undefined, 'f32', 'bf16'] as const) {
      const data = new Float32Array(6).fill(1);
      expect(codeOf(() => Tensor.fromArray(data, trap([2, 3], 1, () => detach(data.buffer)), dtype))).toBe('ERR_LORA_SHAPE');
      expect(data.length).toBe(0);  // it really was detached
    }
    const f64 = new Float64Array(4);
    expect(codeOf(() => Tensor.fromArray(f64, trap([4], 0, () => detach(f64.buffer)), 'f32'))).toBe('ERR_LORA_SHAPE');
  });

  it('fromArray: a resizable buffer shrinks or grows under a length-tracking view', () => {
    for (const to of [4, 0, 48]) {
      const rab = new ArrayBuffer(24, { maxByteLength: 48 });
      const data = new Float32Array(rab);
      expect(codeOf(() => Tensor.fromArray(data, trap([2, 3], 1, () => rab.resize(to))))).toBe('ERR_LORA_SHAPE');
    }
    // Resized back to the size the shape needs: the copy reads exactly what the array holds now.
    const rab = new ArrayBuffer(24, { maxByteLength: 48 });
    const data = new Float32Array(rab).fill(2);
    using t = Tensor.fromArray(data, trap([2, 3], 1, () => (rab.resize(4), rab.resize(24))));
    expect(values(t)).toEqual([2, 0, 0, 0, 0, 0]);
  });

  it('fromQuantized: packed bytes or scales detached by a shape getter', () => {
    const packed = new Uint8Array(32), scales = new Float32Array(1);
    expect(codeOf(() => Tensor.fromQuantized(packed, scales, trap([1, 64], 1, () => detach(packed.buffer)), 'nf4', 64))).toBe('ERR_LORA_INVALID_ARG');
    const packed2 = new Uint8Array(32), scales2 = new Float32Array(1);
    expect(codeOf(() => Tensor.fromQuantized(packed2, scales2, trap([1, 64], 0, () => detach(scales2.buffer)), 'nf4', 64))).toBe('ERR_LORA_INVALID_ARG');
    const i8 = new Int8Array(8), s8 = new Float32Array(2);
    expect(codeOf(() => Tensor.fromQuantized(i8, s8, trap([2, 4], 1, () => detach(i8.buffer)), 'i8', 0))).toBe('ERR_LORA_INVALID_ARG');
  });

  it('a shape getter that grows its own array: the length read first holds', () => {
    const shape: number[] = trap([2, 3], 0, () => shape.push(...Array(100).fill(1)));
    using t = Tensor.fromArray(new Float32Array(6), shape);
    expect(t.shape).toEqual([2, 3]);
    const big: number[] = trap([6], 0, () => big.push(1, 1, 1, 1, 1, 1, 1, 1, 1, 1));
    using e = Tensor.empty('f32', big);
    expect(e.shape).toEqual([6]);
  });
});

describe('a getter disposes a tensor the binding already holds', () => {
  it('opSumSquares: an element getter grows the array (the old heap-buffer-overflow)', () => {
    using a = f32([1, 2]);
    using b = f32([3]);
    const extra = Array.from({ length: 64 }, () => f32([10]));
    const list: NativeTensor[] = trap([a, b], 1, () => list.push(...extra));
    expect(call('opSumSquares', list)).toBe(14);  // only the two elements there when the call began
    for (const t of extra) t.dispose();
  });

  it('opSumSquares: an element getter disposes an element before it, or its own', () => {
    // Every element is read before any tensor is looked at, so the dispose is seen, not raced.
    const a = f32([1, 2]);
    using b = f32([3]);
    expect(codeOf(() => call('opSumSquares', trap([a, b], 1, () => a.dispose())))).toBe('ERR_LORA_DISPOSED');
    const c = f32([5]);
    expect(codeOf(() => call('opSumSquares', trap([b, c], 1, () => c.dispose())))).toBe('ERR_LORA_DISPOSED');
    expect(call('opSumSquares', [b])).toBe(9);
  });

  it('reshape: a shape getter disposes the tensor being reshaped, or its view', () => {
    const t = f32([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(codeOf(() => t.reshape(trap([3, 2], 1, () => t.dispose())))).toBe('ERR_LORA_DISPOSED');
    const u = f32([1, 2, 3, 4, 5, 6], [2, 3]);
    using v = u.reshape([6]);
    using w = v.reshape(trap([3, 2], 1, () => u.dispose()));
    expect(values(w)).toEqual([1, 2, 3, 4, 5, 6]);  // the storage lives as long as a view of it
  });

  it('opAdd / opMatmulXWt: a Symbol.hasInstance override that disposes tensors is never consulted', () => {
    let consulted = 0;
    const x = f32([1, 2, 3, 4], [2, 2]), w = f32([1, 0, 0, 1, 1, 1], [3, 2]);
    using out = Tensor.empty('f32', [2, 3]);
    using sum = Tensor.empty('f32', [2, 2]);
    Object.defineProperty(Tensor, Symbol.hasInstance, {
      value: () => (consulted++, x.dispose(), w.dispose(), true),
      configurable: true,
    });
    call('opMatmulXWt', x, w, null, out, false, 'ref');
    expect(values(out)).toEqual([1, 2, 3, 3, 4, 7]);
    expect(consulted).toBe(0);
    expect(x.disposed).toBe(false);
    call('opAdd', x, x, sum, 1, 'ref');
    expect(values(sum)).toEqual([2, 4, 6, 8]);
    // Something the override would call a Tensor is refused with a coded error, not unwrapped.
    expect(codeOf(() => call('opAdd', {}, x, sum, 1))).toBe('ERR_LORA_INVALID_ARG');
    expect(consulted).toBe(0);
    x.dispose();
    w.dispose();
  });

  it('proxies and look-alikes are not tensors, and no trap runs; a tensor with another prototype still is', () => {
    const t = f32([1, 2, 3, 4], [2, 2]);
    using out = Tensor.empty('f32', [2, 2]);
    let traps = 0;
    const handler: ProxyHandler<object> = new Proxy({}, { get: () => () => { traps++; t.dispose(); throw new HostileError('trap'); } });
    expect(codeOf(() => call('opAdd', new Proxy(t, handler), t, out, 1))).toBe('ERR_LORA_INVALID_ARG');
    expect(codeOf(() => call('opAdd', Object.create(t), t, out, 1))).toBe('ERR_LORA_INVALID_ARG');
    expect(codeOf(() => Tensor.empty('f32', new Proxy([2, 2], handler) as number[]))).toBe('ERR_LORA_INVALID_ARG');
    expect(codeOf(() => call('opSumSquares', new Proxy([t], handler)))).toBe('ERR_LORA_INVALID_ARG');
    expect(traps).toBe(0);
    Object.setPrototypeOf(t, null);
    call('opAdd', t, t, out, 1, 'ref');
    expect(values(out)).toEqual([2, 4, 6, 8]);
    Object.setPrototypeOf(t, Tensor.prototype);
    t.dispose();
  });

  it('a hole read through an Array.prototype getter, and a getter that throws', () => {
    using a = f32([2]);
    Object.defineProperty(Array.prototype, 1, { get: () => (a.dispose(), 3), configurable: true });
    // eslint-disable-next-line no-sparse-arrays
    expect(codeOf(() => Tensor.empty('f32', [2, , 4] as number[]))).toBe('NO_ERROR');
    expect(a.disposed).toBe(true);
    delete (Array.prototype as unknown as Record<number, unknown>)[1];
    using b = f32([3]);
    expect(codeOf(() => call('opSumSquares', trap([b, b], 1, () => { throw new HostileError('from a getter'); })))).toBe('HOSTILE');
    expect(call('opSumSquares', [b])).toBe(9);
  });

  it('opSupports / opPlacement read each element once', () => {
    let reads = 0;
    const flip: unknown[] = [];  // 'f32' on the first read, a number after: a second read would see it
    Object.defineProperty(flip, 0, { get: () => (reads++ ? 7 : 'f32'), enumerable: true });
    expect(codeOf(() => call('opSupports', 'ref', 'relu', flip, [4]))).toBe('NO_ERROR');
    expect(reads).toBe(1);
    const pair = trap(['x', 'cpu'], 1, () => reads++, 'cpu');
    expect(codeOf(() => call('opPlacement', 'auto', [pair]))).toBe('NO_ERROR');
    expect(reads).toBe(2);
  });
});

// Every export and Tensor method, with arguments drawn from a pool whose arrays run hostile getters:
// each call returns, throws a coded error, or throws the getter's own error. Seeded: reproducible.
function hostilePool(rand: () => number) {
  const tensors = [
    f32([1, 2, 3, 4, 5, 6, 7, 8], [2, 4]),
    f32([1, 2, 3, 4, 5, 6, 7, 8], [2, 4]),
    f32([0.5, 0.5, 0.5, 0.5], [4]),
    Tensor.fromArray(new Int32Array([0, 1]), [2]),
    Tensor.fromArray(new Float32Array(8), [4, 2], 'bf16'),
    Tensor.empty('f32', [2, 4]),
  ];
  const typed = [new Float32Array(8), new Float32Array(new ArrayBuffer(32, { maxByteLength: 64 })), new Uint8Array(4), new Int32Array(2)];
  const effects: (() => void)[] = [
    () => tensors[Math.floor(rand() * tensors.length)].dispose(),
    () => detach(typed[0].buffer),
    () => (typed[1].buffer as ArrayBuffer).resize(Math.floor(rand() * 16) * 4),
    () => { throw new HostileError('getter'); },
    () => { for (const t of tensors) t.dispose(); },
  ];
  const effect = () => effects[Math.floor(rand() * effects.length)]();
  const arrays: unknown[] = [];
  const grow = (a: unknown[]) => a.push(...tensors, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  for (const base of [[2, 4], [8], [4, 2], ['f32'], tensors.slice(0, 3), [['a', 'cpu']]] as unknown[][]) {
    const a: unknown[] = trap(base, base.length - 1, () => (rand() < 0.3 ? grow(a) : effect()));
    arrays.push(a);
  }
  const proxies = [new Proxy(tensors[0], {}), new Proxy([2, 4], {}), Object.create(tensors[1])];
  const scalars = [undefined, null, 0, 1, 2, 4, 0.1, 'cpu', 'ref', 'f32', 'bf16', 'nf4', true, false];
  const pool: unknown[] = [...tensors, ...tensors, ...typed, ...arrays, ...arrays, ...proxies, ...scalars];
  return { pool, tensors };
}

describe('every export with hostile arguments', () => {
  it('each call returns or throws a coded error (or the getter\'s own)', () => {
    const rand = mulberry32(18);
    // Not the process-wide ones: pool size, the peak loop, the NVML sampler, the dist* collectives
    // (distAbort ends the job by design).
    const skip = new Set(['Tensor', 'setNumThreads', 'benchPeak', 'nvmlStart']);
    const functions = Object.entries(addon).filter(([k, v]) => typeof v === 'function' && !skip.has(k) && !k.startsWith('dist')) as [string, AnyFn][];
    const statics = (['empty', 'fromArray', 'fromQuantized'] as const).map((k) => [`Tensor.${k}`, (Tensor as unknown as Record<string, AnyFn>)[k].bind(Tensor)] as [string, AnyFn]);
    const methods = ['toArray', 'bytes', 'scales', 'copyFrom', 'to', 'clone', 'reshape', 'narrow'];
    const perExport = Number(process.env.LORA_HOSTILE_CALLS ?? 40);
    let calls = 0;
    const outcomes: Record<string, number> = {};
    const note = (label: string, c: string) => {
      if (c.startsWith('UNCODED')) throw new Error(`${label}: ${c}`);
      outcomes[c] = (outcomes[c] ?? 0) + 1;
      calls++;
    };
    for (const [name, fn] of [...functions, ...statics]) {
      for (let i = 0; i < perExport; i++) {
        const { pool, tensors } = hostilePool(rand);
        const args = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => pool[Math.floor(rand() * pool.length)]);
        // Half the calls use the op's own positional layout with real tensors first.
        if (rand() < 0.5) args.splice(0, 3, tensors[0], tensors[1], tensors[5]);
        note(name, codeOf(() => fn(...args)));
        for (const t of tensors) t.dispose();
      }
    }
    for (const m of methods) {
      for (let i = 0; i < perExport; i++) {
        const { pool, tensors } = hostilePool(rand);
        const self = tensors[Math.floor(rand() * tensors.length)] as unknown as Record<string, AnyFn>;
        const args = Array.from({ length: Math.floor(rand() * 4) }, () => pool[Math.floor(rand() * pool.length)]);
        note(`Tensor#${m}`, codeOf(() => self[m](...args)));
        for (const t of tensors) t.dispose();
      }
    }
    console.log(`[hostile] ${calls} calls over ${functions.length + statics.length} exports and ${methods.length} methods: ${JSON.stringify(outcomes)}`);
    expect(calls).toBe((functions.length + statics.length + methods.length) * perExport);
  });
});
