// The emu op matrix (emu-ops.test.ts) and the serving ops' own tables (lora-segments,
// attention-ragged: every backend, bad input included) once more, in an AddressSanitizer + UBSan
// build of the addon (LORA_SANITIZE=1, built into packages/core-native/build-asan unless
// LORA_NATIVE_ASAN_PATH names one), in a child process with the sanitizer runtimes preloaded into
// node and shuffled thread order. Any ASan/UBSan report or failed case fails this test.
// LORA_TEST_ASAN=0 skips it.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { asanAddonPath as addonPath, asanSkipReason, buildAsanAddon, runUnderAsan } from './asan-build.js';

const skip = asanSkipReason !== '' || process.env.LORA_EMU_CHILD === '1';

describe.skipIf(skip)('emu op matrix under ASan + UBSan', () => {
  it('builds the sanitizer addon (when missing) and passes every case with no report', () => {
    const b = buildAsanAddon();
    console.log(`[emu asan] addon build (incremental when present): ${b.seconds.toFixed(0)} s, exit ${b.status}`);
    expect(b.status, b.log).toBe(0);
    expect(existsSync(addonPath)).toBe(true);
    const { status, out, seconds } = runUnderAsan(
      ['test/emu-ops.test.ts', 'test/lora-segments.test.ts', 'test/attention-ragged.test.ts'],
      { LORA_EMU_ORDER: 'shuffled', LORA_EMU_SEED: '13', LORA_EMU_CHILD: '1' },
      900_000,
    );
    const ok = out.split('\n').filter((l) => l.includes('[emu shuffled] ok')).length;
    console.log(`[emu asan] op matrix under ASan+UBSan, shuffled: exit ${status}, ${ok} ok cases, ${seconds.toFixed(1)} s`);
    expect(out).not.toMatch(/ERROR: AddressSanitizer|runtime error:/);
    expect(status, out.slice(-4000)).toBe(0);
    expect(ok).toBeGreaterThan(40);
  }, 1_800_000);  // the sanitizer build (~20 min on 2 busy cores) may run first, or in the other suite
});

describe.skipIf(!skip || process.env.LORA_EMU_CHILD === '1')('emu op matrix under ASan + UBSan', () => {
  it('is skipped', () => {
    console.log(`[emu asan] skipped: ${asanSkipReason}`);
    expect(skip).toBe(true);
  });
});
