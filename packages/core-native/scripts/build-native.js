// Builds the addon with cmake-js. LORA_CUDA=auto|on|off picks the CUDA backend (auto: build it
// when nvcc is found). LORA_SANITIZE=1 builds with AddressSanitizer + UBSan (for emulator tests).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');

const cuda = (process.env.LORA_CUDA ?? 'auto').toLowerCase();
if (!['auto', 'on', 'off'].includes(cuda)) {
  console.error(`[lora] LORA_CUDA must be auto, on or off (got "${cuda}")`);
  process.exit(2);
}
const buildDir = process.env.LORA_BUILD_DIR ?? 'build';
const args = [cmakeJs, 'compile', '-O', buildDir, `--CDLORA_CUDA=${cuda}`];
if (process.env.LORA_SANITIZE === '1') args.push('--CDLORA_SANITIZE=ON');
if (process.env.LORA_CUDA_ARCHS) args.push(`--CDLORA_CUDA_ARCHS=${process.env.LORA_CUDA_ARCHS}`);
const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? '2';
const r = spawnSync(process.execPath, args, {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
});
process.exit(r.status ?? 1);
