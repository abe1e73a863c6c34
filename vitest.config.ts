import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One file at a time: tests spawn worker processes and fsync a lot, and the event-loop
    // tests measure blocking, which CPU contention from a parallel file would blur.
    fileParallelism: false,
    reporters: ['default'],
  },
});
