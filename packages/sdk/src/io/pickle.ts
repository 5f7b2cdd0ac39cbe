import { LoraError } from './errors.js';

/**
 * A restricted pickle virtual machine. It understands the opcodes of protocols 0–5 that plain data
 * needs and never imports or calls anything on its own: every GLOBAL / STACK_GLOBAL is resolved by
 * the caller's `findGlobal`, which decides what a name means (or refuses it), and REDUCE / BUILD may
 * only apply what `findGlobal` returned. Object-construction opcodes with no safe meaning here
 * (INST, OBJ, NEWOBJ, extension registry, out-of-band buffers) are refused outright.
 */

/** A name resolved by `findGlobal`. `call` is present when REDUCE may apply it. */
export interface PyGlobal {
  readonly kind: 'global';
  readonly module: string;
  readonly name: string;
  call?(args: unknown[]): unknown;
}

/** Python dicts (and OrderedDicts) become Maps; `attrs` keeps a BUILD state set on them. */
export class PyDict extends Map<unknown, unknown> {
  attrs?: unknown;
}

export interface UnpickleOptions {
  findGlobal(module: string, name: string): PyGlobal;
  persistentLoad?(pid: unknown): unknown;
  /** Called by BUILD on a value that is not a PyDict; return false to refuse. */
  build?(target: unknown, state: unknown): boolean;
  where?: string;
  /** Object budget (see MAX_PICKLE_UNITS); a pickle needing more is refused with E_TOO_LARGE. */
  maxUnits?: number;
}

/**
 * What a pickle may build, in units of ~64 bytes of JS heap: a string, bytes or memo entry costs 1, a
 * tuple, list or call result 2, a dict or set 4 (a V8 Map is ~270 bytes), one item put into a
 * container 1. A byte of pickle can create an object of hundreds of bytes, so a size cap alone would
 * still let a 32 MB pickle fill gigabytes; 1 M units keep the worst pickle near 150 MB (measured:
 * see test/hostile-zip.test.ts), while a torch state dict spends ~40 units per tensor, so this takes
 * 25,000 tensors (the largest .bin shards hold ~2,000).
 */
export const MAX_PICKLE_UNITS = 1_000_000;
/** Python's pickler batches list and dict items by 1,000, so a real stack never gets near this. */
const MAX_STACK = 100_000;
/** Longest LONG1/LONG4 or text INT accepted: state dicts hold sizes and offsets, never huge integers. */
const MAX_INT_BYTES = 64;

/** Marks a tuple so callers can tell `(1, 2)` from `[1, 2]` where it matters. */
export const TUPLE = Symbol('tuple');
export type PyTuple = unknown[] & { [TUPLE]: true };
const tuple = (items: unknown[]): PyTuple => Object.assign(items, { [TUPLE]: true as const });
export const isTuple = (v: unknown): v is PyTuple => Array.isArray(v) && (v as Partial<PyTuple>)[TUPLE] === true;

const MARK = Symbol('mark');

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  return new Machine(bytes, options).run();
}

