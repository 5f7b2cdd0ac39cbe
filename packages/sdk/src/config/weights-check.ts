// Checking a checkpoint's tensor names and shapes against what its config expects, for any family
// (the expected map comes from the family's parameter table).
import { LoraError } from '../io/errors.js';

/** What a checkpoint's names and shapes look like to the check: a WeightSource fits, so does a Map. */
export interface ShapeSource {
  keys(): string[];
  info(name: string): { shape: number[] };
}

export interface WeightReport {
  /** Canonical name (the parameter table's, no `model.` prefix) → the key in the file. */
  keyOf: Map<string, string>;
  /** "model." when keys come from *ForCausalLM, "" from the bare base model (OPTModel). */
  prefix: string;
  /** The file's lm_head.weight key when present (optional for a model whose head is tied). */
  lmHeadKey: string | undefined;
  missing: string[];
  mismatched: { name: string; key: string; expected: number[]; actual: number[] }[];
  unexpected: string[];
  /** Human-readable lines, one per problem; empty when the checkpoint fits the config. */
  problems: string[];
}

const shapeText = (s: number[]) => `[${s.join(', ')}]`;

/**
 * Matches a checkpoint against the expected tensors (a parameter table expanded for the config):
 * keys with or without the `model.` prefix, lm_head optional (tied). Reports every missing tensor,
 * every shape mismatch and every unknown key, not just the first, because a wrong config (say
 * opt-125m's with opt-350m's weights) breaks many at once.
 */
export function checkWeights(
  expected: Map<string, number[]>, source: ShapeSource, o: { lmHead: number[]; numLayers: number },
): WeightReport {
  const keys = source.keys();
  const present = new Set(keys);
  const prefix = keys.some((k) => k.startsWith('model.') && expected.has(k.slice('model.'.length))) ? 'model.' : '';
  const keyOf = new Map<string, string>();
  const report: WeightReport = { keyOf, prefix, lmHeadKey: undefined, missing: [], mismatched: [], unexpected: [], problems: [] };

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
    const want = o.lmHead;
    if (actual.length !== 2 || actual[0] !== want[0] || actual[1] !== want[1]) {
      report.mismatched.push({ name: 'lm_head.weight', key: lmHead, expected: want, actual });
      report.problems.push(`${lmHead}: shape ${shapeText(actual)}, config expects ${shapeText(want)}`);
    }
  }
  const used = new Set([...keyOf.values(), ...(lmHead ? [lmHead] : [])]);
  for (const k of keys) {
    if (used.has(k)) continue;
    report.unexpected.push(k);
    report.problems.push(`unexpected tensor ${k}${/layers\.\d+\./.test(k) ? ` (config has ${o.numLayers} layers)` : ''}`);
  }
  return report;
}

/** checkWeights' report, throwing one error that lists every problem. */
export function assertReport(report: WeightReport, where: string): WeightReport {
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
