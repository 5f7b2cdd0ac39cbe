import { LoraError } from '../io/errors.js';
import type { OptConfig } from './opt-config.js';

/**
 * Every tensor an OPT checkpoint must hold, named as OPTModel names them (`decoder.…`), with its
 * shape. Linear weights are (out, in) as in torch. Positions have 2 extra rows (OPT's offset).
 */
export function expectedOptWeights(c: OptConfig): Map<string, number[]> {
  const H = c.hiddenSize;
  const F = c.ffnDim;
  const w = new Map<string, number[]>();
  const linear = (name: string, out: number, inp: number) => {
    w.set(`${name}.weight`, [out, inp]);
    if (c.enableBias) w.set(`${name}.bias`, [out]);
  };
  const layerNorm = (name: string) => {
    if (!c.layerNormElementwiseAffine) return;
    w.set(`${name}.weight`, [H]);
    w.set(`${name}.bias`, [H]);
  };
  w.set('decoder.embed_tokens.weight', [c.vocabSize, c.wordEmbedProjDim]);
  w.set('decoder.embed_positions.weight', [c.maxPositionEmbeddings + 2, H]);
  if (c.wordEmbedProjDim !== H) {
    w.set('decoder.project_in.weight', [H, c.wordEmbedProjDim]);
    w.set('decoder.project_out.weight', [c.wordEmbedProjDim, H]);
  }
  if (c.doLayerNormBefore && !c.removeFinalLayerNorm) layerNorm('decoder.final_layer_norm');
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `decoder.layers.${i}`;
    for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) linear(`${p}.self_attn.${proj}`, H, H);
    layerNorm(`${p}.self_attn_layer_norm`);
    linear(`${p}.fc1`, F, H);
    linear(`${p}.fc2`, H, F);
    layerNorm(`${p}.final_layer_norm`);
  }
  return w;
}

/** What a checkpoint's names and shapes look like to the check: a WeightSource fits, so does a Map. */
export interface ShapeSource {
  keys(): string[];
  info(name: string): { shape: number[] };
}

export interface OptWeightReport {
  /** Canonical name (`decoder.…`) → the key in the file. */
  keyOf: Map<string, string>;
  /** "model." when keys come from OPTForCausalLM, "" from OPTModel. */
  prefix: string;
  /** The file's lm_head.weight key when present; OPT ties it to embed_tokens, so it is optional. */
  lmHeadKey: string | undefined;
  missing: string[];
  mismatched: { name: string; key: string; expected: number[]; actual: number[] }[];
  unexpected: string[];
  /** Human-readable lines, one per problem; empty when the checkpoint fits the config. */
  problems: string[];
}

const shapeText = (s: number[]) => `[${s.join(', ')}]`;

/**
 * Matches a checkpoint against the config: keys with or without the `model.` prefix, lm_head
 * optional (tied). Reports every missing tensor, every shape mismatch and every unknown key, not just
 * the first, because a wrong config (say opt-125m's with opt-350m's weights) breaks many at once.
 */
export function checkOptWeights(config: OptConfig, source: ShapeSource): OptWeightReport {
  const expected = expectedOptWeights(config);
  const keys = source.keys();
  const present = new Set(keys);
  const prefix = keys.some((k) => k.startsWith('model.decoder.')) ? 'model.' : '';
  const keyOf = new Map<string, string>();
  const report: OptWeightReport = { keyOf, prefix, lmHeadKey: undefined, missing: [], mismatched: [], unexpected: [], problems: [] };

  for (const [name, shape] of expected) {
    const key = [prefix + name, name, `model.${name}`].find((k) => present.has(k));
    if (!key) {
      report.missing.push(name);
      report.problems.push(`missing ${prefix}${name} ${shapeText(shape)}`);
      continue;
    }
    keyOf.set(name, key);
    const actual = source.info(key).shape;
    if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
      report.mismatched.push({ name, key, expected: shape, actual });
      report.problems.push(`${key}: shape ${shapeText(actual)}, config expects ${shapeText(shape)}`);
    }
  }
  const lmHead = ['lm_head.weight', 'model.lm_head.weight'].find((k) => present.has(k));
  if (lmHead) {
    report.lmHeadKey = lmHead;
    const actual = source.info(lmHead).shape;
    const want = [config.vocabSize, config.wordEmbedProjDim];
    if (actual.length !== 2 || actual[0] !== want[0] || actual[1] !== want[1]) {
      report.mismatched.push({ name: 'lm_head.weight', key: lmHead, expected: want, actual });
      report.problems.push(`${lmHead}: shape ${shapeText(actual)}, config expects ${shapeText(want)}`);
    }
  }
  const used = new Set([...keyOf.values(), ...(lmHead ? [lmHead] : [])]);
  for (const k of keys) {
    if (used.has(k)) continue;
    report.unexpected.push(k);
    report.problems.push(`unexpected tensor ${k}${/layers\.\d+\./.test(k) ? ` (config has ${config.numHiddenLayers} layers)` : ''}`);
  }
  return report;
}

/** checkOptWeights, throwing one error that lists every problem. */
export function assertOptWeights(config: OptConfig, source: ShapeSource, where = 'checkpoint'): OptWeightReport {
  const report = checkOptWeights(config, source);
  if (report.problems.length) {
    const shown = report.problems.slice(0, 50);
    const more = report.problems.length - shown.length;
    throw new LoraError(
      'E_WEIGHTS_MISMATCH',
      `${where} does not match its config (${report.problems.length} problem${report.problems.length > 1 ? 's' : ''}):\n  - ${shown.join('\n  - ')}${more > 0 ? `\n  … and ${more} more` : ''}`,
    );
  }
  return report;
}

/** A ShapeSource over a plain name → shape map, for tests and for checks before any file exists. */
export function shapesOf(map: Map<string, number[]> | Record<string, number[]>): ShapeSource {
  const m = map instanceof Map ? map : new Map(Object.entries(map));
  return { keys: () => [...m.keys()], info: (name) => ({ shape: m.get(name) ?? [] }) };
}
