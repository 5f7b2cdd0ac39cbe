// `lora train` as a user drives it (issue 16's first list, replayed through the built CLI on a tiny
// generated OPT): Ctrl-C finishes the step, checkpoints and exits 130, and --resume reaches the same
// adapter bits as an uninterrupted run; a second Ctrl-C exits at once; the run is recorded in OUT the
// HF way; --out that holds another run, is a file, or is locked is refused before the model loads;
// --resume with nothing to resume, --seq past the model's positions, --lr 1e39 and --steps with
// --epochs are refused up front; the data summary names truncation and dropped records.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import { ensureTinyModel, syntheticCodeInstructions } from '@lora/sdk';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-train-cli-'));
const data = join(dir, 'data.jsonl');
let model = '';

beforeAll(async () => {
  const records = syntheticCodeInstructions(64, 1);
  writeFileSync(data, records.map((r) => JSON.stringify(r)).join('\n'));
  model = (await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 2, heads: 4, embedDim: 16, merges: 0, maxPositions: 256, warmupRounds: 0 })).dir;
});

const base = (out: string, ...extra: string[]) => ['train', '--model', model, '--data', data, '--out', out, '--batch', '4', '--seq', '128', '--split', '0.75', ...extra];

function lora(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const logLines = (out: string): number => {
  try {
    return readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
};

/** Starts `lora train`, sends SIGINT `times` times once `afterSteps` steps are logged; resolves on exit. */
function interrupted(args: string[], out: string, afterSteps: number, times: number): Promise<{ status: number | null; stderr: string; sentAtLine: number }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, ...args]);
    let stderr = '';
    let sentAtLine = -1;
    p.stderr.on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      const n = logLines(out);
      if (n >= afterSteps && sentAtLine < 0) {
        clearInterval(poll);
        p.kill('SIGINT');
        // Counted after the signal is sent: steps logged while this process waited for a CPU count as before it.
        sentAtLine = logLines(out);
        if (times > 1) setTimeout(() => p.kill('SIGINT'), 5);
      }
    }, 5);
    p.on('close', (status) => {
      clearInterval(poll);
      resolve({ status, stderr, sentAtLine });
    });
  });
}

describe('lora train: Ctrl-C and --resume', () => {
  it('stops after the current step with checkpoint-<step>, exit 130, and resumes to the uninterrupted adapter bits', async () => {
    const steps = ['--steps', '150', '--save-steps', '1000'];
    const full = join(dir, 'full');
    expect(lora(base(full, ...steps)).status).toBe(0);

    const out = join(dir, 'sigint');
    const r = await interrupted(base(out, ...steps), out, 5, 1);
    expect(r.status).toBe(130);
    const stopped = Number(/stopped at step (\d+)/.exec(r.stderr)?.[1]);
    // The signal lands while a step runs; that step finishes (its line is logged), then the run stops.
    expect(stopped).toBeGreaterThanOrEqual(r.sentAtLine);
    expect(stopped).toBeLessThanOrEqual(r.sentAtLine + 2);
    expect(stopped).toBeLessThan(150);
    expect(existsSync(join(out, 'checkpoints', `checkpoint-${stopped}`, 'adapter_model.safetensors'))).toBe(true);
    expect(r.stderr).toContain('--resume');
    expect(existsSync(join(out, '.lora-train.lock'))).toBe(false);

    const resumed = lora(base(out, ...steps, '--resume'));
    expect(resumed.stderr).toContain(`resuming at step ${stopped}`);
    expect(resumed.status).toBe(0);
    expect(readFileSync(join(out, 'adapter_model.safetensors'))).toEqual(readFileSync(join(full, 'adapter_model.safetensors')));
    // The log holds each step once, 1..150, across the two sessions.
    const logged = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).step);
    expect(logged).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    // trainer_state.json carries the first session's log_history on: a logging entry every 10 steps, once each.
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    expect(state.global_step).toBe(150);
    expect(state.log_history.filter((h: { loss?: number }) => h.loss !== undefined).map((h: { step: number }) => h.step)).toEqual(Array.from({ length: 15 }, (_, i) => 10 * (i + 1)));
  });

  it('exits at once on a second Ctrl-C', async () => {
    const out = join(dir, 'twice');
    const r = await interrupted(base(out, '--steps', '2000', '--save-steps', '1000'), out, 3, 2);
    expect(r.status).toBe(130);
    expect(r.stderr).toContain('interrupted again, exiting now');
    expect(logLines(out)).toBeLessThan(2000);
    expect(existsSync(join(out, '.lora-train.lock'))).toBe(false);
  });

  it('refuses --resume with nothing to resume', () => {
    const r = lora(base(join(dir, 'nothing'), '--steps', '3', '--resume'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nothing to resume.*\[E_RESUME\]/);
  });
});

