// The parameter table of a model family: every tensor of a Hugging Face checkpoint, written once —
// its name, its shape as a function of the config, where it lives in the loaded model (role), whether
// it is a linear weight stored in the base dtype (and so quantized), and the LoRA target it answers
// to. Loading, shape checks, quantized save/load, merge/export and PEFT adapter key names all read
// this table; nothing else spells a checkpoint name.
import type { NativeTensor } from '@lora/core-native';

export interface ParamSpec<C> {
  /** HF name under the base model (without the `model.` prefix); `{i}` stands for the layer index. */
  name: string;
  shape: (c: C) => number[];
  /**
   * Where the tensor lives in the loaded model: a field of the model's weights (globals) or of one
   * layer's weights. Tensors with the same role in one layer are stacked by rows (`stack`).
   */
  role: string;
  /** A linear weight [out, in], kept in the base dtype (quantized for int8/int4/nf4). */
  quantizable?: boolean;
  /** Row block `index` of `of` equal blocks of the role's tensor (q | k | v stacked into one weight). */
  stack?: { index: number; of: number };
  /** The LoRA target name of this linear (PEFT's target_modules entry) and the adapter module it trains in. */
  lora?: { target: string; module: string };
  /** Whether this config has the tensor (default: always). */
  when?: (c: C) => boolean;
}

export interface ParamTable<C> {
  globals: ParamSpec<C>[];
  layer: ParamSpec<C>[];
  numLayers: (c: C) => number;
}

/** One tensor of one configuration, its name resolved. */
export interface Param {
  name: string;
  shape: number[];
  role: string;
  quantizable: boolean;
  stack?: { index: number; of: number };
  lora?: { target: string; module: string };
  /** The layer index for per-layer tensors. */
  layer?: number;
}

/** The table expanded for one config: globals first, then each layer's tensors in table order. */
export function expandParams<C>(t: ParamTable<C>, c: C): Param[] {
  const out: Param[] = [];
  const add = (s: ParamSpec<C>, layer?: number) => {
    if (s.when && !s.when(c)) return;
    out.push({
      name: layer === undefined ? s.name : s.name.replace('{i}', String(layer)),
      shape: s.shape(c), role: s.role, quantizable: s.quantizable ?? false, stack: s.stack, lora: s.lora, layer,
    });
  };
  for (const s of t.globals) add(s);
  const L = t.numLayers(c);
  for (let i = 0; i < L; i++) for (const s of t.layer) add(s, i);
  return out;
}

/** Name → shape of every tensor a checkpoint of this config must hold. */
export function paramShapes(params: readonly Param[]): Map<string, number[]> {
  return new Map(params.map((p) => [p.name, p.shape]));
}

/** Where a param lives in loaded weights: the role's tensor and, when stacked, its row range. */
export function slotOf(weights: { readonly layers: readonly object[] }, p: Param): { tensor: NativeTensor | undefined; rows?: [number, number] } {
  const owner = (p.layer === undefined ? weights : weights.layers[p.layer]) as Record<string, NativeTensor | undefined>;
  const tensor = owner[p.role];
  if (!p.stack) return { tensor };
  const n = p.shape[0];
  return { tensor, rows: [p.stack.index * n, (p.stack.index + 1) * n] };
}

/** One LoRA module of a layer: the linears it trains (one per stacked group) and its features. */
export interface LoraModuleLayout {
  name: string;
  /** The target of each group, in row order. */
  targets: string[];
  inFeatures: number;
  /** Per group. */
  outFeatures: number;
}

/** What a LoRA adapter needs to know of a family: its modules per layer and PEFT's module paths. */
export interface LoraLayout {
  numLayers: number;
  modules: LoraModuleLayout[];
  /** Every LoRA target the family has, in table order (what 'all-linear' means). */
  targets: string[];
  /** HF module path of a target in a layer, under the base model (`decoder.layers.0.self_attn.q_proj`). */
  modulePath(layer: number, target: string): string;
}

/** The LoRA layout of a family for one config, read from its parameter table. */
export function loraLayout<C>(t: ParamTable<C>, c: C): LoraLayout {
  const numLayers = t.numLayers(c);
  const modules: LoraModuleLayout[] = [];
  const targets: string[] = [];
  const path = new Map<string, string>();
  for (const s of t.layer) {
    if (!s.lora || (s.when && !s.when(c))) continue;
    const [out, inp] = s.shape(c);
    let m = modules.find((x) => x.name === s.lora!.module);
    if (!m) modules.push((m = { name: s.lora.module, targets: [], inFeatures: inp, outFeatures: out }));
    m.targets[s.stack?.index ?? 0] = s.lora.target;
    path.set(s.lora.target, s.name.replace(/\.weight$/, ''));
  }
  // Targets in the order a reader expects them (each module's groups in row order).
  for (const m of modules) targets.push(...m.targets);
  return {
    numLayers, modules, targets,
    modulePath: (layer, target) => {
      const p = path.get(target);
      if (!p) throw new Error(`no LoRA target ${target}`);
      return p.replace('{i}', String(layer));
    },
  };
}
