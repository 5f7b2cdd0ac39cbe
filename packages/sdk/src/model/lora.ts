// LoRA as PEFT defines it: for a targeted linear W (out × in), A is (r × in) kaiming-uniform(a=√5),
// B is (out × r) zeros, y = W·x + b + scale·B·A·drop(x), scale = alpha/r (alpha/√r with rsLoRA).
// Which modules a layer has comes from the family's parameter table (its LoraLayout). Linears that
// share one input and are stacked in one weight (OPT's q/k/v) are one module of G groups
// (A [G·r, K], B [G·N, r]); an untargeted group keeps zero A/B whose grads are zeroed before each
// update, so it never moves and is never saved.
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import { seededRandom } from '../data/split.js';
import { LoraError } from '../io/errors.js';
import { OPT_PARAMS } from '../models/opt-params.js';
import { loraLayout, type LoraLayout } from '../models/params.js';
import type { Kernels, LoraSpec } from './kernels.js';

/** OPT's LoRA targets (every family's list is its LoraLayout's `targets`). */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'] as const;
/** A LoRA target name: OPT's, or any name a family's parameter table gives its linears. */
export type LoraTarget = (typeof LORA_TARGETS)[number] | (string & {});
/** PEFT's shorthand for every linear of the family (lm_head excluded). */
export const ALL_LINEAR = 'all-linear';

export interface LoraOptions {
  r: number;
  alpha: number;
  dropout?: number;
  /** Target names, or ['all-linear'] for every one of the family's (default: q_proj, v_proj). */
  targetModules?: readonly LoraTarget[];
  /** alpha/√r instead of alpha/r. */
  useRslora?: boolean;
  /** PEFT's default (true: kaiming-uniform A, zero B), 'gaussian' (A ~ N(0, 1/r)), or false (both random — for tests). */
  initLoraWeights?: true | 'gaussian' | false;
  seed?: number;
}

/** One LoRA module: A, B and their grads (f32), G stacked groups. */
export interface LoraModule {
  /** The family's module name (OPT: qkv, out_proj, fc1, fc2); also the optimizer state's key. */
  name: string;
  groups: number;
  /** Which of the G groups are trained (q/k/v subsets); single modules: [true]. */
  trained: boolean[];
  inFeatures: number;
  outFeatures: number; // per group
  a: NativeTensor;
  b: NativeTensor;
  da: NativeTensor;
  db: NativeTensor;
}

/** One layer's modules by name (only the targeted ones are present). */
export type LoraLayer = Partial<Record<string, LoraModule>>;

export class LoraAdapter {
  readonly r: number;
  readonly alpha: number;
  readonly dropout: number;
  readonly targets: LoraTarget[];
  readonly useRslora: boolean;
  readonly scale: number;
  readonly layers: LoraLayer[];
  /** The family's modules and PEFT module paths. */
  readonly layout: LoraLayout;

  /** `model` is the family's LoRA layout (an OptConfig means OPT's, for callers written before families). */
  constructor(model: LoraLayout | OptConfig, o: LoraOptions, device: DeviceName) {
    const layout = 'modules' in model ? model : loraLayout(OPT_PARAMS, model);
    this.layout = layout;
    const asked = o.targetModules ?? ['q_proj', 'v_proj'];
    const targets = asked.includes(ALL_LINEAR) ? layout.targets : asked;
    validateOptions(o, targets, layout.targets);
    this.r = o.r;
    this.alpha = o.alpha;
    this.dropout = o.dropout ?? 0;
    this.targets = [...new Set(targets)].sort();
    this.useRslora = o.useRslora ?? false;
    this.scale = this.useRslora ? o.alpha / Math.sqrt(o.r) : o.alpha / o.r;
    const rand = seededRandom(o.seed ?? 0);
    const init = o.initLoraWeights ?? true;
    const make = (name: string, groups: number, trained: boolean[], inF: number, outF: number): LoraModule => {
      const a = new Float32Array(groups * o.r * inF);
      const b = new Float32Array(groups * outF * o.r);
      for (let g = 0; g < groups; g++) {
        if (!trained[g]) continue;
        const aG = a.subarray(g * o.r * inF, (g + 1) * o.r * inF);
        if (init === 'gaussian') fillNormal(aG, 1 / o.r, rand);
        else fillUniform(aG, 1 / Math.sqrt(inF), rand); // kaiming_uniform(a=√5): bound = 1/√fan_in
        if (init === false) fillUniform(b.subarray(g * outF * o.r, (g + 1) * outF * o.r), 1 / Math.sqrt(o.r), rand);
      }
      const { Tensor } = native();
      return {
        name, groups, trained, inFeatures: inF, outFeatures: outF,
        a: Tensor.fromArray(a, [groups * o.r, inF], 'f32', device),
        b: Tensor.fromArray(b, [groups * outF, o.r], 'f32', device),
        da: Tensor.fromArray(new Float32Array(a.length), [groups * o.r, inF], 'f32', device),
        db: Tensor.fromArray(new Float32Array(b.length), [groups * outF, o.r], 'f32', device),
      };
    };
    this.layers = [];
    // Layer by layer, modules in table order, groups in row order: the order the random init runs in.
    for (let i = 0; i < layout.numLayers; i++) {
      const layer: LoraLayer = {};
      for (const m of layout.modules) {
        const trained = m.targets.map((t) => this.targets.includes(t));
        if (trained.some(Boolean)) layer[m.name] = make(m.name, m.targets.length, trained, m.inFeatures, m.outFeatures);
      }
      this.layers.push(layer);
    }
  }

