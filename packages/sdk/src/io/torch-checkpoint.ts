import { itemSize, numel, viewAs } from './dtype.js';
import { LoraError } from './errors.js';
import { openForRead, readExactly } from './file-range.js';
import { PyDict } from './pickle.js';
import { gatherStrided, isContiguous } from './strided-copy.js';
import type { RawTensor, TensorInfo, WeightSource } from './tensor.js';
import { isTensorRef, unpickleTorchStateDict, type TorchTensorRef } from './torch-pickle.js';
import { ZipArchive } from './zip.js';

const MAX_VIEW_BYTES = 2 ** 31;
/** Elements an expanded view may add beyond 16x its storage (a position-id row of 64k entries). */
const MAX_SMALL_EXPANSION = 1 << 16;
/**
 * data.pkl holds only tensor descriptors (~150 bytes each: OPT-350m's is 60 kB), so 32 MiB covers
 * 200,000 tensors; a bigger one is refused before it is inflated.
 */
export const MAX_PICKLE_BYTES = 32 * 1024 * 1024;

/**
 * A `pytorch_model.bin` written by torch.save (the zip format, torch ≥ 1.6): `<name>/data.pkl` is a
 * pickle of the state dict whose tensors point at storages stored as `<name>/data/<key>`. The pickle
 * goes through the restricted unpickler; tensor bytes are read lazily, only the range a tensor uses.
 */
export class TorchCheckpoint implements WeightSource, AsyncDisposable {
  private constructor(
    readonly path: string,
    private readonly zip: ZipArchive,
    private readonly prefix: string,
    private readonly tensors: Map<string, TorchTensorRef>,
  ) {}

  static async open(path: string): Promise<TorchCheckpoint> {
    await rejectLegacyFormat(path);
    const zip = await ZipArchive.open(path);
    try {
      const pkl = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (pkl.length !== 1) {
        throw new LoraError('E_TORCH_FORMAT', `${path}: expected one <archive>/data.pkl member, found ${pkl.length}: not a torch.save checkpoint`);
      }
      const prefix = pkl[0].slice(0, -'data.pkl'.length);
      if (zip.entries.has(`${prefix}byteorder`)) {
        const order = new TextDecoder().decode(await zip.read(`${prefix}byteorder`, { maxBytes: 16 })).trim();
        if (order !== 'little') throw new LoraError('E_TORCH_FORMAT', `${path}: byte order ${order === 'big' ? '"big"' : 'record'} is not supported`);
      }
      const state = unpickleTorchStateDict(await zip.read(pkl[0], { maxBytes: MAX_PICKLE_BYTES }), `${path}:${pkl[0]}`);
      const tensors = new Map<string, TorchTensorRef>();
      flatten(state, '', tensors);
      for (const [name, t] of tensors) {
        const member = `${prefix}data/${t.storage.key}`;
        const have = zip.entries.get(member)?.size;
        const need = t.storage.numel * itemSize(t.storage.dtype);
        if (have === undefined) throw new LoraError('E_TORCH_FORMAT', `${path}: tensor "${name}" uses storage ${member}, which is missing`);
        if (have < need) throw new LoraError('E_TORCH_FORMAT', `${path}: storage ${member} holds ${have} bytes, ${need} expected`);
      }
      return new TorchCheckpoint(path, zip, prefix, tensors);
    } catch (err) {
      await zip.close();
      throw err;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.ref(name);
    return { dtype: t.storage.dtype, shape: [...t.shape] };
  }

  /** Storage key of a tensor: equal keys mean shared memory in the saved model (e.g. tied lm_head). */
  storageKey(name: string): string {
    return this.ref(name).storage.key;
  }

  async read(name: string): Promise<RawTensor> {
    const t = this.ref(name);
    const { dtype } = t.storage;
    const size = itemSize(dtype);
    const n = numel(t.shape);
    const member = `${this.prefix}data/${t.storage.key}`;
    let bytes: Uint8Array;
    if (n > t.storage.numel && (n * size > MAX_VIEW_BYTES || n > 16 * t.storage.numel + MAX_SMALL_EXPANSION)) {
      // Only a stride-0 (expanded) view is larger than its storage; a real one repeats a row or a
      // bias a few times, so one that would turn a few stored bytes into megabytes is refused.
      throw new LoraError('E_TOO_LARGE', `${this.path}: tensor "${name}" expands a ${t.storage.numel}-element storage to ${n} elements`);
    }
    if (n === 0) {
      bytes = new Uint8Array(0);
    } else if (isContiguous(t.shape, t.stride)) {
      bytes = await this.zip.readRange(member, t.offset * size, n * size);
    } else {
      // Read only the span the view touches, then gather it into row-major order.
      const extent = t.shape.reduce((acc, d, i) => acc + (d - 1) * t.stride[i], 0) + 1;
      const span = await this.zip.readRange(member, t.offset * size, extent * size);
      bytes = gatherStrided(span, size, t.shape, t.stride);
    }
    return { dtype, shape: [...t.shape], data: viewAs(dtype, bytes.buffer as ArrayBuffer, bytes.byteOffset, n) };
  }

  async close(): Promise<void> {
    await this.zip.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private ref(name: string): TorchTensorRef {
    const t = this.tensors.get(name);
    if (!t) throw new LoraError('E_TENSOR_NOT_FOUND', `${this.path}: no tensor named "${name}"`);
    return t;
  }
}

/**
 * Nested dicts (e.g. `{ model: {...} }`) become dotted names; non-tensor leaves are dropped. The memo
 * lets a pickle reuse a dict anywhere, even inside itself, so each dict is flattened once (which
 * bounds the work) and nesting depth is capped (which bounds the recursion).
 */
function flatten(d: PyDict, prefix: string, out: Map<string, TorchTensorRef>, seen = new Set<PyDict>(), depth = 0): void {
  if (seen.has(d) || depth > 32) return;
  seen.add(d);
  for (const [k, v] of d) {
    if (typeof k !== 'string') continue;
    if (isTensorRef(v)) out.set(prefix + k, v);
    else if (v instanceof PyDict) flatten(v, `${prefix}${k}.`, out, seen, depth + 1);
  }
}

/** The pre-1.6 format is a bare pickle stream (or a tar); say so instead of "not a ZIP archive". */
async function rejectLegacyFormat(path: string): Promise<void> {
  const { handle, size } = await openForRead(path);
  try {
    const head = await readExactly(handle, 0, Math.min(size, 262), path);
    if (head[0] === 0x50 && head[1] === 0x4b) return; // "PK"
    if (head[0] === 0x80) {
      throw new LoraError('E_TORCH_FORMAT', `${path}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a recent torch or convert it to safetensors`);
    }
    if (size >= 262 && new TextDecoder().decode(head.subarray(257, 262)) === 'ustar') {
      throw new LoraError('E_TORCH_FORMAT', `${path}: tar-based torch.save format is not supported; convert it to safetensors`);
    }
  } finally {
    await handle.close();
  }
}