describe('lora train: the record in OUT', () => {
  it('writes training_args, trainer_log, train_results, HF trainer_state and the train metrics summary', () => {
    const out = join(dir, 'records');
    const r = lora(base(out, '--steps', '12', '--logging-steps', '4', '--eval-steps', '6', '--save-steps', '6'));
    expect(r.status).toBe(0);
    const args = JSON.parse(readFileSync(join(out, 'training_args.json'), 'utf8'));
    expect(args).toMatchObject({ data: { path: data, records: 64 }, split: 0.75, seed: 42, model, lr: 2e-4, max_steps: 12 });
    expect(args.data.sha256).toMatch(/^[0-9a-f]{64}$/);
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const stepLines = log.filter((l) => 'loss' in l);
    expect(stepLines).toHaveLength(12);
    for (const k of ['step', 'epoch', 'loss', 'smoothed_loss', 'lr', 'grad_norm', 'tokens_per_sec', 'elapsed', 'rss']) expect(stepLines[0]).toHaveProperty(k);
    expect(log.filter((l) => 'eval_loss' in l).map((l) => l.step)).toEqual([6, 12]);
    const results = JSON.parse(readFileSync(join(out, 'train_results.json'), 'utf8'));
    // train_loss is the run's mean loss, not the last step's.
    const mean = stepLines.reduce((a, l) => a + l.loss, 0) / 12;
    expect(results.train_loss).toBeCloseTo(mean, 12);
    for (const k of ['train_runtime', 'train_samples_per_second', 'train_tokens_per_second']) expect(results[k]).toBeGreaterThan(0);
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({ global_step: 12, max_steps: 12, logging_steps: 4, save_steps: 6, eval_steps: 6, train_batch_size: 4 });
    for (const k of ['log_history', 'best_metric', 'best_model_checkpoint', 'num_train_epochs', 'epoch']) expect(state).toHaveProperty(k);
    expect(state.log_history.filter((h: { loss?: number }) => h.loss !== undefined).map((h: { step: number }) => h.step)).toEqual([4, 8, 12]);
    expect(state.best_model_checkpoint).toMatch(/checkpoint-(6|12)$/);
    expect(r.stdout).toMatch(/\*\*\*\*\* train metrics \*\*\*\*\*\n {2}epoch +=/);
    const evalResults = JSON.parse(readFileSync(join(out, 'eval_results.json'), 'utf8'));
    expect(evalResults.eval_loss).toBe(log.filter((l) => 'eval_loss' in l).at(-1).eval_loss);
    expect(evalResults.perplexity).toBeCloseTo(Math.exp(evalResults.eval_loss), 10);
    expect(r.stdout).toMatch(/\*\*\*\*\* eval metrics \*\*\*\*\*\n {2}epoch +=[^\n]*\n {2}eval_loss/);
    expect(r.stderr).toMatch(/trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}/);
    // Off a TTY: plain progress lines (the first step, then every --progress-seconds, and the last) with epoch, smoothed loss, elapsed and ETA.
    expect(r.stderr).toMatch(/step 1\/12 +epoch 0\.\d+ +loss [\d.]+ \(smoothed [\d.]+\) .* elapsed, ETA \d\d:\d\d/);
    expect(r.stderr).toMatch(/step 12\/12 +epoch/);
    expect(r.stderr).toMatch(/data\.jsonl: 64 records; --split 0\.75 \(seed 42\) trains on 48 and holds out 16/);
    expect(r.stderr).toMatch(/data: 48 records → 48 training examples/);
    expect(r.stderr).toMatch(/model loaded in [\d.]+ s: [\d,]+ parameters, f32 on cpu/);
    expect(r.stderr).toMatch(/12 steps per epoch \(batch 4 × grad-accum 1\)/);
  });

  it('prints a data summary with truncation and drops records with no label left (--response-only, short --seq)', () => {
    const r = lora(['train', '--model', model, '--data', data, '--out', join(dir, 'summary'), '--seq', '40', '--response-only', '--steps', '2', '--split', '1']);
    // Every prompt is longer than 40 tokens: all labels are cut away, which used to end in "loss is NaN".
    expect(r.stderr).toMatch(/truncated at --seq 40: 64 of 64 \(100\.0 %\)/);
    expect(r.stderr).toMatch(/dropped 64 records with no label token left/);
    expect(r.stderr).toMatch(/no training example has a label token left at --seq 40 with --response-only \[E_DATA\]/);
    expect(r.status).toBe(1);
  });
});