  modules(): LoraModule[] {
    return this.layers.flatMap((l) => this.layout.modules.map((m) => l[m.name]).filter((m): m is LoraModule => m !== undefined));
  }

  /** Every module with its optimizer-state key (`layers.<i>.<module>`), layer by layer. */
  namedModules(): { key: string; layer: number; module: LoraModule }[] {
    return this.layers.flatMap((l, i) => this.layout.modules.flatMap((m) => (l[m.name] ? [{ key: `layers.${i}.${m.name}`, layer: i, module: l[m.name]! }] : [])));
  }

  /** The module and group a target trains in, in every layer (undefined when not targeted). */
  locate(target: string): { module: string; group: number } | undefined {
    for (const m of this.layout.modules) {
      const group = m.targets.indexOf(target);
      if (group >= 0) return { module: m.name, group };
    }
    return undefined;
  }

  spec(m: LoraModule, dropout?: { seed: number; offset?: number }): LoraSpec {
    return {
      a: m.a, b: m.b, scale: this.scale, groups: m.groups,
      dropout: dropout && this.dropout > 0 ? { p: this.dropout, seed: dropout.seed, offset: dropout.offset } : undefined,
    };
  }

  /** Trainable parameters (only trained groups count), as PEFT's print_trainable_parameters does. */
  trainableParameters(): number {
    let n = 0;
    for (const m of this.modules()) for (const t of m.trained) if (t) n += this.r * m.inFeatures + m.outFeatures * this.r;
    return n;
  }

  zeroGrad(k: Kernels): void {
    for (const m of this.modules()) {
      k.zero(m.da);
      k.zero(m.db);
    }
  }

  /** Zeroes the grads of untrained q/k/v groups so the optimizer leaves them at zero. */
  maskUntrainedGrads(k: Kernels): void {
    for (const m of this.modules()) {
      m.trained.forEach((trained, g) => {
        if (trained) return;
        using da = m.da.narrow(0, g * this.r, this.r);
        using db = m.db.narrow(0, g * m.outFeatures, m.outFeatures);
        k.zero(da);
        k.zero(db);
      });
    }
  }

  dispose(): void {
    for (const m of this.modules()) for (const t of [m.a, m.b, m.da, m.db]) t.dispose();
  }
}

function validateOptions(o: LoraOptions, targets: readonly string[], known: readonly string[]): void {
  if (!Number.isInteger(o.r) || o.r < 1 || o.r > 65536) throw new LoraError('E_CONFIG', `LoRA r must be a positive integer, got ${o.r}`);
  if (!Number.isFinite(o.alpha) || o.alpha <= 0) throw new LoraError('E_CONFIG', `LoRA alpha must be a positive number, got ${o.alpha}`);
  const p = o.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new LoraError('E_CONFIG', `LoRA dropout must be in [0, 1), got ${p}`);
  if (!targets.length) throw new LoraError('E_CONFIG', 'LoRA targetModules is empty');
  for (const t of targets) {
    if (!known.includes(t)) {
      throw new LoraError('E_CONFIG', `unknown LoRA target '${t}' (this model's linear layers: ${known.join(', ')}, or ${ALL_LINEAR})`);
    }
  }
}

function fillUniform(out: Float32Array, bound: number, rand: () => number): void {
  for (let i = 0; i < out.length; i++) out[i] = (rand() * 2 - 1) * bound;
}

function fillNormal(out: Float32Array, std: number, rand: () => number): void {
  for (let i = 0; i < out.length; i += 2) {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    const m = std * Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < out.length) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
}
