// Compile-only check of every CUDA kernel for sm_80 / sm_89 / sm_90 (cuda/compile-check.sh: nvcc
// with -Xptxas -v; the register / shared-memory report is kept in cuda/build/ptxas-kernels.txt).
// Skips with the reason when nvcc is not installed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const script = join(root, 'cuda', 'compile-check.sh');
const nvcc = [process.env.NVCC, spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).stdout.trim(), '/usr/local/cuda/bin/nvcc', '/usr/local/bin/nvcc']
  .find((p) => p && existsSync(p));

describe('cuda kernels compile for sm_80/89/90', () => {
  it.skipIf(!nvcc)('compiles with no spills and keeps the ptxas report', () => {
    const t0 = performance.now();
    const r = spawnSync('bash', [script], { encoding: 'utf8', env: { ...process.env, NVCC: nvcc }, timeout: 1_200_000 });
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    console.log(`[cuda compile] ${secs} s\n${r.stdout}`);
    expect(r.status, `${r.stdout}\n${r.stderr}`.slice(-4000)).toBe(0);
    const report = readFileSync(join(root, 'cuda', 'build', 'ptxas-kernels.txt'), 'utf8');
    for (const arch of ['sm_80', 'sm_89', 'sm_90']) {
      expect(report).toMatch(new RegExp(`Compiling entry function '_ZN4lora4kgpu16gemm_bf16_kernel[^']*' for '${arch}'`));
      expect(report).toMatch(new RegExp(`Compiling entry function '_ZN4lora4kgpu15attn_fwd_kernel[^']*' for '${arch}'`));
    }
    const spills = [...report.matchAll(/(\d+) bytes spill stores, (\d+) bytes spill loads/g)].filter((m) => m[1] !== '0' || m[2] !== '0');
    expect(spills.length).toBe(0);
  });
  it.skipIf(!!nvcc)('is skipped without nvcc', () => {
    console.log('[cuda compile] skipped: nvcc not found (PATH, /usr/local/cuda/bin, /usr/local/bin)');
    expect(nvcc).toBeUndefined();
  });
});
