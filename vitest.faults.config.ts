import { defineConfig } from 'vitest/config';

/**
 * The fault-injection suite (`npm run test:faults`): real workloads against real worker
 * processes, Redis servers and storage, with faults injected, then the same invariants checked
 * (test/faults/support/invariants.ts). Kept apart from `npm test`, whose glob is *.test.ts.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.faults.ts'],
    // Scenarios run thousands of chunks through worker processes they kill and restart.
    testTimeout: 300_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: 'forks',
    // One scenario at a time: each one owns worker processes, a Redis and the disk's fsyncs.
    fileParallelism: false,
    reporters: ['default'],
  },
});
