// Planted bugs the CUDA emulator must catch (cuda/kernels/test/planted_bugs.cc, built here with
// g++ + AddressSanitizer/UBSan against cuda/emu): a missing barrier (wrong results from
// NaN-poisoned shared memory under forward, reversed and shuffled order, while the same kernel
// with the barrier is right), a divergent __syncthreads (EmuError naming both lines) and an
// out-of-bounds store in a ragged tail (ASan: heap-buffer-overflow naming the kernel).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const cuda = join(root, 'cuda');
const out = join(cuda, 'build', 'planted');
const bin = join(out, 'planted_bugs_asan');
const cxx = process.env.CXX ?? 'g++';
const haveCxx = spawnSync(cxx, ['--version']).status === 0;

describe.skipIf(!haveCxx)('emulator catches planted bugs (ASan build)', () => {
  beforeAll(() => {
    mkdirSync(out, { recursive: true });
    const t0 = performance.now();
    const r = spawnSync(cxx, ['-std=c++17', '-O1', '-g', '-pthread', '-fsanitize=address,undefined', '-fno-omit-frame-pointer',
      `-I${cuda}`, join(cuda, 'emu', 'emu.cc'), join(cuda, 'kernels', 'test', 'planted_bugs.cc'), '-o', bin], { encoding: 'utf8' });
    console.log(`[planted] built ${bin} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(bin)).toBe(true);
  });
  const run = (what: string) => {
    const r = spawnSync(bin, [what], {
      encoding: 'utf8',
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0:detect_stack_use_after_return=1', UBSAN_OPTIONS: 'print_stacktrace=1' },
      timeout: 120_000,
    });
    const text = `${r.stdout}\n${r.stderr}`;
    for (const l of r.stdout.split('\n').filter(Boolean)) console.log(`[planted ${what}] ${l}`);
    return { status: r.status, text };
  };

  it('a missing barrier gives wrong results under forward, reversed and shuffled order', () => {
    const r = run('barrier');
    expect(r.status, r.text).toBe(0);
    expect(r.text.match(/^PASS missing barrier/gm)?.length).toBe(3);
  });

  it('a divergent __syncthreads is an error naming both barriers', () => {
    const r = run('divergent');
    expect(r.status, r.text).toBe(0);
    expect(r.text).toMatch(/divergent __syncthreads\(\).*planted_bugs\.cc:52.*planted_bugs\.cc:50/);
  });

  it('an out-of-bounds store in a ragged tail is reported by ASan', () => {
    const r = run('oob');
    expect(r.status).not.toBe(0);
    expect(r.text).toMatch(/heap-buffer-overflow/);
    expect(r.text).toMatch(/relu_unguarded/);
    console.log(`[planted oob] ${r.text.split('\n').find((l) => l.includes('ERROR: AddressSanitizer'))}`);
  });
});

describe.skipIf(haveCxx)('emulator planted bugs', () => {
  it('needs a host C++ compiler', () => {
    console.log(`[planted] skipped: ${cxx} not found`);
    expect(haveCxx).toBe(false);
  });
});
