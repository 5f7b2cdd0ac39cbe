import { defineConfig } from 'vitest/config';

// One runner, one project per package. Native suites run in forked processes so that a
// crash in the addon would fail one file rather than the whole worker pool. Hooks get 300 s, not
// vitest's 10 s: several beforeAll build a model or compile (emu-planted's ASan compile took
// 6.6, 8.6 and 10.3 s in three clean-clone CI runs beside other suites; the last timed out).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'core-native',
          root: 'packages/core-native',
          include: ['test/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 600_000,
          hookTimeout: 300_000,
        },
      },
      {
        test: {
          name: 'sdk',
          root: 'packages/sdk',
          include: ['test/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 600_000,
          hookTimeout: 300_000,
        },
      },
      {
        test: {
          name: 'cli',
          root: 'packages/cli',
          include: ['test/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 600_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
