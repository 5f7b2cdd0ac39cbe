// The AddressSanitizer + UBSan build of the addon that the sanitizer suites load (LORA_SANITIZE=1,
// built into packages/core-native/build-asan unless LORA_NATIVE_ASAN_PATH names one), and the
// environment a child node needs to run it. Builds hold a file lock (util-linux flock when
// present), so suites running in parallel never build the same folder at once.
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
export const root = join(pkg, '..', '..');
export const asanAddonPath = process.env.LORA_NATIVE_ASAN_PATH ?? join(pkg, 'build-asan', 'Release', 'lora_native.node');

const cxx = process.env.CXX ?? 'g++';
const lib = (name: string) => spawnSync(cxx, [`-print-file-name=${name}`], { encoding: 'utf8' }).stdout?.trim() ?? '';
const asan = lib('libasan.so'), ubsan = lib('libubsan.so');

/** Why the sanitizer suites cannot run here, or '' when they can. */
export const asanSkipReason =
  process.env.LORA_TEST_ASAN === '0' ? 'LORA_TEST_ASAN=0' : !asan.startsWith('/') || !ubsan.startsWith('/') ? `no sanitizer runtime found with ${cxx}` : '';

/** Builds the sanitizer addon (incrementally when present); returns the exit status, seconds and log tail. */
export function buildAsanAddon(): { status: number | null; seconds: number; log: string } {
  if (process.env.LORA_NATIVE_ASAN_PATH) return { status: 0, seconds: 0, log: 'LORA_NATIVE_ASAN_PATH given' };
  const t0 = performance.now();
  const build = [join(pkg, 'scripts', 'build-native.js')];
  const hasFlock = spawnSync('flock', ['--version']).status === 0;
  const [cmd, args] = hasFlock ? ['flock', [join(tmpdir(), 'lora-build-asan.lock'), process.execPath, ...build]] : [process.execPath, build];
  const b = spawnSync(cmd, args as string[], {
    env: { ...process.env, LORA_SANITIZE: '1', LORA_CUDA: 'off', LORA_BUILD_DIR: 'build-asan', CMAKE_BUILD_PARALLEL_LEVEL: '2' },
    encoding: 'utf8',
    timeout: 1_500_000,
  });
  return { status: b.status, seconds: (performance.now() - t0) / 1000, log: `${b.stdout}\n${b.stderr}`.slice(-4000) };
}

/** Environment of a child node process that loads the sanitizer addon. */
export function asanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    LD_PRELOAD: `${asan} ${ubsan}`,
    ASAN_OPTIONS: 'detect_leaks=0:verify_asan_link_order=0:halt_on_error=1',
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
    LORA_NATIVE_PATH: asanAddonPath,
    ...extra,
  };
}

/** Runs core-native test files with vitest in a child under the sanitizer build (asanEnv + extra); stdout and stderr joined. */
export function runUnderAsan(files: string[], extra: Record<string, string>, timeoutMs: number): { status: number | null; out: string; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--project', 'core-native', ...files], {
    cwd: root,
    env: asanEnv(extra),
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}`, seconds: (performance.now() - t0) / 1000 };
}
