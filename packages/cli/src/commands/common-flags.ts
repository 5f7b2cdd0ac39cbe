// Flags several commands share, declared once so that their names, user-facing values and
// defaults cannot drift apart (the defaults come from the SDK's TRAINING_DEFAULTS).
import { ALL_LINEAR, LORA_TARGETS, TRAINING_DEFAULTS } from '@lora/sdk';

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

/**
 * LoRA target names of the families the SDK loads (OPT: q/k/v/out_proj, fc1, fc2; Llama-shaped:
 * q/k/v/o_proj, gate/up/down_proj) and PEFT's `all-linear`. The flag accepts any of them (with a
 * did-you-mean for typos); the loaded model then refuses a name it does not have, listing its own.
 */
export const TARGET_CHOICES = [...new Set([...LORA_TARGETS, 'o_proj', 'gate_proj', 'up_proj', 'down_proj', ALL_LINEAR])] as const;

/** `all-linear` wins over any other name given with it; the model expands it to its family's linears. */
export function expandTargets(targets: readonly string[]): string[] {
  return targets.includes(ALL_LINEAR) ? [ALL_LINEAR] : [...new Set(targets)];
}

export const modelFlag = (): FlagSpec => ({ name: 'model', kind: 'string', metavar: 'DIR|ID', help: 'Hugging Face model folder or hub id (e.g. facebook/opt-350m)', aliases: ['model_name_or_path'] });
export const dataFlag = (): FlagSpec => ({
  name: 'data', kind: 'string', metavar: 'FILE|ID', help: 'records in JSON, JSONL or Parquet: Alpaca (instruction, input, output), chat messages [{role, content}] or ShareGPT conversations [{from, value}]; or a hub dataset id',
  aliases: ['dataset', 'train_file'],
});
export const jsonFlag = (help = 'print JSON instead of the table'): FlagSpec => ({ name: 'json', kind: 'boolean', help });
