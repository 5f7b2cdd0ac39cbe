/**
 * Gathers a strided view into a contiguous row-major buffer. `src` holds the view's extent starting
 * at its first element; `stride` is in elements. Elements are moved as unsigned words of the item
 * size (never through floats, which could canonicalise NaN payloads); 8-byte items move as two words.
 */
export function gatherStrided(src: Uint8Array, itemSize: number, shape: number[], stride: number[]): Uint8Array {
  const wordsPerItem = itemSize === 8 ? 2 : 1;
  const wordSize = itemSize === 8 ? 4 : itemSize;
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(n * itemSize);
  const copy = alignedCopy(src);
  const s = words(copy.buffer as ArrayBuffer, wordSize);
  const d = words(out.buffer, wordSize);
  const index = new Array<number>(shape.length).fill(0);
  let srcElem = 0;
  for (let i = 0; i < n; i++) {
    for (let w = 0; w < wordsPerItem; w++) d[i * wordsPerItem + w] = s[srcElem * wordsPerItem + w];
    // Odometer increment over the multi-index, adjusting the source element as we go.
    for (let dim = shape.length - 1; dim >= 0; dim--) {
      index[dim]++;
      srcElem += stride[dim];
      if (index[dim] < shape[dim]) break;
      srcElem -= stride[dim] * index[dim];
      index[dim] = 0;
    }
  }
  return out;
}

/** True when `stride` is the row-major layout of `shape` (dims of size 1 may have any stride). */
export function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

function alignedCopy(src: Uint8Array): Uint8Array {
  return src.byteOffset === 0 && src.byteLength === src.buffer.byteLength ? src : src.slice();
}

function words(buffer: ArrayBuffer, size: number): Uint8Array | Uint16Array | Uint32Array {
  const length = Math.floor(buffer.byteLength / size);
  return size === 1 ? new Uint8Array(buffer) : size === 2 ? new Uint16Array(buffer, 0, length) : new Uint32Array(buffer, 0, length);
}
