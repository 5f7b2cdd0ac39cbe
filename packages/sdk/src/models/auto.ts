// AutoModelForCausalLM: reads config.json's model_type (transformers.js' dispatch key) and loads the
// model with its family's class. A new family adds one line to FAMILIES.
import { join } from 'node:path';

import { resolveModelDir } from '../hub/resolve.js';
import { MODEL_FILES } from '../hub/selection.js';
import type { HubProgressEvent } from '../hub/progress.js';
import { LoraError } from '../io/errors.js';
import { readJsonFile } from '../io/safe-file.js';
import { LlamaForCausalLM } from './llama.js';
import { OptForCausalLM } from './opt.js';
import type { CausalLM, LoadOptions } from './causal-lm.js';

interface Family {
  /** Loads a resolved local model folder. */
  fromPretrained(dir: string, o: LoadOptions): Promise<CausalLM>;
}

const FAMILIES: Record<string, Family> = {
  opt: OptForCausalLM,
  llama: LlamaForCausalLM,
  qwen2: LlamaForCausalLM,
  qwen3: LlamaForCausalLM,
};

/** The model_type values AutoModelForCausalLM loads. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(FAMILIES);

/** config.json's model_type, with a clear error for a missing, unreadable or unsupported one. */
export async function readModelType(dir: string): Promise<string> {
  const path = join(dir, 'config.json');
  const json = await readJsonFile(path); // FIFOs, links out of the folder and bad JSON: coded, text never quoted
  const type = (json as { model_type?: unknown } | null)?.model_type;
  if (typeof type !== 'string' || !Object.hasOwn(FAMILIES, type)) {
    throw new LoraError(
      'E_CONFIG',
      `${path}: model_type ${JSON.stringify(type)} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
      { field: 'model_type' },
    );
  }
  return type;
}

export class AutoModelForCausalLM {
  private constructor() {}

  /** A Hugging Face model folder, or a hub id resolved into the HF cache, loaded with its family's class. */
  static async fromPretrained(idOrDir: string, o: LoadOptions = {}): Promise<CausalLM> {
    const dir = await resolveModelDir(idOrDir, {
      files: MODEL_FILES,
      cacheDir: o.cacheDir,
      revision: o.revision,
      onProgress: (event: HubProgressEvent) => o.onProgress?.({ type: 'resolve', event }),
    });
    const model = await FAMILIES[await readModelType(dir)].fromPretrained(dir, o);
    model.source = idOrDir;
    return model;
  }
}
