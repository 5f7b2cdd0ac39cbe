// The emu op matrix (emu-ops.test.ts) once more, in an AddressSanitizer + UBSan build of the addon
// (LORA_SANITIZE=1, built into packages/core-native/build-asan unless LORA_NATIVE_ASAN_PATH names
// one), in a child process with the sanitizer runtimes preloaded into node and shuffled thread
// order. Any ASan/UBSan report or failed case fails this test. LORA_TEST_ASAN=0 skips it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(pkg, '..', '..');
const addonPath = process.env.LORA_NATIVE_ASAN_PATH ?? join(pkg, 'build-asan', 'Release', 'lora_native.node');
const cxx = process.env.CXX ?? 'g++';
const lib = (name: string) => spawnSync(cxx, [`-print-file-name=${name}`], { encoding: 'utf8' }).stdout?.trim() ?? '';
const asan = lib('libasan.so'), ubsan = lib('libubsan.so');
const skip = process.env.LORA_TEST_ASAN === '0' || !asan.startsWith('/') || !ubsan.startsWith('/') || process.env.LORA_EMU_CHILD === '1';

describe.skipIf(skip)('emu op matrix under ASan + UBSan', () => {
  it('builds the sanitizer addon (when missing) and passes every case with no report', () => {
    if (!process.env.LORA_NATIVE_ASAN_PATH) {
      const t0 = performance.now();
      const b = spawnSync(process.execPath, [join(pkg, 'scripts', 'build-native.js')], {
        env: { ...process.env, LORA_SANITIZE: '1', LORA_CUDA: 'off', LORA_BUILD_DIR: 'build-asan', CMAKE_BUILD_PARALLEL_LEVEL: '2' },
        encoding: 'utf8',
        timeout: 1_500_000,
      });
      console.log(`[emu asan] addon build (incremental when present): ${((performance.now() - t0) / 1000).toFixed(0)} s, exit ${b.status}`);
      expect(b.status, `${b.stdout}\n${b.stderr}`.slice(-4000)).toBe(0);
    }
    expect(existsSync(addonPath)).toBe(true);
    const t1 = performance.now();
    const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--project', 'core-native', 'test/emu-ops.test.ts'], {
      cwd: root,
      env: {
        ...process.env,
        LD_PRELOAD: `${asan} ${ubsan}`,
        ASAN_OPTIONS: 'detect_leaks=0:verify_asan_link_order=0:halt_on_error=1',
        UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
        LORA_NATIVE_PATH: addonPath,
        LORA_EMU_ORDER: 'shuffled',
        LORA_EMU_SEED: '13',
        LORA_EMU_CHILD: '1',
      },
      encoding: 'utf8',
      timeout: 900_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    const ok = out.split('\n').filter((l) => l.includes('[emu shuffled] ok')).length;
    console.log(`[emu asan] op matrix under ASan+UBSan, shuffled: exit ${r.status}, ${ok} ok cases, ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    expect(out).not.toMatch(/ERROR: AddressSanitizer|runtime error:/);
    expect(r.status, out.slice(-4000)).toBe(0);
    expect(ok).toBeGreaterThan(40);
  });
});

describe.skipIf(!skip || process.env.LORA_EMU_CHILD === '1')('emu op matrix under ASan + UBSan', () => {
  it('is skipped', () => {
    console.log(`[emu asan] skipped: ${process.env.LORA_TEST_ASAN === '0' ? 'LORA_TEST_ASAN=0' : `no sanitizer runtime found with ${cxx}`}`);
    expect(skip).toBe(true);
  });
});
