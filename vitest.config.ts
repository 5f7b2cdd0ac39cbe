import { defineConfig } from 'vitest/config';

// One runner, one project per package. Native suites run in forked processes so that a
// crash in the addon would fail one file rather than the whole worker pool.
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
        },
      },
      {
        test: {
          name: 'sdk',
          root: 'packages/sdk',
          include: ['test/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 600_000,
        },
      },
      {
        test: {
          name: 'cli',
          root: 'packages/cli',
          include: ['test/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 600_000,
        },
      },
    ],
  },
});
