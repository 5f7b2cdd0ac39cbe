// `lora bench kernels`: runs the repository's kernel benchmark script (bench/kernels/run.mjs),
// which measures the machine's peak and the kernels against it. It lives in the repository, not in
// the published package, so this says where to find it when it is absent.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export async function runKernelBenchCli(argv: string[]): Promise<number> {
  const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
  const script = join(repo, 'bench', 'kernels', 'run.mjs');
  if (!existsSync(script)) {
    process.stderr.write(`lora bench kernels: ${script} not found; the kernel benchmarks run from a clone of the lora repository\n`);
    return 1;
  }
  const r = spawnSync(process.execPath, [script, ...argv], { stdio: 'inherit', cwd: repo });
  return r.status ?? 1;
}
