/**
 * What keeps chunkvault working and its acknowledgements true across a Redis failover, part by
 * part, against real redis-servers: the worker watchdog replaces a worker whose connection
 * hangs, and a stored replica's record waits (WAIT) until a Redis replica holds it. The
 * failovers themselves (Sentinel, Cluster) are in test/faults/redis-failover.faults.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import type { Chunkvault } from '../src/app.js';
import { openChunkvault } from '../src/app.js';
import type { Config } from '../src/config/config.schema.js';
import { createLogger } from '../src/logging/logger.js';
import { freeLoopbackPort, spawnRedisServer } from '../src/redis/private-redis.js';
import { ReplicationBarrier, ReplicationLagError, WritesLostError } from '../src/redis/replication-barrier.js';
import { interruptedByRedis } from '../src/redis/redis-connection.js';
import { ReplicaQueues } from '../src/jobs/replica-queues.js';
import { REDIS_URL, makeTestEnv, openVault, seedTasks, type TestEnv } from './support/harness.js';
import { TcpForwarder } from './hosts/tcp-forwarder.js';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function metricValue(vault: Chunkvault, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await vault.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as Array<{ value: number; labels: Record<string, string | number> }>;
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

/** `env`'s configuration reaching Redis at `url` instead. */
function reachingRedisAt(env: TestEnv, url: string): Config {
  const config = structuredClone(env.config) as Config;
  config.chunkvault.redis.url = url;
  return config;
}

describe('the worker watchdog', () => {
  it('replaces a worker whose Redis connection hangs while jobs wait, and leaves working ones alone', async () => {
    const port = Number(new URL(REDIS_URL).port || 6379);
    const forwarder = await TcpForwarder.start('127.0.0.1', port);
    cleanups.push(() => forwarder.close());
    // A replaced worker whose connection hangs cannot finish its jobs: a short shutdown bound ends it soon.
    const env = await makeTestEnv({ chunkvault: { worker: { watchdog_interval_ms: 200, stuck_after_ms: 2500, shutdown_timeout_ms: 1000 } } }, `redis://127.0.0.1:${forwarder.port}`);
    cleanups.push(() => env.cleanup());
    const workers = await openVault(env);
    cleanups.push(() => workers.close());
    await workers.startWorkers();
    const producer = await openChunkvault(reachingRedisAt(env, REDIS_URL), { logger: createLogger('silent'), announceUnimplemented: false });
    cleanups.push(() => producer.close());

    // Working workers, idle between batches longer than stuck_after_ms: none is replaced.
    for (const batch of ['a', 'b']) {
      const handle = await producer.producer.store(seedTasks(10, 2, `watchdog-${batch}`));
      expect((await handle.results({ timeoutMs: 20_000 })).filter((r) => r.status !== 'stored')).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 2700));
    }
    expect(await metricValue(workers, 'chunkvault_worker_restarts_total')).toBe(0);

    // Every connection the worker process has now stops answering (open, no bytes): as a master
    // that hangs under its clients. Jobs queued by the producer wait; new connections work.
    forwarder.holdOpen();
    const handle = await producer.producer.store(seedTasks(10, 2, 'watchdog-held'));
    const results = await handle.results({ timeoutMs: 30_000 });
    expect(results.filter((r) => r.status !== 'stored')).toEqual([]);
    expect(await metricValue(workers, 'chunkvault_worker_restarts_total', { queue: 'replicas' })).toBeGreaterThanOrEqual(1);
  });
});

