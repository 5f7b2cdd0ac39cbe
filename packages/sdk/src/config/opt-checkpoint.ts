import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveModelDir, type ResolveOptions } from '../hub/resolve.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { LoraError } from '../io/errors.js';
import { openWeights } from '../io/open-weights.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import { loadOptConfig, optConfigToJson, type OptConfig } from './opt-config.js';
import { assertOptWeights, expectedOptWeights, type OptWeightReport } from './opt-weights.js';

/** An OPT model folder opened and checked: config, weights, and reads by canonical tensor name. */
export interface OptCheckpoint extends AsyncDisposable {
  readonly dir: string;
  readonly config: OptConfig;
  readonly weights: WeightSource;
  readonly report: OptWeightReport;
  /**
   * A tensor by its OPTModel name (`decoder.layers.0.fc1.weight`), whatever prefix the file uses.
   * `lm_head.weight` is answered from embed_tokens when the file leaves it out (tied).
   */
  read(name: string): Promise<RawTensor>;
  close(): Promise<void>;
}

/**
 * Resolves a model (local folder or hub id), reads config.json, opens whichever weights file it has
 * and checks every tensor's shape against the config before anything is loaded — a mismatch fails
 * here listing every problem, not halfway through building the model.
 */
export async function openOptCheckpoint(idOrDir: string, options: ResolveOptions = {}): Promise<OptCheckpoint> {
  const dir = await resolveModelDir(idOrDir, options);
  const config = await loadOptConfig(dir);
  const weights = await openWeights(dir);
  let report: OptWeightReport;
  try {
    report = assertOptWeights(config, weights, dir);
  } catch (err) {
    await weights.close();
    throw err;
  }
  const close = () => weights.close();
  return {
    dir,
    config,
    weights,
    report,
    read: async (name) => {
      if (name === 'lm_head.weight') return weights.read(report.lmHeadKey ?? report.keyOf.get('decoder.embed_tokens.weight')!);
      const key = report.keyOf.get(name.replace(/^model\./, ''));
      if (!key) throw new LoraError('E_TENSOR_NOT_FOUND', `${dir}: OPT has no tensor "${name}" in this configuration`);
      return weights.read(key);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Writes a model folder transformers can load with OPTForCausalLM.from_pretrained: config.json and
 * model.safetensors with `model.`-prefixed keys and `{format: "pt"}` metadata (transformers checks
 * it). lm_head is left out, as save_pretrained does for tied weights. Both files are written atomically.
 */
export async function writeOptModel(dir: string, config: OptConfig, tensors: Map<string, RawTensor>): Promise<void> {
  const expected = expectedOptWeights(config);
  const out = new Map<string, RawTensor>();
  for (const [name, t] of tensors) {
    const canonical = name.replace(/^model\./, '');
    if (canonical === 'lm_head.weight') continue;
    if (!expected.has(canonical)) throw new LoraError('E_WEIGHTS_MISMATCH', `writeOptModel: "${name}" is not an OPT tensor of this configuration`);
    out.set(`model.${canonical}`, t);
  }
  const prefixed = new Map([...out].map(([k, t]) => [k, t.shape]));
  assertOptWeights(config, { keys: () => [...prefixed.keys()], info: (k) => ({ shape: prefixed.get(k)! }) }, 'writeOptModel');
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, 'model.safetensors'), out, { format: 'pt' });
  await writeFileAtomic(join(dir, 'config.json'), [new TextEncoder().encode(JSON.stringify(optConfigToJson(config), null, 2) + '\n')]);
}
