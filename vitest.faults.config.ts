import { defineConfig } from 'vitest/config';

/**
 * The fault-injection suite (`npm run test:faults`): real workloads against real worker
 * processes, Redis servers and storage, with faults injected, then the same invariants checked
 * (test/faults/support/invariants.ts). Kept apart from `npm test`, whose glob is *.test.ts.
 *
 * Two projects, run side by side by scripts/test-faults.sh, each one scenario at a time (each
 * owns worker processes, a Redis and the disk's fsyncs): `processes`, the scenarios where
 * Redis servers and worker processes fail (Sentinel and cluster failovers, Redis restarts,
 * workers killed and restarted), which mostly wait on failover and lock timers and need no
 * shared storage server, and `storage`, the rest, bound by the disk, the CPU and the storage
 * servers (backends that fail or damage bytes, hosts sharing buckets, races with maintenance).
 * The hosts scenarios stay in `storage`: beside the backend ones they ran three times slower.
 * A file named on the command line runs alone as before.
 */
const PROCESSES = ['test/faults/redis-failover.faults.ts', 'test/faults/redis-restart.faults.ts', 'test/faults/worker-kill.faults.ts'];

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
      { extends: true, test: { name: 'storage', include: ['test/faults/**/*.faults.ts'], exclude: PROCESSES } },
      { extends: true, test: { name: 'processes', include: PROCESSES } },
    ],
  },
});
