// `lora bench kernels`: runs the repository's kernel benchmark script (bench/kernels/run.mjs),
// which measures the machine's peak and the kernels against it. It lives in the repository, not in
// the published package, so this says where to find it when it is absent.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Subcommand } from '../command.js';
import { parseFlags, type CommandSpec } from '../flags.js';

const KERNELS_SPEC: CommandSpec = {
  command: 'lora bench kernels',
  synopsis: 'lora bench kernels [--reps N] [--quick]',
  description: 'Measures this machine\'s bf16/int8 peak, then times the matmul (every base format), fused LoRA and\n' +
    'attention kernels against it (and oneDNN when present); writes bench/results/kernels-<date>.json.\n' +
    'Runs from a clone of the repository (bench/kernels/run.mjs).',
  flags: [
    { name: 'reps', kind: 'int', min: 1, default: 3, help: 'timed repetitions per shape (the median is reported)' },
    { name: 'quick', kind: 'boolean', help: 'one repetition, 1024 tokens, the opt-350m shapes and r=8 only' },
  ],
  exclusive: [['reps', 'quick']],
};

export const kernelsSubcommand: Subcommand = { name: 'kernels', summary: 'kernel benchmarks against the measured peak', spec: KERNELS_SPEC };

export async function runKernelBenchCli(argv: string[]): Promise<number> {
  const { values, given } = parseFlags(KERNELS_SPEC, argv);
  const args = values.quick ? ['--quick'] : given.has('reps') ? ['--reps', String(values.reps)] : [];
  const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
  const script = join(repo, 'bench', 'kernels', 'run.mjs');
  if (!existsSync(script)) {
    process.stderr.write(`lora bench kernels: ${script} not found; the kernel benchmarks run from a clone of the lora repository\n`);
    return 1;
  }
  const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit', cwd: repo });
  return r.status ?? 1;
}
