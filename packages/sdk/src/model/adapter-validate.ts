// Checks a PEFT adapter folder before anything is allocated for it. The adapter is untrusted input:
// a 0.5 kB adapter_config.json saying r: 65536 made loading allocate 10 GB before the shape check,
// and all-NaN, 1e30 or lora_alpha: 1e308 adapters loaded and generated plausible-looking text.
// Here the numbers of adapter_config.json are checked against the tensor shapes in the safetensors
// header (which the file's own size backs), then every value is read once and checked, one tensor at
// a time, so memory stays within one tensor of the file.
import { join } from 'node:path';

import { toF32 } from '../io/dtype.js';
import { isLoraError, LoraError } from '../io/errors.js';
import { readJsonFile } from '../io/safe-file.js';
import { SafetensorsFile } from '../io/safetensors-reader.js';

const CONFIG_FILE = 'adapter_config.json';
const WEIGHTS_FILE = 'adapter_model.safetensors';
/** Most an adapter_config.json may weigh: PEFT writes ~1 kB. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Largest magnitude accepted for a LoRA weight, for the scale, and for the bound scale·r·max|A|·max|B|
 * on any entry of the weight delta: f16's largest value. Trained adapters sit orders of magnitude
 * below (|A|, |B| < 1, scale 0.5-4, delta entries < 10); a delta past it overflows any half-precision
 * computation and swamps a base weight of ~0.1 in f32.
 */
export const MAX_ADAPTER_MAGNITUDE = 65504;

const LORA_KEY = /^(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$/;

/** Validates `dir` as a LoRA adapter; throws E_CONFIG / E_WEIGHTS_MISMATCH / E_NON_FINITE / file errors. */
export async function validateAdapterFolder(dir: string): Promise<void> {
  const configPath = join(dir, CONFIG_FILE);
  const json = await readJsonFile(configPath, 'E_CONFIG', MAX_CONFIG_BYTES).catch((err: unknown) => {
    if (isLoraError(err, 'E_FILE_NOT_FOUND')) throw new LoraError('E_FILE_NOT_FOUND', `${configPath}: no such file (is ${dir} a PEFT adapter folder?)`);
    throw err;
  });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new LoraError('E_CONFIG', `${configPath}: not a JSON object`);
  const cfg = json as Record<string, unknown>;
  const r = cfg.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > 65536) {
    throw new LoraError('E_CONFIG', `${configPath}: r must be a whole number from 1 to 65536, got ${shown(r)}`, { field: 'r' });
  }
  const alpha = cfg.lora_alpha;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) {
    throw new LoraError('E_CONFIG', `${configPath}: lora_alpha must be a positive finite number, got ${shown(alpha)}`, { field: 'lora_alpha' });
  }
  const scale = cfg.use_rslora === true ? alpha / Math.sqrt(r) : alpha / r;
  if (!(scale <= MAX_ADAPTER_MAGNITUDE)) {
    throw new LoraError('E_NON_FINITE', `${configPath}: lora_alpha ${alpha} with r ${r} gives a scale of ${scale}, which overflows in use (at most ${MAX_ADAPTER_MAGNITUDE})`, { field: 'lora_alpha' });
  }
  const dropout = cfg.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) {
    throw new LoraError('E_CONFIG', `${configPath}: lora_dropout must be a number in [0, 1), got ${shown(dropout)}`, { field: 'lora_dropout' });
  }

  const path = join(dir, WEIGHTS_FILE);
  await using file = await SafetensorsFile.open(path);
  const modules = checkShapes(file, r, path, configPath);
  checkTargetsPresent(cfg.target_modules, modules, path, configPath);
  for (const [module, keys] of modules) {
    const maxA = await maxMagnitude(file, keys.A, path);
    const maxB = await maxMagnitude(file, keys.B, path);
    const delta = scale * r * maxA * maxB;
    if (!(delta <= MAX_ADAPTER_MAGNITUDE)) {
      throw new LoraError('E_NON_FINITE', `${path}: ${module}'s weight delta may reach ${delta.toExponential(2)} (scale ${scale} x r ${r} x max|A| ${maxA} x max|B| ${maxB}), which overflows in use (at most ${MAX_ADAPTER_MAGNITUDE})`);
    }
  }
}