describe('replication before acknowledgement (min_replicas_acked)', () => {
  async function masterWithReplica(): Promise<{ url: string; replica: ChildProcess }> {
    const [masterPort, replicaPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
    // A replica's first sync goes through an RDB file in the server's directory: a temporary one.
    const dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-test-replication-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const master = await spawnRedisServer(masterPort, ['--appendonly', 'no', '--dir', dir, '--repl-diskless-sync-delay', '0']);
    cleanups.push(() => master.kill('SIGKILL'));
    const replica = await spawnRedisServer(replicaPort, ['--appendonly', 'no', '--dir', dir, '--replicaof', '127.0.0.1', String(masterPort)]);
    cleanups.push(() => {
      replica.kill('SIGCONT');
      replica.kill('SIGKILL');
    });
    const url = `redis://127.0.0.1:${masterPort}`;
    const probe = new Redis(url);
    cleanups.push(() => probe.disconnect());
    for (let i = 0; !/slave0:.*state=online/.test(await probe.info('replication')); i += 1) {
      if (i > 200) throw new Error('the replica did not come online');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    // "online" is the master's view once it has sent its data; the replica acknowledges
    // writes only after it has loaded them (on a slow disk that took over 400 ms here).
    for (let i = 0; Number(await probe.wait(1, 100)) < 1; i += 1) {
      if (i > 100) throw new Error('the replica came online but never acknowledged a write');
    }
    return { url, replica };
  }

  it('waits for the replica, sharing one fence among callers, and refuses when no replica acknowledges in time', async () => {
    const { url, replica } = await masterWithReplica();
    const client = new Redis(url);
    cleanups.push(() => client.disconnect());
    // A replica on this machine's disk may pause for longer than the refusal's 300 ms (a host
    // stop alone is 100 ms): the waits that must succeed get room, the one that must fail does not.
    const barrier = new ReplicationBarrier(client, { minReplicas: 1, timeoutMs: 5000, fenceKey: '{cvtest-barrier}:fence' });
    const impatient = new ReplicationBarrier(client, { minReplicas: 1, timeoutMs: 300, fenceKey: '{cvtest-barrier}:fence' });
    const waitCalls = async (): Promise<number> => Number(/cmdstat_wait:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0);

    const before = await waitCalls();
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      await client.set(`{cvtest-barrier}:k${i}`, 'v');
      await barrier.confirm();
    }));
    // 50 callers at once share fences: one on its way, one more for those who came after it was
    // sent (a few more when their replies arrive spread over several reads), far from one each.
    expect((await waitCalls()) - before).toBeLessThanOrEqual(10);
    await client.del(...Array.from({ length: 50 }, (_, i) => `{cvtest-barrier}:k${i}`), '{cvtest-barrier}:fence');

    replica.kill('SIGSTOP');
    await client.set('{cvtest-barrier}:late', 'v');
    await expect(impatient.confirm()).rejects.toThrow(ReplicationLagError);
    await expect(impatient.confirm()).rejects.toThrow(/only 0 of the 1 Redis replicas/);
    replica.kill('SIGCONT');
    await barrier.confirm();
    await client.del('{cvtest-barrier}:late', '{cvtest-barrier}:fence');
  });

  it('does not take jobs queued on another node than the master it fences for held (a resumed old master answers, then drops them)', async () => {
    const { url } = await masterWithReplica();
    // What the queues' connection reached with a slot map that still named the old master: a
    // node that takes the jobs and answers OK, but is not the master the fence reaches.
    const stalePort = await freeLoopbackPort();
    const stale = await spawnRedisServer(stalePort, ['--appendonly', 'no']);
    cleanups.push(() => stale.kill('SIGKILL'));
    const [master, staleClient] = [new Redis(url, { maxRetriesPerRequest: null }), new Redis(`redis://127.0.0.1:${stalePort}`, { maxRetriesPerRequest: null })];
    cleanups.push(() => master.disconnect(), () => staleClient.disconnect());
    const prefix = '{cvtest-held}';
    const barrier = new ReplicationBarrier(master, { minReplicas: 1, timeoutMs: 1000, fenceKey: `${prefix}:fence` });
    const [onStale, onMaster] = [new Queue('replicas', { connection: staleClient, prefix }), new Queue('replicas', { connection: master, prefix })];
    cleanups.push(() => onStale.close(), () => onMaster.close());
    const jobs = ['r0', 'r1'].map((replicaId) => ({ backend: 'local', name: 'replica.write' as const, data: {}, opts: { jobId: `${replicaId}@held-chunk` } }));

    const misrouted = new ReplicaQueues(onStale, new Map(), (keys) => barrier.confirmHeld(keys)).addBulk(jobs);
    await expect(misrouted).rejects.toThrow(WritesLostError);
    await expect(misrouted).rejects.toThrow(/2 of 2 keys just written are not on the Redis master/);
    // The producer's retry across reconnects takes it for a failover and adds the jobs again.
    expect(interruptedByRedis(await misrouted.catch((error: unknown) => error))).toBe(true);
    await new ReplicaQueues(onMaster, new Map(), (keys) => barrier.confirmHeld(keys)).addBulk(jobs);
    expect(await onMaster.getJobState('r0@held-chunk')).toBe('waiting');
  });

  it('fails a replica write whose record no replica holds in time, and stores it once the replica is back', async () => {
    const { url, replica } = await masterWithReplica();
    const env = await makeTestEnv({ chunkvault: { redis: { min_replicas_acked: 1, replica_ack_timeout_ms: 200 }, retry: { attempts: 20, backoff_ms: 100 } } }, url);
    cleanups.push(() => env.cleanup());
    const vault = await openVault(env);
    cleanups.push(() => vault.close());
    await vault.startWorkers();

    const first = await vault.producer.store(seedTasks(5, 2, 'acked'));
    expect((await first.results({ timeoutMs: 20_000 })).filter((r) => r.status !== 'stored')).toEqual([]);
    // (A loaded machine can make a healthy replica miss the 200 ms now and then: only what the pause adds is counted.)
    const retriedBefore = await metricValue(vault, 'chunkvault_replica_write_attempts_total', { outcome: 'retried' });

    // The replica stops acknowledging: store() and the writes wait and retry; nothing is reported stored meanwhile.
    replica.kill('SIGSTOP');
    const storing = vault.producer.store(seedTasks(5, 2, 'unacked'));
    let reported = false;
    const ended = storing.then((handle) => handle.results({ timeoutMs: 30_000 })).then((results) => {
      reported = true;
      return results;
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(reported).toBe(false);
    replica.kill('SIGCONT');
    expect((await ended).filter((r) => r.status !== 'stored')).toEqual([]);
    expect(await metricValue(vault, 'chunkvault_replica_write_attempts_total', { outcome: 'retried' })).toBeGreaterThan(retriedBefore);
  });
});
