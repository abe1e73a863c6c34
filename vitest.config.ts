import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Tests spawn worker processes and fsync a lot; two files at once keeps a 2-core machine responsive.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