describe('lora train: refused before the model loads', () => {
  it('--out holding another run, unless --overwrite-output-dir', () => {
    const out = join(dir, 'reuse');
    expect(lora(base(out, '--steps', '2')).status).toBe(0);
    const again = lora(base(out, '--steps', '2'));
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/holds another run .*--overwrite-output-dir.*\[E_OUTPUT_DIR\]/);
    const over = lora(base(out, '--steps', '3', '--save-steps', '1', '--overwrite-output-dir'));
    expect(over.status).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8')).global_step).toBe(3);
  });

  it('--out that is a file, or under a file', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    expect(lora(base(file, '--steps', '2')).stderr).toMatch(/is a file, not a folder.*\[E_OUTPUT_DIR\]/);
    expect(lora(base(join(file, 'sub'), '--steps', '2')).stderr).toMatch(/a file is in the way.*ENOTDIR.*\[E_OUTPUT_DIR\]/);
  });

  it('--out where writing is denied (EACCES), named with a code', () => {
    const ro = join(dir, 'read-only');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    chmodSync(dir, 0o755);
    // Root writes anywhere: as root, the CLI runs as nobody (it reads only its own code before this refusal).
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const r = spawnSync(process.execPath, [cli, ...base(join(ro, 'out'), '--steps', '2')], { encoding: 'utf8', ...user });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot create the output folder: permission denied \(EACCES\) \[E_OUTPUT_DIR\]/);
  });

  it('--out locked by a live run; a stale lock from a dead pid is taken over', () => {
    const out = join(dir, 'locked');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, '.lora-train.lock'), `${process.pid}\n`);
    const r = lora(base(out, '--steps', '2'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/another training run \(pid \d+\).*\[E_OUTPUT_LOCKED\]/);
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!;
    writeFileSync(join(out, '.lora-train.lock'), `${dead}\n`);
    expect(lora(base(out, '--steps', '2')).status).toBe(0);
  });

  it('--seq past the model positions, --lr 1e39, and --steps with --epochs', () => {
    const seq = lora(['train', '--model', model, '--data', data, '--out', join(dir, 'seq'), '--seq', '2048', '--steps', '2']);
    expect(seq.status).toBe(2);
    expect(seq.stderr).toContain("--seq 2048 exceeds the model's 256 positions");
    expect(existsSync(join(dir, 'seq', 'trainer_log.jsonl'))).toBe(false);
    const lr = lora(base(join(dir, 'lr'), '--steps', '2', '--lr', '1e39'));
    expect(lr.status).toBe(2);
    expect(lr.stderr).toMatch(/--lr 1e\+39 is outside f32's range/);
    const both = lora(base(join(dir, 'both'), '--steps', '2', '--epochs', '1'));
    expect(both.status).toBe(2);
  });
});
