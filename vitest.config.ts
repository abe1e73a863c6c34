import { defineConfig } from 'vitest/config';

/**
 * Files that measure how long something blocks or takes (the event-loop tests of the write and
 * read paths, the storage-identity probe's time bound): they run after the others, one at a
 * time, so that no other file's CPU load blurs what they measure.
 */
const ALONE = ['test/write-path.test.ts', 'test/reads.test.ts', 'test/storage-identity.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
    projects: [
      // Two files at a time: each has its own Redis key prefix, temp directories, buckets and
      // ports, and most of their time is spent waiting on Redis, the disk, the storage servers
      // and the processes they spawn.
      { extends: true, test: { name: 'shared', include: ['test/**/*.test.ts'], exclude: ALONE, maxWorkers: 2, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'alone', include: ALONE, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
