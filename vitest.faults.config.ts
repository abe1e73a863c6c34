import { defineConfig } from 'vitest/config';

/**
 * The fault-injection suite (`npm run test:faults`): real workloads against real worker
 * processes, Redis servers and storage, with faults injected, then the same invariants checked
 * (test/faults/support/invariants.ts). Kept apart from `npm test`, whose glob is *.test.ts.
 *
 * Two projects: `redis` (the scenarios where Redis itself fails: failovers, which mostly wait on
 * Sentinel and cluster timers, and restarts; each starts Redis servers of its own and needs no
 * shared storage server) and `faults` (the rest, bound by the disk and the CPU). Within each,
 * one scenario at a time: each owns worker processes, a Redis and the disk's fsyncs.
 * scripts/test-faults.sh runs the two projects side by side; a file named on the command line
 * runs alone as before.
 */
const REDIS = ['test/faults/redis-failover.faults.ts', 'test/faults/redis-restart.faults.ts'];

export default defineConfig({
  test: {
    // Scenarios run hundreds of chunks each through worker processes they kill and restart.
    testTimeout: 300_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'faults', include: ['test/faults/**/*.faults.ts'], exclude: REDIS } },
      { extends: true, test: { name: 'redis', include: REDIS } },
    ],
  },
});
