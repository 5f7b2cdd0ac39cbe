/**
 * GPT-2's reversible byte ↔ character table. Byte-level BPE works on text where every byte is one
 * printable character: bytes that are already printable (and not whitespace/control) stand for
 * themselves, the other 68 are shifted to U+0100 and up, in byte order. So a space is "Ġ" (U+0120).
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table = new Array<string>(256);
  let shifted = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + shifted++);
  return table;
})();

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const encoder = new TextEncoder();

/** UTF-8 bytes of `text`, each written as its table character. */
export function textToByteChars(text: string): string {
  let out = '';
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}

/** The inverse: table characters back to bytes. Characters outside the table are dropped (they cannot come from a byte-level vocab). */
export function byteCharsToBytes(chars: string, out: number[] = []): number[] {
  for (const c of chars) {
    const b = CHAR_TO_BYTE.get(c);
    if (b !== undefined) out.push(b);
  }
  return out;
}
