import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoraError, PyDict, TorchCheckpoint, unpickleTorchStateDict } from '../src/io/index.js';
import { storedZip } from './fixtures/io/stored-zip.js';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'lora-pkl-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

/** Pickle bytes from a mix of opcode strings (latin-1) and raw byte arrays. */
const pkl = (...parts: (string | number[])[]) =>
  new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...p].map((c) => c.charCodeAt(0)) : p)));
const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
const binunicode = (s: string) => ['X', u32(s.length), s] as const;

function refusal(bytes: Uint8Array): LoraError {
  try {
    unpickleTorchStateDict(bytes, 'hostile.pkl');
  } catch (e) {
    return e as LoraError;
  }
  throw new Error('the pickle was accepted');
}

describe('restricted unpickler', () => {
  it('refuses os.system via GLOBAL + REDUCE without running it', () => {
    const marker = join(dir, 'pwned');
    // \x80\x02 c"os\nsystem\n" X"touch <marker>" TUPLE1 REDUCE STOP — pickle.loads would run the command.
    const bytes = pkl('\x80\x02', 'cos\nsystem\n', ...binunicode(`touch ${marker}`), '\x85', 'R', '.');
    const err = refusal(bytes);
    expect(err.code).toBe('E_PICKLE_FORBIDDEN');
    expect(err.message).toMatch(/os\.system/);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses builtins.eval via STACK_GLOBAL (protocol 4)', () => {
    const bytes = pkl('\x80\x04', '\x8c\x08builtins', '\x94', '\x8c\x04eval', '\x94', '\x93', '\x8c\x031+1', '\x85', 'R', '.');
    const err = refusal(bytes);
    expect(err.code).toBe('E_PICKLE_FORBIDDEN');
    expect(err.message).toMatch(/builtins\.eval/);
  });

  it('refuses posix.system hidden as a value inside an otherwise valid state dict', () => {
    const bytes = pkl(
      '\x80\x02', 'ccollections\nOrderedDict\n', ')', 'R', '(',
      ...binunicode('weight'), 'cposix\nsystem\n', ...binunicode('id'), '\x85', 'R',
      'u', '.',
    );
    expect(refusal(bytes).message).toMatch(/posix\.system/);
  });

  it('refuses calling an allowed name that is not a function, and object construction opcodes', () => {
    expect(refusal(pkl('\x80\x02', 'ctorch\nFloatStorage\n', ')', 'R', '.')).message).toMatch(/refusing to call torch\.FloatStorage/);
    const newobj = pkl('\x80\x02', 'ctorch\nTensor\n', ')', '\x81', '.');
    expect(refusal(newobj).code).toBe('E_PICKLE_FORBIDDEN');
    expect(refusal(pkl('\x80\x02', 'ios\nsystem\n', '.')).code).toBe('E_PICKLE_FORBIDDEN');
  });

  it('reports truncated and malformed pickles as E_PICKLE', () => {
    expect(refusal(pkl('\x80\x02', 'ccollections\nOrderedDict\n', ')', 'R')).code).toBe('E_PICKLE');
    expect(refusal(pkl('\x80\x02', 'X', u32(1000), 'abc')).code).toBe('E_PICKLE');
    expect(refusal(pkl('\x80\x02', 'h', [5], '.')).message).toMatch(/memo key 5/);
    expect(refusal(pkl('\x80\x02', '}', 'J', u32(7), '.')).message).toMatch(/stack not empty/);
    expect(refusal(pkl('\x80\x02', ']', '.')).message).toMatch(/not a dict/);
  });

  it('rebuilds a tensor descriptor from a hand-written torch pickle and checks it against its storage', () => {
    const tensor = (size: number, storageElems: number) => pkl(
      '\x80\x02', 'ccollections\nOrderedDict\n', ')', 'R', '(',
      ...binunicode('w'), 'ctorch._utils\n_rebuild_tensor_v2\n', '(',
      '(', ...binunicode('storage'), 'ctorch\nHalfStorage\n', ...binunicode('0'), ...binunicode('cpu'), 'K', [storageElems], 't', 'Q',
      'K', [1], 'K', [size], '\x85', 'K', [1], '\x85', '\x89', 'ccollections\nOrderedDict\n', ')', 'R', 't', 'R',
      'u', '.',
    );
    const d = unpickleTorchStateDict(tensor(3, 4), 'ok.pkl');
    expect(d).toBeInstanceOf(PyDict);
    expect(d.get('w')).toMatchObject({ kind: 'tensor', offset: 1, shape: [3], stride: [1], storage: { dtype: 'F16', numel: 4 } });
    expect(refusal(tensor(4, 4)).message).toMatch(/reaches element 4 of a 4-element storage/);
  });

  it('refuses a hostile pickle inside a real-looking pytorch_model.bin', async () => {
    const marker = join(dir, 'pwned2');
    const payload = pkl('\x80\x02', 'cos\nsystem\n', ...binunicode(`touch ${marker}`), '\x85', 'R', '.');
    const path = join(dir, 'hostile.bin');
    await writeFile(path, storedZip([['archive/data.pkl', payload], ['archive/version', pkl('3\n')]]));
    await expect(TorchCheckpoint.open(path)).rejects.toMatchObject({ code: 'E_PICKLE_FORBIDDEN', message: expect.stringMatching(/os\.system/) });
    expect(existsSync(marker)).toBe(false);
  });

  it('survives a dict that contains itself (memo cycle) without looping', async () => {
    // d = {}; d["self"] = d  →  EMPTY_DICT BINPUT 0 "self" BINGET 0 SETITEM STOP
    const payload = pkl('\x80\x02', '}', 'q', [0], ...binunicode('self'), 'h', [0], 's', '.');
    const path = join(dir, 'cycle.bin');
    await writeFile(path, storedZip([['archive/data.pkl', payload]]));
    await using ckpt = await TorchCheckpoint.open(path);
    expect(ckpt.keys()).toEqual([]);
  });
});
