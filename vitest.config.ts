import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Per file: keep the databases of a failed test, and fail a file that leaks (pools, Tandems, handles).
    setupFiles: ['test/helpers/setup-file.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Focused tests must never pass CI.
    allowOnly: !process.env['CI'],
    reporters: ['default'],
  },
});