class Machine {
  private pos = 0;
  private stack: unknown[] = [];
  private marks: number[] = [];
  private memo = new Map<number, unknown>();
  private units = 0;
  private readonly maxUnits: number;
  private readonly view: DataView;
  private readonly where: string;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly opts: UnpickleOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.where = opts.where ?? 'pickle';
    this.maxUnits = opts.maxUnits ?? MAX_PICKLE_UNITS;
  }

  /** Charges `n` units of the object budget. */
  private spend(n = 1): void {
    this.units += n;
    if (this.units > this.maxUnits) {
      throw new LoraError('E_TOO_LARGE', `${this.where}: builds more than ${this.maxUnits} objects (at byte ${this.pos}); no state dict needs that many`);
    }
  }
  private remember(index: number): void {
    this.spend();
    this.memo.set(index, this.top());
  }

  private fail(msg: string, code: 'E_PICKLE' | 'E_PICKLE_FORBIDDEN' = 'E_PICKLE'): LoraError {
    return new LoraError(code, `${this.where}: ${msg}`);
  }

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.bytes.byteLength) throw this.fail(`truncated at byte ${this.pos} (needs ${n} more)`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  private u8 = () => this.bytes[this.need(1)];
  private u16 = () => this.view.getUint16(this.need(2), true);
  private u32 = () => this.view.getUint32(this.need(4), true);
  private i32 = () => this.view.getInt32(this.need(4), true);
  private u64 = () => {
    const n = this.view.getBigUint64(this.need(8), true);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`length ${n} is too large`);
    return Number(n);
  };
  private raw = (n: number) => this.bytes.subarray(this.need(n), this.pos);
  private utf8 = (n: number) => {
    const at = this.pos;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.raw(n));
    } catch {
      throw this.fail(`string at byte ${at} is not valid UTF-8`);
    }
  };
  // Buffer's latin1 is ISO-8859-1 (TextDecoder's 'latin1' would be windows-1252), decoded in one step.
  private latin1 = (n: number) => Buffer.from(this.raw(n)).toString('latin1');
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail(`unterminated text argument at byte ${this.pos}`);
    const s = new TextDecoder().decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }

  private pop(): unknown {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) throw this.fail(`stack underflow at byte ${this.pos}`);
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) throw this.fail(`stack underflow at byte ${this.pos}`);
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const m = this.marks.pop();
    if (m === undefined) throw this.fail(`no MARK on the stack at byte ${this.pos}`);
    return this.stack.splice(m);
  }
  private get(index: number): unknown {
    if (!this.memo.has(index)) throw this.fail(`memo key ${index} was never stored`);
    return this.memo.get(index);
  }
  private global(module: string, name: string): PyGlobal {
    return this.opts.findGlobal(module, name);
  }

  run(): unknown {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      // Every opcode pushes at most one value, so checking here bounds the stack.
      if (this.stack.length > MAX_STACK) throw new LoraError('E_TOO_LARGE', `${this.where}: stack deeper than ${MAX_STACK} at byte ${at}`);
      // Numbers, None and booleans live on the bounded stack; everything else is charged.
      const cost = COST[op];
      if (cost) this.spend(cost);
      switch (op) {
        case 0x80: this.u8(); break; // PROTO: every protocol's opcodes are understood below
        case 0x95: this.u64(); break; // FRAME: framing is only a read-ahead hint
        case 0x2e: { // STOP
          const result = this.pop();
          if (this.stack.length || this.marks.length) throw this.fail('stack not empty at STOP');
          return result;
        }
        case 0x28: this.marks.push(this.stack.length); break; // MARK
        case 0x30: this.pop(); break; // POP
        case 0x31: this.popMark(); break; // POP_MARK
        case 0x32: this.stack.push(this.top()); break; // DUP

        case 0x4e: this.stack.push(null); break; // NONE
        case 0x88: this.stack.push(true); break; // NEWTRUE
        case 0x89: this.stack.push(false); break; // NEWFALSE
        case 0x4a: this.stack.push(this.i32()); break; // BININT
        case 0x4b: this.stack.push(this.u8()); break; // BININT1
        case 0x4d: this.stack.push(this.u16()); break; // BININT2
        case 0x8a: this.stack.push(this.long(this.u8())); break; // LONG1
        case 0x8b: { // LONG4
          const n = this.i32();
          if (n < 0) throw this.fail('negative LONG4 length');
          this.stack.push(this.long(n));
          break;
        }
        case 0x49: { // INT (text); "00"/"01" are protocol 0's booleans
          const s = this.line();
          this.stack.push(s === '01' ? true : s === '00' ? false : this.parseInt(s));
          break;
        }
        case 0x4c: this.stack.push(this.parseInt(this.line().replace(/L$/, ''))); break; // LONG (text)
        case 0x47: this.stack.push(this.view.getFloat64(this.need(8), false)); break; // BINFLOAT is big-endian
        case 0x46: { // FLOAT (text)
          const v = Number(this.line());
          if (Number.isNaN(v)) throw this.fail(`bad FLOAT at byte ${at}`);
          this.stack.push(v);
          break;
        }

        case 0x58: this.stack.push(this.utf8(this.u32())); break; // BINUNICODE
        case 0x8c: this.stack.push(this.utf8(this.u8())); break; // SHORT_BINUNICODE
        case 0x8d: this.stack.push(this.utf8(this.u64())); break; // BINUNICODE8
        case 0x54: { // BINSTRING: Python 2 str, read as latin-1 like encoding='latin1'
          const n = this.i32();
          if (n < 0) throw this.fail('negative BINSTRING length');
          this.stack.push(this.latin1(n));
          break;
        }
        case 0x55: this.stack.push(this.latin1(this.u8())); break; // SHORT_BINSTRING
        case 0x42: this.stack.push(this.raw(this.u32()).slice()); break; // BINBYTES
        case 0x43: this.stack.push(this.raw(this.u8()).slice()); break; // SHORT_BINBYTES
        case 0x8e: case 0x96: this.stack.push(this.raw(this.u64()).slice()); break; // BINBYTES8, BYTEARRAY8

        case 0x29: this.stack.push(tuple([])); break; // EMPTY_TUPLE
        case 0x74: this.stack.push(tuple(this.popMark())); break; // TUPLE
        case 0x85: this.stack.push(tuple([this.pop()])); break; // TUPLE1
        case 0x86: { const b = this.pop(); const a = this.pop(); this.stack.push(tuple([a, b])); break; } // TUPLE2
        case 0x87: { const c = this.pop(); const b = this.pop(); const a = this.pop(); this.stack.push(tuple([a, b, c])); break; } // TUPLE3
        case 0x5d: this.stack.push([]); break; // EMPTY_LIST
        case 0x6c: this.stack.push(this.popMark()); break; // LIST
        case 0x61: { const v = this.pop(); this.spend(); this.list(this.top()).push(v); break; } // APPEND
        case 0x65: { // APPENDS, in a loop: push(...items) would overflow the call stack on a long batch
          const items = this.popMark();
          this.spend(items.length);
          const list = this.list(this.top());
          for (const item of items) list.push(item);
          break;
        }
        case 0x7d: this.stack.push(new PyDict()); break; // EMPTY_DICT
        case 0x64: this.stack.push(this.pairs(new PyDict(), this.popMark())); break; // DICT
        case 0x73: { const v = this.pop(); const k = this.pop(); this.spend(); this.dict(this.top()).set(k, v); break; } // SETITEM
        case 0x75: { const items = this.popMark(); this.pairs(this.dict(this.top()), items); break; } // SETITEMS
        case 0x8f: this.stack.push(new Set()); break; // EMPTY_SET
        case 0x90: { const items = this.popMark(); this.spend(items.length); const s = this.top(); if (!(s instanceof Set)) throw this.fail('ADDITEMS on a non-set'); items.forEach((i) => s.add(i)); break; }
        case 0x91: this.stack.push(new Set(this.popMark())); break; // FROZENSET

        case 0x70: this.remember(this.parseIndex(this.line())); break; // PUT
        case 0x71: this.remember(this.u8()); break; // BINPUT
        case 0x72: this.remember(this.u32()); break; // LONG_BINPUT
        case 0x94: this.remember(this.memo.size); break; // MEMOIZE
        case 0x67: this.stack.push(this.get(this.parseIndex(this.line()))); break; // GET
        case 0x68: this.stack.push(this.get(this.u8())); break; // BINGET
        case 0x6a: this.stack.push(this.get(this.u32())); break; // LONG_BINGET

        case 0x63: { // GLOBAL "module\nname\n"
          const module = this.line();
          this.stack.push(this.global(module, this.line()));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL needs two strings');
          this.stack.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop();
          const fn = this.pop();
          this.stack.push(this.apply(fn, args));
          break;
        }
        case 0x62: { // BUILD
          const state = this.pop();
          const target = this.top();
          if (target instanceof PyDict) target.attrs = state;
          else if (!this.opts.build?.(target, state)) throw this.fail(`BUILD on ${describe(target)} is not allowed`, 'E_PICKLE_FORBIDDEN');
          break;
        }
        case 0x51: this.stack.push(this.persistent(this.pop())); break; // BINPERSID
        case 0x50: this.stack.push(this.persistent(this.line())); break; // PERSID

        case 0x81: case 0x92: { // NEWOBJ, NEWOBJ_EX: would instantiate an arbitrary class
          if (op === 0x92) this.pop();
          this.pop();
          const cls = this.pop();
          throw this.fail(`refusing to instantiate ${describe(cls)} (NEWOBJ)`, 'E_PICKLE_FORBIDDEN');
        }
        case 0x69: { // INST "module\nname\n"
          const module = this.line();
          throw this.fail(`refusing to instantiate ${module}.${this.line()} (INST)`, 'E_PICKLE_FORBIDDEN');
        }
        case 0x6f: { // OBJ
          const items = this.popMark();
          throw this.fail(`refusing to instantiate ${describe(items[0])} (OBJ)`, 'E_PICKLE_FORBIDDEN');
        }
        case 0x82: case 0x83: case 0x84:
          throw this.fail('extension-registry opcodes (EXT1/2/4) are not allowed', 'E_PICKLE_FORBIDDEN');
        case 0x97: case 0x98:
          throw this.fail('out-of-band buffers (protocol 5) are not supported');
        case 0x53: case 0x56:
          throw this.fail(`protocol-0 quoted strings (opcode ${String.fromCharCode(op)}) are not supported`);
        default:
          throw this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}`);
      }
    }
  }

  private apply(fn: unknown, args: unknown): unknown {
    if (!isPyGlobal(fn) || !fn.call) {
      throw this.fail(`refusing to call ${describe(fn)}`, 'E_PICKLE_FORBIDDEN');
    }
    if (!isTuple(args)) throw this.fail(`REDUCE on ${fn.module}.${fn.name} without an argument tuple`);
    // A call may copy or walk the lists it is given (sizes, strides, OrderedDict's pairs), and one memoized
    // list can be passed to a million calls: charge what it can touch, two levels deep.
    this.spend(reach(args, 2, this.maxUnits - this.units + 1));
    return fn.call([...args]);
  }

  private persistent(pid: unknown): unknown {
    if (!this.opts.persistentLoad) throw this.fail('persistent ids are not allowed in this pickle');
    return this.opts.persistentLoad(pid);
  }

  private list(v: unknown): unknown[] {
    if (!Array.isArray(v) || isTuple(v)) throw this.fail(`APPEND on ${describe(v)}`);
    return v;
  }

  private dict(v: unknown): PyDict {
    if (!(v instanceof PyDict)) throw this.fail(`SETITEM on ${describe(v)}`);
    return v;
  }

  private pairs(d: PyDict, items: unknown[]): PyDict {
    if (items.length % 2) throw this.fail('odd number of items for a dict');
    this.spend(items.length / 2);
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
    return d;
  }

  /** Two's-complement little-endian integer; a plain number when it fits exactly, else a bigint. */
  private long(n: number): number | bigint {
    if (n > MAX_INT_BYTES) throw this.fail(`a ${n}-byte integer at byte ${this.pos}; at most ${MAX_INT_BYTES} bytes are accepted`);
    const b = this.raw(n);
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private parseInt(s: string): number | bigint {
    // The literal itself is not quoted back: it is the file's text.
    if (s.length > MAX_INT_BYTES || !/^[-+]?\d+$/.test(s)) throw this.fail(`bad integer literal of ${s.length} characters at byte ${this.pos}`);
    const v = BigInt(s);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private parseIndex(s: string): number {
    const v = this.parseInt(s);
    if (typeof v !== 'number' || v < 0) throw this.fail(`bad memo index ${JSON.stringify(s)}`);
    return v;
  }
}

/** Units of the object budget each creating opcode is charged, by opcode (see MAX_PICKLE_UNITS). */
const COST = new Uint8Array(256);
for (const op of [0x58, 0x8c, 0x8d, 0x54, 0x55, 0x42, 0x43, 0x8e, 0x96, 0x8a, 0x8b, 0x49, 0x4c]) COST[op] = 1; // strings, bytes, big ints
for (const op of [0x29, 0x74, 0x85, 0x86, 0x87, 0x5d, 0x6c, 0x63, 0x93, 0x52, 0x51, 0x50]) COST[op] = 2; // tuples, lists, globals, calls
for (const op of [0x7d, 0x64, 0x8f, 0x91]) COST[op] = 4; // dicts and sets

/** Elements of `v` and of the lists inside it, down to `depth` levels; counting stops past `limit`. */
function reach(v: unknown, depth: number, limit: number): number {
  if (!Array.isArray(v) || depth === 0) return 0;
  let n = v.length;
  for (let i = 0; i < v.length && n <= limit; i++) n += reach(v[i], depth - 1, limit - n);
  return n;
}

export function isPyGlobal(v: unknown): v is PyGlobal {
  return typeof v === 'object' && v !== null && (v as PyGlobal).kind === 'global';
}

function describe(v: unknown): string {
  if (isPyGlobal(v)) return `${v.module}.${v.name}`;
  if (v === null) return 'None';
  if (v instanceof PyDict) return 'a dict';
  if (Array.isArray(v)) return isTuple(v) ? 'a tuple' : 'a list';
  return typeof v;
}
