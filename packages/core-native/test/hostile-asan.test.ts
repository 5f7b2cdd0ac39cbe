// hostile-args.test.ts once more, in the AddressSanitizer + UBSan build (see asan-build.ts), in a
// child process: a getter that disposes, detaches, shrinks or grows while a binding reads its
// arguments must leave no ASan/UBSan report (they were a SIGSEGV, a heap-buffer-overflow and
// heap-use-after-frees before). LORA_TEST_ASAN=0 skips it.
import { existsSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { asanAddonPath, asanSkipReason, buildAsanAddon, runUnderAsan } from './asan-build.js';

const child = process.env.LORA_ASAN_CHILD === '1';

describe.skipIf(asanSkipReason !== '' || child)('hostile arguments under ASan + UBSan', () => {
  it('builds the sanitizer addon (when missing) and passes every hostile case with no report', () => {
    const b = buildAsanAddon();
    console.log(`[hostile asan] addon build (incremental when present): ${b.seconds.toFixed(0)} s, exit ${b.status}`);
    expect(b.status, b.log).toBe(0);
    expect(existsSync(asanAddonPath)).toBe(true);
    const { status, out, seconds } = runUnderAsan(['test/hostile-args.test.ts'], { LORA_ASAN_CHILD: '1' }, 600_000);
    const calls = out.match(/\[hostile\] (\d+) calls/)?.[1];
    console.log(`[hostile asan] hostile-args under ASan+UBSan: exit ${status}, ${calls} sweep calls, ${seconds.toFixed(1)} s`);
    expect(out).not.toMatch(/ERROR: AddressSanitizer|runtime error:/);
    expect(status, out.slice(-4000)).toBe(0);
    expect(Number(calls)).toBeGreaterThan(1000);
  }, 1_800_000);  // the sanitizer build (~20 min on 2 busy cores) may run first, or in the other suite
});

describe.skipIf(asanSkipReason === '' || child)('hostile arguments under ASan + UBSan', () => {
  it('is skipped', () => {
    console.log(`[hostile asan] skipped: ${asanSkipReason}`);
    expect(asanSkipReason).not.toBe('');
  });
});
