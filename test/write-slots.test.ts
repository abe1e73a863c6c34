/**
 * A worker process holds chunkvault.worker.concurrency replica jobs at once, while writes of an
 * object of their own (a file each) take turns for storage.performance.max_concurrent_writes
 * slots; replicas appended to pack files take none. While writes wait for a slot, the worker
 * fetches no more jobs: the rest stay on the queue for workers elsewhere. Seen on the real
 * local backend, whose write calls are counted (and held a moment, so that overlaps show) as
 * they run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { Backend } from '../src/backends/backend.js';
import { makeTestEnv, openVault, seedTasks, type TestEnv } from './support/harness.js';

let env: TestEnv;
let vault: Chunkvault | undefined;

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  await env.cleanup();
});

/** Wraps `backend`'s `methods` so each call is held `holdMs` and counted; returns the most that ran at once. */
function countOverlaps(backend: Backend, methods: ReadonlyArray<'put' | 'putFile' | 'putPacked'>, holdMs: number): { most: () => number } {
  let running = 0;
  let most = 0;
  const target = backend as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const method of methods) {
    const real = target[method]!.bind(backend);
    target[method] = async (...args: unknown[]) => {
      running += 1;
      most = Math.max(most, running);
      try {
        await new Promise((resolve) => setTimeout(resolve, holdMs));
        return await real(...args);
      } finally {
        running -= 1;
      }
    };
  }
  return { most: () => most };
}

describe('write slots', () => {
  it('let a worker hold many jobs, write at most max_concurrent_writes objects of their own at once, and append packed replicas beyond that', async () => {
    env = await makeTestEnv({
      storage: { performance: { max_concurrent_writes: 2 } },
      chunkvault: { worker: { concurrency: 12 }, packing: { max_chunk_bytes: 8 * 1024 } },
    });
    vault = await openVault(env);
    const local = vault.backends.byName('local')!;
    const files = countOverlaps(local, ['put', 'putFile'], 40);
    const packed = countOverlaps(local, ['putPacked'], 40);
    await vault.startWorkers();

    // seedTasks' chunks are 6.4 KiB: packed. Ones of 16 KiB get a file each.
    const small = seedTasks(12, 1, 'small');
    const large = seedTasks(12, 1, 'large').map((task, i) => ({ ...task, chunkData: Buffer.alloc(16 * 1024, i) }));
    const results = await (await vault.producer.store([...small, ...large])).results({ timeoutMs: 60_000 });
    expect(results.map((r) => r.status)).toEqual(Array(24).fill('stored'));
    expect(results.filter((r) => r.chunkId.startsWith('small')).every((r) => r.storagePath.includes('.pack#'))).toBe(true);
    expect(results.filter((r) => r.chunkId.startsWith('large')).every((r) => !r.storagePath.includes('.pack#'))).toBe(true);
    expect(files.most()).toBe(2);
    expect(packed.most()).toBeGreaterThan(2);
  });

  it('keep jobs on the queue while writes wait for a slot, instead of holding them all', async () => {
    env = await makeTestEnv({ storage: { performance: { max_concurrent_writes: 2 } }, chunkvault: { worker: { concurrency: 24 }, packing: { max_chunk_bytes: 0 } } });
    vault = await openVault(env);
    const files = countOverlaps(vault.backends.byName('local')!, ['put', 'putFile'], 40);
    await vault.startWorkers();
    const handle = await vault.producer.store(seedTasks(24, 1, 'queued'));
    const replicas = vault.queue('replicas');
    let mostActive = 0;
    let settled = false;
    const results = handle.results({ timeoutMs: 60_000 }).finally(() => {
      settled = true;
    });
    while (!settled) {
      mostActive = Math.max(mostActive, await replicas.getActiveCount());
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect((await results).map((r) => r.status)).toEqual(Array(24).fill('stored'));
    expect(files.most()).toBe(2);
    // The two writing, the jobs that found both slots taken, and one fetched as a write ended.
    expect(mostActive).toBeGreaterThanOrEqual(2);
    expect(mostActive).toBeLessThanOrEqual(6);
  });
});
