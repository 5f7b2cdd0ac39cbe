// f32 -> the block layouts of ggml-common.h, computed the way ggml-quants.c's reference
// quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref) do, so a file we write holds the
// same bytes llama-quantize would have produced from the same f32 values.
import { f32ToBf16, f32ToF16 } from '../io/dtype.js';
import { GGML_BLOCK, type GgmlTypeName } from './gguf-format.js';

const f16Bits = (x: number): number => f32ToF16(Float32Array.of(x))[0];
// C's float arithmetic, step by step: every intermediate rounded to f32 as ggml computes it.
const f32 = Math.fround;

/** q8_0: per 32 values, d = amax / 127 (as f16), q = round(x / d) in int8. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = f32(amax / 127);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(b * 34, f16Bits(d), true);
    for (let j = 0; j < 32; j++) {
      // roundf: half away from zero
      const v = f32(x[b * 32 + j] * id);
      view.setInt8(b * 34 + 2 + j, Math.sign(v) * Math.floor(Math.abs(v) + 0.5));
    }
  }
  return out;
}

/**
 * q4_0: per 32 values, d = max / -8 where max is the value of largest magnitude (sign kept), so
 * that value maps to nibble 0 exactly; q = min(15, trunc(x / d + 8.5)). Byte j holds element j in
 * its low nibble and element j + 16 in its high nibble.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j];
      if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
    }
    const d = f32(max / -8);
    const id = d ? f32(1 / d) : 0;
    view.setUint16(b * 18, f16Bits(d), true);
    const nibble = (v: number) => Math.min(15, Math.trunc(f32(f32(v * id) + 8.5)));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = nibble(x[b * 32 + j]) | (nibble(x[b * 32 + 16 + j]) << 4);
  }
  return out;
}

const bytesOf = (a: Uint16Array | Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Encodes row-major f32 values as `type`; the caller has checked that rows fill whole blocks. */
export function encodeTensor(type: GgmlTypeName, values: Float32Array): Uint8Array {
  if (values.length % GGML_BLOCK[type].elements !== 0) throw new RangeError(`${type}: ${values.length} values do not fill whole blocks`);
  switch (type) {
    case 'f32': return bytesOf(values);
    case 'f16': return bytesOf(f32ToF16(values));
    case 'bf16': return bytesOf(f32ToBf16(values));
    case 'q8_0': return quantizeQ8_0(values);
    case 'q4_0': return quantizeQ4_0(values);
  }
}

const CHUNK_VALUES = 1 << 20;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * encodeTensor in slices of ~1M values with a turn of the event loop between them: a 128k x 960
 * embedding is 123M values (~1-2 s of quantizing), far longer than one decode step.
 */
export async function encodeTensorYielding(type: GgmlTypeName, values: Float32Array): Promise<Uint8Array> {
  if (type === 'f32' || values.length <= CHUNK_VALUES) return encodeTensor(type, values);
  const { elements, bytes } = GGML_BLOCK[type];
  const step = CHUNK_VALUES - (CHUNK_VALUES % elements);
  const out = new Uint8Array((values.length / elements) * bytes);
  for (let start = 0; start < values.length; start += step) {
    const end = Math.min(values.length, start + step);
    out.set(encodeTensor(type, values.subarray(start, end)), (start / elements) * bytes);
    await yieldToEventLoop();
  }
  return out;
}
