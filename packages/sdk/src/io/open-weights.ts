import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LoraError } from './errors.js';
import { SafetensorsFile } from './safetensors-reader.js';
import { SAFETENSORS_INDEX, ShardedSafetensors } from './sharded.js';
import type { WeightSource } from './tensor.js';
import { TorchCheckpoint } from './torch-checkpoint.js';

/** Weight files in the order transformers prefers them: safetensors first, pickle last. */
export const WEIGHT_FILES = ['model.safetensors', SAFETENSORS_INDEX, 'pytorch_model.bin'] as const;

const exists = (p: string) => stat(p).then((s) => s.isFile(), () => false);

/** Finds which weight file a model folder has, or fails naming every file that was looked for. */
export async function findWeightsFile(dir: string): Promise<string> {
  for (const name of WEIGHT_FILES) {
    const p = join(dir, name);
    if (await exists(p)) return p;
  }
  throw new LoraError('E_FILE_NOT_FOUND', `no weights in ${dir}: expected one of ${WEIGHT_FILES.join(', ')}`);
}

/** Opens a weights file by its name, or a model folder by what it contains. */
export async function openWeights(pathOrDir: string): Promise<WeightSource> {
  const s = await stat(pathOrDir).catch(() => undefined);
  if (!s) throw new LoraError('E_FILE_NOT_FOUND', `file not found: ${pathOrDir}`);
  const file = s.isDirectory() ? await findWeightsFile(pathOrDir) : pathOrDir;
  if (file.endsWith('.index.json')) return ShardedSafetensors.open(file);
  if (file.endsWith('.safetensors')) return SafetensorsFile.open(file);
  return TorchCheckpoint.open(file);
}
