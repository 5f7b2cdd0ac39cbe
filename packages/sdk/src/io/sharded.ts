import { basename, dirname, join } from 'node:path';
import { LoraError } from './errors.js';
import { readJsonFile } from './safe-file.js';
import { SafetensorsFile } from './safetensors-reader.js';
import type { RawTensor, TensorInfo, WeightSource } from './tensor.js';

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';

/**
 * A checkpoint split over several safetensors files, described by `model.safetensors.index.json`
 * (`{ metadata, weight_map: { tensorName: shardFile } }`). Every shard's header is read and checked
 * at open time, so a missing shard or a tensor the index promises but no shard holds fails early.
 */
export class ShardedSafetensors implements WeightSource, AsyncDisposable {
  private constructor(
    readonly indexPath: string,
    readonly metadata: Record<string, unknown>,
    private readonly owner: Map<string, SafetensorsFile>,
    private readonly shards: SafetensorsFile[],
  ) {}

  static async open(indexPath: string): Promise<ShardedSafetensors> {
    const weightMap = await readIndex(indexPath);
    const dir = dirname(indexPath);
    const byFile = new Map<string, SafetensorsFile>();
    const owner = new Map<string, SafetensorsFile>();
    try {
      for (const [tensor, file] of Object.entries(weightMap.weight_map)) {
        let shard = byFile.get(file);
        if (!shard) {
          shard = await SafetensorsFile.open(join(dir, file));
          byFile.set(file, shard);
        }
        if (!shard.has(tensor)) {
          throw new LoraError('E_SHARD_INDEX', `${indexPath}: tensor "${tensor}" is mapped to ${file}, which does not contain it`);
        }
        owner.set(tensor, shard);
      }
    } catch (err) {
      await Promise.all([...byFile.values()].map((s) => s.close()));
      throw err;
    }
    return new ShardedSafetensors(indexPath, weightMap.metadata, owner, [...byFile.values()]);
  }

  keys(): string[] {
    return [...this.owner.keys()];
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo {
    return this.shardOf(name).info(name);
  }

  read(name: string): Promise<RawTensor> {
    return this.shardOf(name).read(name);
  }

  /** The shard files, in order of first use by the index. */
  get files(): string[] {
    return this.shards.map((s) => s.path);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private shardOf(name: string): SafetensorsFile {
    const s = this.owner.get(name);
    if (!s) throw new LoraError('E_TENSOR_NOT_FOUND', `${this.indexPath}: no tensor named "${name}"`);
    return s;
  }
}

async function readIndex(indexPath: string): Promise<{ metadata: Record<string, unknown>; weight_map: Record<string, string> }> {
  const raw = await readJsonFile(indexPath, 'E_SHARD_INDEX');
  const map = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new LoraError('E_SHARD_INDEX', `${indexPath}: missing "weight_map" object`);
  }
  for (const [tensor, file] of Object.entries(map)) {
    // Shards must sit beside the index: a path here could point anywhere on disk.
    if (typeof file !== 'string' || file !== basename(file) || file === '..' || file === '.' || file.includes('\\')) {
      throw new LoraError('E_SHARD_INDEX', `${indexPath}: tensor "${tensor}" maps to ${JSON.stringify(file)}, not a file name beside the index`);
    }
  }
  const metadata = (raw as { metadata?: unknown }).metadata;
  return {
    metadata: typeof metadata === 'object' && metadata !== null ? (metadata as Record<string, unknown>) : {},
    weight_map: map as Record<string, string>,
  };
}
