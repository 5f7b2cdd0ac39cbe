import { join } from 'node:path';
import { readJsonFile } from '../io/safe-file.js';
import { hasFile, isNonEmptyDir } from './cache-layout.js';

/**
 * Which files of a repo to fetch, and when a cached snapshot already has enough of them to be used
 * without the network. `pick` sees the repo's file list and returns the paths to download.
 */
export interface FileSelection {
  readonly name: string;
  pick(repoFiles: string[]): string[];
  isComplete(dir: string): Promise<boolean>;
}

export const TOKENIZER_FILE_NAMES = [
  'tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json',
] as const;
const CONFIG_FILE_NAMES = ['config.json', 'generation_config.json'];

async function hasTokenizer(dir: string): Promise<boolean> {
  return (await hasFile(dir, 'tokenizer.json')) || ((await hasFile(dir, 'vocab.json')) && (await hasFile(dir, 'merges.txt')));
}

/** Weights in transformers' order of preference; only one format is fetched. */
function pickWeights(files: string[]): string[] {
  if (files.includes('model.safetensors')) return ['model.safetensors'];
  const shards = files.filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
  if (files.includes('model.safetensors.index.json')) return ['model.safetensors.index.json', ...shards];
  if (files.includes('pytorch_model.bin')) return ['pytorch_model.bin'];
  const binShards = files.filter((f) => /^pytorch_model-\d+-of-\d+\.bin$/.test(f));
  return files.includes('pytorch_model.bin.index.json') ? ['pytorch_model.bin.index.json', ...binShards] : [];
}

async function hasWeights(dir: string): Promise<boolean> {
  if (await hasFile(dir, 'model.safetensors')) return true;
  if (await hasFile(dir, 'pytorch_model.bin')) return true;
  for (const index of ['model.safetensors.index.json', 'pytorch_model.bin.index.json']) {
    if (!(await hasFile(dir, index))) continue;
    try {
      const map = ((await readJsonFile(join(dir, index), 'E_SHARD_INDEX')) as { weight_map: Record<string, string> }).weight_map;
      const shards = new Set(Object.values(map));
      let all = true;
      for (const s of shards) all &&= await hasFile(dir, s);
      if (all) return true;
    } catch {
      // An unreadable index means the snapshot is not usable as is.
    }
  }
  return false;
}

/** config.json, tokenizer files and one weights format: what loading an OPT model needs. */
export const MODEL_FILES: FileSelection = {
  name: 'model',
  pick: (files) => [
    ...files.filter((f) => CONFIG_FILE_NAMES.includes(f) || (TOKENIZER_FILE_NAMES as readonly string[]).includes(f)),
    ...pickWeights(files),
  ],
  isComplete: async (dir) => (await hasFile(dir, 'config.json')) && (await hasWeights(dir)),
};

export const TOKENIZER_FILES: FileSelection = {
  name: 'tokenizer',
  pick: (files) => files.filter((f) => (TOKENIZER_FILE_NAMES as readonly string[]).includes(f)),
  isComplete: hasTokenizer,
};

export const CONFIG_FILES: FileSelection = {
  name: 'config',
  pick: (files) => files.filter((f) => CONFIG_FILE_NAMES.includes(f)),
  isComplete: (dir) => hasFile(dir, 'config.json'),
};

/** Every file of the repo: the default for datasets. */
export const ALL_FILES: FileSelection = {
  name: 'all',
  pick: (files) => files,
  isComplete: isNonEmptyDir,
};

/** Exactly the named files, all of which must be present. */
export function filesNamed(names: string[]): FileSelection {
  return {
    name: names.join(','),
    pick: (files) => files.filter((f) => names.includes(f)),
    isComplete: async (dir) => {
      for (const n of names) if (!(await hasFile(dir, n))) return false;
      return true;
    },
  };
}