/** Pairs every lora_A with its lora_B and checks [r, in] / [out, r] against the config's r and r <= min(in, out). */
function checkShapes(file: SafetensorsFile, r: number, path: string, configPath: string): Map<string, { A: string; B: string }> {
  const modules = new Map<string, { A?: string; B?: string }>();
  for (const key of file.keys()) {
    const m = LORA_KEY.exec(key);
    if (!m) continue;
    const entry = modules.get(m[1]) ?? {};
    entry[m[2] as 'A' | 'B'] = key;
    modules.set(m[1], entry);
  }
  if (modules.size === 0) throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: holds no lora_A / lora_B tensors`);
  const pairs = new Map<string, { A: string; B: string }>();
  for (const [module, { A, B }] of modules) {
    if (!A || !B) throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: ${module} has lora_${A ? 'A' : 'B'} but no lora_${A ? 'B' : 'A'}`);
    const a = file.info(A).shape;
    const b = file.info(B).shape;
    if (a.length !== 2 || b.length !== 2) throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: ${module}'s lora_A [${a.join(', ')}] and lora_B [${b.join(', ')}] must both be matrices`);
    const [rA, inF] = a;
    const [outF, rB] = b;
    if (rA !== r || rB !== r) {
      throw new LoraError('E_WEIGHTS_MISMATCH', `${configPath} says r = ${r}, but ${module} has lora_A [${a.join(', ')}] and lora_B [${b.join(', ')}] (rank ${rA === rB ? rA : `${rA} / ${rB}`})`, { field: 'r' });
    }
    if (r > Math.min(inF, outF)) {
      throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: ${module} has rank ${r} above min(in ${inF}, out ${outF}): not a low-rank adapter`, { field: 'r' });
    }
    pairs.set(module, { A, B });
  }
  return pairs;
}

/** Every target the config names must have tensors in the file, so what is allocated for it is backed by data. */
function checkTargetsPresent(raw: unknown, modules: Map<string, unknown>, path: string, configPath: string): void {
  const targets = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : [];
  const names = [...modules.keys()].map((m) => m.slice(m.lastIndexOf('.') + 1));
  for (const t of targets) {
    // 'all-linear', regex strings and non-strings are left to readAdapterConfig's own refusal.
    if (typeof t !== 'string' || !/^\w+$/.test(t) || t === 'all-linear') continue;
    if (!names.includes(t)) throw new LoraError('E_WEIGHTS_MISMATCH', `${configPath} targets ${t}, but ${path} holds no ${t} tensors`);
  }
}

/** max |x| over a tensor, refusing NaN/Infinity and values past MAX_ADAPTER_MAGNITUDE with a count. */
async function maxMagnitude(file: SafetensorsFile, key: string, path: string): Promise<number> {
  const raw = await file.read(key);
  if (raw.dtype !== 'F32' && raw.dtype !== 'F16' && raw.dtype !== 'BF16' && raw.dtype !== 'F64') {
    throw new LoraError('E_DTYPE', `${path}: ${key} is ${raw.dtype}; LoRA weights are floating point (F32, F16, BF16)`);
  }
  const values = toF32(raw.dtype, raw.data); // f64 values past f32's range become Infinity and are refused
  let max = 0;
  let bad = 0;
  for (let i = 0; i < values.length; i++) {
    const v = Math.abs(values[i]);
    if (!(v <= MAX_ADAPTER_MAGNITUDE)) bad++;
    else if (v > max) max = v;
  }
  if (bad > 0) {
    throw new LoraError('E_NON_FINITE', `${path}: ${key} has ${bad} of ${values.length} values that are NaN, infinite or beyond ±${MAX_ADAPTER_MAGNITUDE}; refusing an adapter that would overflow`);
  }
  return max;
}

function shown(v: unknown): string {
  return typeof v === 'number' ? String(v) : v === undefined ? 'nothing' : typeof v;
}
