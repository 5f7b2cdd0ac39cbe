// Text deltas for streaming: a stop string split across tokens is never sent, the text ends before
// it, and half a UTF-8 character waits for the byte that completes it.
import { describe, expect, it } from 'vitest';

import { TextStream } from '../src/index.js';

// Each id is one byte; decode as UTF-8 with replacement, like the byte-level tokenizers.
const bytes = { decode: (ids: ArrayLike<number>) => new TextDecoder().decode(Uint8Array.from(Array.from(ids))) };
const ids = (s: string) => [...new TextEncoder().encode(s)];

describe('TextStream', () => {
  it('holds back a possible stop-string prefix and cuts at the stop string', () => {
    const t = new TextStream(bytes, ['END', '##']);
    const out = ids('abcEN').map((id) => t.push(id));
    expect(out.join('')).toBe('abc'); // 'EN' might start 'END'
    expect(t.stopped).toBe(false);
    expect(t.push(ids('X')[0])).toBe('ENX'); // it did not
    const rest = ids('y#').map((id) => t.push(id)).join('');
    expect(rest).toBe('y');
    expect(t.push(ids('#')[0])).toBe('');
    expect(t.stopped).toBe(true);
    expect(t.full).toBe('abcENXy');
    expect(t.flush()).toBe('');
  });

  it('emits a multi-byte character only when complete, and a lone invalid byte as U+FFFD', () => {
    const t = new TextStream(bytes, []);
    const euro = ids('€'); // 3 bytes
    expect(t.push(euro[0])).toBe('');
    expect(t.push(euro[1])).toBe('');
    expect(t.push(euro[2])).toBe('€');
    expect(t.push(0x80)).toBe('');
    expect(t.push(ids('a')[0])).toBe('\ufffda');
    expect(t.push(0xc3)).toBe('');
    expect(t.flush()).toBe('\ufffd');
  });

  it('stops at the earliest of several stop strings', () => {
    const t = new TextStream(bytes, ['cd', 'bcd']);
    ids('abcde').forEach((id) => t.push(id));
    expect(t.stopped).toBe(true);
    expect(t.full).toBe('a');
  });
});
