// Flags several commands share, declared once so that their names, user-facing values and
// defaults cannot drift apart (the defaults come from the SDK's TRAINING_DEFAULTS).
import { LORA_TARGETS, TRAINING_DEFAULTS } from '@lora/sdk';

import type { FlagSpec } from '../flags.js';

/**
 * Base weight formats by their user-facing names. Other spellings people type (HF's fp16/bfloat16,
 * llama.cpp's q8 are not the same format and are not accepted) map onto them.
 */
export const BASE_FORMATS = ['f32', 'bf16', 'f16', 'int8', 'int4', 'nf4'] as const;
const FORMAT_SPELLINGS: Record<string, string> = {
  fp32: 'f32', float32: 'f32', float: 'f32', fp16: 'f16', float16: 'f16', half: 'f16', bfloat16: 'bf16',
  i8: 'int8', i4: 'int4', 'nf-4': 'nf4',
};

export const dtypeFlag = (help = 'base weight format: full, half or bf16 precision, or quantized (int8 per-row, int4 group-wise, NF4 as QLoRA)'): FlagSpec => ({
  name: 'dtype', kind: 'enum', choices: BASE_FORMATS, choiceAliases: FORMAT_SPELLINGS, default: 'f32', help,
  aliases: ['torch_dtype'], valueAliases: { bf16: 'bf16', fp16: 'f16' },
});

/** `ref` (scalar reference) and `emu` (CUDA kernels emulated on the CPU) are accepted but only for tests. */
export const deviceFlag = (): FlagSpec => ({
  name: 'device', kind: 'enum', choices: ['auto', 'cpu', 'cuda'], choiceAliases: { ref: 'ref', emu: 'emu', gpu: 'cuda' }, default: 'auto',
  help: 'where to compute: auto picks CUDA when a usable GPU is present, else the CPU',
});

export const seedFlag = (help = 'seed for the split, shuffling, LoRA init and dropout'): FlagSpec => ({
  name: 'seed', kind: 'int', min: 0, default: TRAINING_DEFAULTS.seed, help,
});

export const splitFlag = (help = 'fraction of the records used for training; the rest is held out for lora eval'): FlagSpec => ({
  name: 'split', kind: 'number', min: 0, max: 1, minExclusive: true, default: TRAINING_DEFAULTS.split, help,
});

/** Every LoRA target the OPT family has, plus PEFT's `all-linear`. */
export const TARGET_CHOICES = [...LORA_TARGETS, 'all-linear'] as const;

/** `all-linear` (PEFT's spelling) means every linear of the family that LoRA can target. */
export function expandTargets(targets: readonly string[]): string[] {
  return targets.includes('all-linear') ? [...LORA_TARGETS] : [...new Set(targets)];
}

export const modelFlag = (): FlagSpec => ({ name: 'model', kind: 'string', metavar: 'DIR|ID', help: 'Hugging Face model folder or hub id (e.g. facebook/opt-350m)', aliases: ['model_name_or_path'] });
export const dataFlag = (): FlagSpec => ({
  name: 'data', kind: 'string', metavar: 'FILE|ID', help: 'CodeAlpaca-style records (instruction, input, output) in JSON, JSONL or Parquet, or a hub dataset id',
  aliases: ['dataset', 'train_file'],
});
export const jsonFlag = (help = 'print JSON instead of the table'): FlagSpec => ({ name: 'json', kind: 'boolean', help });
