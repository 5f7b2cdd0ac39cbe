// Strict flags as a user meets them, through the built CLI (dist/main.js): did-you-mean for unknown
// flags, commands and enum values, range checks with plain messages (never Node's "argument is
// ambiguous" or a stack trace), exclusive flags, Hugging Face / PEFT spellings, --version, and
// per-command and per-subcommand help that lists the real flags and defaults.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ensureTinyModel, LORA_TARGETS, TRAINING_DEFAULTS } from '@lora/sdk';

import { closest, parseFlags } from '../dist/flags.js';
import { expandTargets } from '../dist/commands/common-flags.js';
import { TRAIN_SPEC } from '../dist/commands/train-flags.js';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'main.js');
const lora = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** A user mistake: exit 2, the message on stderr, no stack trace and no Node parser wording. */
function refused(r: ReturnType<typeof lora>, message: RegExp) {
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toMatch(/ambiguous|ERR_PARSE_ARGS/);
}

const base = ['--model', 'm', '--data', 'd.json', '--out', 'o'];

describe('lora flags are validated before anything runs', () => {
  it('an unknown enum value is refused with the closest value', () => {
    refused(lora('train', ...base, '--schedule', 'cosin'), /--schedule 'cosin' is not one of linear, cosine, constant; did you mean 'cosine'\?/);
    refused(lora('train', ...base, '--dtype', 'fp17'), /did you mean 'f16'\?/);
    refused(lora('bench', '--sweep', 'quan'), /did you mean 'quant'\?/);
  });

  it('unknown flags, commands and subcommands get a did-you-mean', () => {
    refused(lora('train', '--lora_alph', '3'), /unknown flag '--lora_alph'; did you mean '--lora_alpha'\?/);
    refused(lora('generate', '--max-new-token', '3'), /did you mean '--max-new-tokens'\?/);
    refused(lora('eval', 'scor'), /unknown subcommand 'scor' \(available: score, compare\); did you mean 'score'\?/);
    const r = lora('trian');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'trian' \(did you mean 'train'\?\)/);
  });

  it('lora bench kernels refuses a flag it does not have instead of running the benchmark', () => {
    const r = lora('bench', 'kernels', '--bogus');
    refused(r, /lora bench kernels: unknown flag '--bogus'/);
    expect(r.stdout).toBe('');
  });

  it('--steps with --epochs, and other exclusive pairs, are refused', () => {
    refused(lora('train', ...base, '--steps', '10', '--epochs', '2'), /--steps and --epochs cannot be given together/);
    refused(lora('train', ...base, '--max_steps', '10', '--num_train_epochs', '2'), /--steps and --epochs cannot be given together/);
    refused(lora('generate', '--model', 'm', '--prompt', 'a', '--instruction', 'b'), /--prompt and --instruction cannot be given together/);
  });

  it('numbers are range-checked with plain messages, negative values included', () => {
    refused(lora('train', ...base, '--split', '1.5'), /--split must be <= 1, got 1.5/);
    refused(lora('train', ...base, '--lr', '-1'), /--lr must be > 0, got -1/);
    refused(lora('train', ...base, '--learning_rate', '0'), /--lr must be > 0, got 0/);
    refused(lora('train', ...base, '--r', '2.5'), /--r must be an integer, got '2.5'/);
    refused(lora('train', ...base, '--batch', 'four'), /--batch must be an integer, got 'four'/);
    refused(lora('eval', '--model', 'm', '--top-p', '1.5'), /--top-p must be <= 1/);
    refused(lora('train', ...base, '--lr'), /--lr needs a value/);
    refused(lora('generate', '--model', 'm', '--prompt', '-x'), /--prompt needs a value \(a value that starts with '-' is written --prompt=-x\)/);
    refused(lora('train', ...base, '--lr', '1e-4', '--lr', '2e-4'), /--lr given twice/);
  });

  it('a missing file is named without a stack trace', () => {
    const r = lora('eval', 'score', '--input', '/nonexistent/preds.jsonl');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nonexistent/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('Hugging Face / PEFT spellings and user-facing names', () => {
  it('map onto the flags lora train reads', () => {
    const p = parseFlags(TRAIN_SPEC, [
      '--model_name_or_path', 'm', '--dataset', 'd', '--output_dir', 'o', '--learning_rate', '3e-4', '--lora_alpha', '16', '--lora_dropout', '0.05',
      '--target_modules', 'q_proj,v_proj', '--per_device_train_batch_size', '2', '--gradient_accumulation_steps', '8', '--max_steps', '50',
      '--logging_steps', '5', '--save_steps', '25', '--warmup_ratio', '0.1', '--lr_scheduler_type', 'cosine', '--max_seq_length', '128', '--bf16',
    ]);
    expect(p.values).toMatchObject({
      model: 'm', data: 'd', out: 'o', lr: 3e-4, alpha: 16, dropout: 0.05, targets: ['q_proj', 'v_proj'], batch: 2, 'grad-accum': 8, steps: 50,
      'logging-steps': 5, 'save-steps': 25, 'warmup-ratio': 0.1, schedule: 'cosine', seq: 128, dtype: 'bf16',
    });
    expect(parseFlags(TRAIN_SPEC, ['--num_train_epochs', '3']).values.epochs).toBe(3);
    // Any flag with underscores, and --flag=value.
    expect(parseFlags(TRAIN_SPEC, ['--grad_accum=4', '--response_only']).values).toMatchObject({ 'grad-accum': 4, 'response-only': true });
  });

  it('accepts fp16 / float16 / bfloat16 for the base format and never lists internal tensor dtypes', () => {
    expect(parseFlags(TRAIN_SPEC, ['--dtype', 'fp16']).values.dtype).toBe('f16');
    expect(parseFlags(TRAIN_SPEC, ['--fp16']).values.dtype).toBe('f16');
    expect(parseFlags(TRAIN_SPEC, ['--dtype', 'bfloat16']).values.dtype).toBe('bf16');
    expect(parseFlags(TRAIN_SPEC, ['--dtype', 'INT8']).values.dtype).toBe('int8');
    const r = lora('train', ...base, '--dtype', 'i32');
    refused(r, /is not one of f32, bf16, f16, int8, int4, nf4/);
    expect(r.stderr).not.toMatch(/\bi8\b|\bu8\b/);
  });

  it('--targets takes every family\'s linear names and all-linear (which the model expands)', () => {
    const targets = parseFlags(TRAIN_SPEC, ['--targets', 'q_proj,all-linear']).values.targets as string[];
    expect(expandTargets(targets)).toEqual(['all-linear']);
    expect(parseFlags(TRAIN_SPEC, ['--target_modules', 'q_proj,o_proj,gate_proj,up_proj,down_proj']).values.targets).toEqual(['q_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    refused(lora('train', ...base, '--targets', 'q_proj,v_prj'), /unknown target 'v_prj' in --targets \(expected q_proj, .*, all-linear\); did you mean 'v_proj'\?/);
  });

  it('defaults come from the SDK\'s TRAINING_DEFAULTS', () => {
    const v = parseFlags(TRAIN_SPEC, []).values;
    expect(v).toMatchObject({ lr: TRAINING_DEFAULTS.lr, r: TRAINING_DEFAULTS.r, split: TRAINING_DEFAULTS.split, seed: TRAINING_DEFAULTS.seed, seq: TRAINING_DEFAULTS.seq });
    expect(v.alpha).toBeUndefined(); // 4 × r, resolved once r is known
  });

  it('closest() only suggests near words', () => {
    expect(closest('cosin', ['linear', 'cosine'])).toBe('cosine');
    expect(closest('xyz', ['linear', 'cosine'])).toBeUndefined();
  });
});

describe('--version and help', () => {
  it('lora --version prints the package name and version', () => {
    const pkg = JSON.parse(readFileSync(join(here, '..', 'package.json'), 'utf8'));
    const r = lora('--version');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${pkg.name} ${pkg.version}`);
    expect(pkg.name).toBe('@lora/cli');
    expect(pkg.bin).toEqual({ lora: './bin/lora.js' });
  });

  it('lora help train and lora train --help print train\'s flags with the real defaults', () => {
    const a = lora('help', 'train');
    const b = lora('train', '--help');
    expect(a.status).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).toMatch(/^Usage: lora train /);
    const flat = a.stdout.replace(/\n {3,}/g, ' '); // help wraps each flag's text under its column
    expect(flat).toMatch(/--alpha X +LoRA alpha.*\(default: 4 × r; also --lora_alpha\)/);
    expect(flat).toMatch(/--lr X .*default: 2e-4/);
    expect(flat).toMatch(/--split X .*default: 0\.5/);
    expect(flat).not.toMatch(/alpha 32/);
  });

  it.each([
    [['eval', 'score'], /^Usage: lora eval score --input FILE\.jsonl/, /--tokenize 13a\|intl\|char\|none/],
    [['eval', 'compare'], /^Usage: lora eval compare PATH\.\.\./, /--html FILE/],
    [['bench', 'kernels'], /^Usage: lora bench kernels/, /--reps N .*default: 3[\s\S]*--quick/],
  ])('per-subcommand help: %j', (words, usage, flag) => {
    for (const r of [lora('help', ...words), lora(...words, '--help')]) {
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(usage);
      expect(r.stdout.replace(/\n {3,}/g, ' ')).toMatch(flag);
    }
  });

  it('a command with subcommands lists them under its own flags', () => {
    const r = lora('help', 'bench');
    expect(r.stdout).toMatch(/Subcommands:\n {2}lora bench kernels/);
    expect(r.stdout.replace(/\n {3,}/g, ' ')).toMatch(/--lr X .*0\.001 embedded, else 2e-4/);
  });
});

describe('lora train with Hugging Face spellings', () => {
  it('trains and writes an adapter with all-linear targets and alpha = 4 × r', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lora-cli-flags-'));
    const records = Array.from({ length: 16 }, (_, i) => ({ instruction: `Add ${i} and 1.`, input: '', output: `${i + 1}` }));
    const data = join(dir, 'data.json');
    writeFileSync(data, JSON.stringify(records));
    const { dir: model } = await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 1, heads: 2, embedDim: 16, merges: 0, maxPositions: 128, warmupRounds: 0 });
    const out = join(dir, 'out');
    const r = lora('train', '--model_name_or_path', model, '--dataset', data, '--output_dir', out, '--lora_r', '2', '--target_modules', 'all-linear',
      '--learning_rate', '1e-3', '--max_steps', '2', '--per_device_train_batch_size', '2', '--max_seq_length', '32', '--lr_scheduler_type', 'cosine',
      '--device', 'cpu', '--save_steps', '10');
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.status).toBe(0);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg.r).toBe(2);
    expect(cfg.lora_alpha).toBe(8);
    expect([...cfg.target_modules].sort()).toEqual([...LORA_TARGETS].sort());
  }, 120_000);
});
