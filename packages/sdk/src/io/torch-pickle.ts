import { numel, type DType } from './dtype.js';
import { LoraError } from './errors.js';
import { isPyGlobal, isTuple, PyDict, unpickle, type PyGlobal } from './pickle.js';

/**
 * The torch.save dialect of pickle, restricted to what a tensor state dict needs. Only the globals
 * in ALLOWED resolve; anything else (os.system, builtins.eval, torch internals with side effects…)
 * is refused by name before it could ever be applied. Nothing here reads tensor bytes: tensors come
 * back as descriptors (storage key, offset, shape, stride) that the checkpoint reader resolves.
 */

export interface TorchStorage {
  readonly key: string;
  readonly dtype: DType;
  /** Elements of `dtype` the storage holds. */
  readonly numel: number;
  readonly location: string;
}

export interface TorchTensorRef {
  readonly kind: 'tensor';
  readonly storage: TorchStorage;
  /** In elements, like torch's storage_offset(). */
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8',
  ByteStorage: 'U8', BoolStorage: 'BOOL', UntypedStorage: 'U8',
};

/** torch.float32 and friends: plain constants, never callable. */
const DTYPE_CONSTANTS = new Set([
  'float32', 'float', 'float64', 'double', 'float16', 'half', 'bfloat16', 'int64', 'long', 'int32', 'int',
  'int16', 'short', 'int8', 'uint8', 'bool',
]);

/** PyTorch's own limit on tensor dimensions. */
const MAX_DIMS = 64;

export const isTensorRef = (v: unknown): v is TorchTensorRef =>
  typeof v === 'object' && v !== null && (v as TorchTensorRef).kind === 'tensor';

interface StorageType extends PyGlobal {
  readonly dtype: DType;
}

export function unpickleTorchStateDict(bytes: Uint8Array, where: string): PyDict {
  const storages = new Map<string, TorchStorage>();
  const bad = (msg: string) => new LoraError('E_PICKLE', `${where}: ${msg}`);

  const rebuildTensor = (args: unknown[]): TorchTensorRef => {
    const [storage, offset, size, stride] = args;
    if (!isStorage(storage)) throw bad('_rebuild_tensor_v2 without a storage');
    const shape = intList(size, 'size');
    const strides = intList(stride, 'stride');
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw bad(`bad storage offset ${String(offset)}`);
    if (shape.length !== strides.length) throw bad(`size has ${shape.length} dims but stride has ${strides.length}`);
    if (shape.length > MAX_DIMS) throw bad(`tensor with ${shape.length} dims; at most ${MAX_DIMS} are accepted`);
    if (numel(shape) > 0) {
      const last = shape.reduce((acc, d, i) => acc + (d - 1) * strides[i], offset);
      if (last >= storage.numel) {
        throw bad(`tensor [${shape.join(', ')}] with stride [${strides.join(', ')}] at offset ${offset} reaches element ${last} of a ${storage.numel}-element storage`);
      }
    }
    return { kind: 'tensor', storage, offset, shape, stride: strides };
  };

  const intList = (v: unknown, what: string): number[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
      throw bad(`tensor ${what} is not a tuple of non-negative integers`);
    }
    return [...(v as number[])];
  };

  const fn = (module: string, name: string, call: (args: unknown[]) => unknown): PyGlobal => ({ kind: 'global', module, name, call });
  const constant = (module: string, name: string): PyGlobal => ({ kind: 'global', module, name });

  const findGlobal = (module: string, name: string): PyGlobal => {
    const qual = `${module}.${name}`;
    switch (qual) {
      case 'collections.OrderedDict':
        return fn(module, name, (args) => {
          const d = new PyDict();
          if (args.length && Array.isArray(args[0])) for (const p of args[0]) if (Array.isArray(p) && p.length === 2) d.set(p[0], p[1]);
          return d;
        });
      case 'torch._utils._rebuild_tensor_v2':
        return fn(module, name, rebuildTensor);
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        return fn(module, name, (args) => {
          if (!isTensorRef(args[0])) throw bad(`${name} without a tensor`);
          return args[0];
        });
      case 'torch._tensor._rebuild_from_type_v2':
        // Used for tensors carrying Python attributes: (func, type, args, state). Only plain types.
        return fn(module, name, (args) => {
          const [func, type, inner] = args;
          if (!isPyGlobal(type) || !['torch.Tensor', 'torch.nn.parameter.Parameter'].includes(`${type.module}.${type.name}`)) {
            throw new LoraError('E_PICKLE_FORBIDDEN', `${where}: refusing to rebuild a tensor of type ${isPyGlobal(type) ? `${type.module}.${type.name}` : typeof type}`);
          }
          if (!isPyGlobal(func) || !func.call || !isTuple(inner)) throw bad('_rebuild_from_type_v2 with bad arguments');
          return func.call([...inner]);
        });
      case 'torch.Tensor':
      case 'torch.nn.parameter.Parameter':
        return constant(module, name);
      case 'torch.Size':
        return fn(module, name, (args) => args[0]);
    }
    if (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name)) {
      const t: StorageType = { kind: 'global', module, name, dtype: STORAGE_DTYPES[name] };
      return t;
    }
    if (module === 'torch' && DTYPE_CONSTANTS.has(name)) return constant(module, name);
    throw new LoraError(
      'E_PICKLE_FORBIDDEN',
      `${where}: refusing global ${qual}: a checkpoint may only rebuild tensors (allowed: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch.*Storage)`,
    );
  };

  const persistentLoad = (pid: unknown): TorchStorage => {
    // ('storage', storage_type, key, location, numel) — what torch.save's persistent_id writes.
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') throw bad(`unexpected persistent id ${describePid(pid)}`);
    const [, type, key, location, count] = pid;
    if (!isPyGlobal(type) || !('dtype' in type)) throw bad('persistent id without a storage type');
    if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) throw bad(`bad storage key (${typeof key === 'string' ? `${key.length} characters` : typeof key}; torch.save names storages "0", "1", …)`);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) throw bad(`bad storage size ${String(count)}`);
    const dtype = (type as StorageType).dtype;
    const seen = storages.get(key);
    if (seen) {
      // The same storage seen again (tied weights, views): one object so callers can tell it is shared.
      if (seen.dtype !== dtype) throw bad(`storage ${key} is used both as ${seen.dtype} and ${dtype}; reinterpreting a storage is not supported`);
      return seen;
    }
    const s: TorchStorage = { key, dtype, numel: count, location: typeof location === 'string' ? location : 'cpu' };
    storages.set(key, s);
    return s;
  };

  const result = unpickle(bytes, {
    findGlobal,
    persistentLoad,
    build: (target) => isTensorRef(target), // a tensor's Python-side state carries no data we need
    where,
  });
  if (!(result instanceof PyDict)) throw bad('top-level object is not a dict: not a state dict');
  return result;
}

function isStorage(v: unknown): v is TorchStorage {
  return typeof v === 'object' && v !== null && typeof (v as TorchStorage).key === 'string' && 'numel' in v && 'dtype' in v;
}

function describePid(pid: unknown): string {
  if (Array.isArray(pid)) return `tuple of ${pid.length}`;
  return typeof pid === 'string' ? `a string of ${pid.length} characters` : typeof pid;
}
