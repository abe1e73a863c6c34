/**
 * Maintenance: retention deletes exactly the old data (from disk and catalog), fails
 * closed, never touches work in flight, shows the same plan in a dry run; the scrub finds
 * and repairs injected corruption; the schedule is never duplicated. Time is injected, so
 * data is aged without sleeping.
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { NotFoundError } from '../src/errors.js';
import { Retention } from '../src/maintenance/retention.js';
import type { StoredChunk } from '../src/domain/types.js';
import { createLogger } from '../src/logging/logger.js';
import { failingBackends, journalMetadata, makeTestEnv, openVault, runCli, seedTasks, waitFor, type TestEnv } from './support/harness.js';
import { BackendRegistry } from '../src/backends/backend-registry.js';
import type { Backend } from '../src/backends/backend.js';
import { Compression } from '../src/maintenance/compression.js';
import { ChunkReader } from '../src/reads/chunk-reader.js';
import { RepairScheduler } from '../src/reads/repair-scheduler.js';
import { ReplicaQueues } from '../src/jobs/replica-queues.js';
import { ProcessMetrics } from '../src/metrics/process-metrics.js';

const DAY = 24 * 3600 * 1000;
let env: TestEnv;
let vault: Chunkvault | undefined;
let other: Chunkvault | undefined;

afterEach(async () => {
  await other?.close();
  other = undefined;
  await vault?.close();
  vault = undefined;
  await env.cleanup();
});

async function start(overrides: Record<string, unknown> = {}): Promise<Chunkvault> {
  env = await makeTestEnv(overrides);
  vault = await openVault(env);
  await vault.startWorkers();
  return vault;
}

const exists = (file: string) => access(file).then(() => true, () => false);
const fileOf = (r: StoredChunk) => path.join(env.basePath, r.storagePath);
/** The replica's current metadata in the backend's journal (what reindex would use). */
const metadataOf = async (r: StoredChunk) => (await journalMetadata(env.basePath)).get(`${r.chunkId}/${r.replicaId}`);
const maxStoredAt = (rs: StoredChunk[]) => Math.max(...rs.map((r) => Date.parse(r.storedAt)));

describe('retention', () => {
  it('deletes data older than retention_days from disk and catalog, and leaves recent data alone (test_cleanup_old_data)', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 30 } } });
    const old = await (await v.producer.store(seedTasks(4, 2, 'old'))).results({ timeoutMs: 30_000 });
    const recent = await (await v.producer.store(seedTasks(3, 2, 'new'))).results({ timeoutMs: 30_000 });
    // "Now" is 30 days and 1 ms after the last old replica was stored: only the old ones are due.
    const now = maxStoredAt(old) + 30 * DAY + 1;
    expect(Math.min(...recent.map((r) => Date.parse(r.storedAt)))).toBeGreaterThan(maxStoredAt(old) + 1);

    const report = await v.maintenance.runPass({ tasks: ['retention'], now: () => now });
    expect(report.retention).toMatchObject({ replicasDeleted: 8, chunksExpired: 4, more: false, dryRun: false });
    for (const r of old) {
      expect(await exists(fileOf(r))).toBe(false);
      expect(await metadataOf(r)).toBeUndefined();
      expect((await v.catalog.getReplica(r.chunkId, r.replicaId))!.status).toBe('expired');
    }
    for (const r of recent) {
      expect((await readFile(fileOf(r))).byteLength).toBe(r.sizeBytes);
      expect((await v.catalog.getReplica(r.chunkId, r.replicaId))!.status).toBe('stored');
    }
    expect((await v.catalog.getChunk('old_0'))!.status).toBe('expired');
    expect(await v.catalog.chunksCreatedBefore(now, 0, 100)).toEqual(expect.not.arrayContaining(['old_0']));
    await expect(v.getChunk('old_0')).rejects.toThrow(NotFoundError);
    await expect(v.getChunk('old_0')).rejects.toThrow(/chunk old_0 was deleted by retention/);
    expect((await v.getChunk('new_0')).byteLength).toBe(recent[0]!.sizeBytes);

    const stats = await v.getStatistics();
    expect(stats.total_chunks).toBe(3);
    expect(stats.successful_stores).toBe(6);
    expect(stats.expired_replicas).toBe(8);
    expect(stats.expired_bytes).toBe(old.reduce((s, r) => s + r.sizeBytes, 0));
    expect(stats.chunks_by_status.expired).toBe(4);
    expect(stats.backend_stats.local!.file_count).toBe(6);
    expect(stats.last_maintenance?.retention?.replicasDeleted).toBe(8);
  });

  it('with retention_days 0 removes everything stored before now (test_automatic_cleanup_garbage_collection)', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 0 } } });
    const [stored] = await (await v.producer.store(seedTasks(1, 1, 'gc'))).results({ timeoutMs: 30_000 });
    const report = await v.maintenance.runPass({ tasks: ['retention'], now: () => Date.parse(stored!.storedAt) + 1 });
    expect(report.retention!.replicasDeleted).toBe(1);
    expect(await exists(fileOf(stored!))).toBe(false);
    expect((await v.getStatistics()).total_chunks).toBe(0);
  });

  it('a dry run lists exactly what the real pass then deletes, and deletes nothing', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 1 } } });
    const results = await (await v.producer.store(seedTasks(5, 2))).results({ timeoutMs: 30_000 });
    const now = maxStoredAt(results) + DAY + 1;
    const dry = await v.maintenance.runPass({ tasks: ['retention'], dryRun: true, now: () => now });
    for (const r of results) expect(await exists(fileOf(r))).toBe(true);
    const real = await v.maintenance.runPass({ tasks: ['retention'], now: () => now });
    expect(dry.retention!.deleted).toHaveLength(10);
    expect(real.retention!.deleted).toEqual(dry.retention!.deleted);
    expect(real.retention!.chunksExpired).toBe(dry.retention!.chunksExpired);
  });

  it('`cleanup --dry-run` prints what `cleanup` then deletes', async () => {
    await start({ storage: { cleanup: { retention_days: 0 } } });
    await (await vault!.producer.store(seedTasks(3, 1))).results({ timeoutMs: 30_000 });
    await vault!.close();
    vault = undefined;
    const dry = await runCli(['cleanup', '--dry-run', '--config', env.configPath]);
    expect(dry.code).toBe(0);
    const real = await runCli(['cleanup', '--config', env.configPath]);
    expect(real.code).toBe(0);
    const planned = dry.stdout.split('\n').filter((l) => l.startsWith('would delete ')).map((l) => l.replace('would delete ', ''));
    const deleted = real.stdout.split('\n').filter((l) => l.startsWith('deleted ')).map((l) => l.replace('deleted ', ''));
    expect(planned).toHaveLength(3);
    expect(deleted).toEqual(planned);
    expect(dry.stdout).toMatch(/dry run: 3 replica\(s\), \d+ bytes, 3 chunk\(s\) would expire/);
  });

  it('fails closed: a backend error while planning deletes nothing', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 0 } } });
    const results = await (await v.producer.store(seedTasks(4, 1))).results({ timeoutMs: 30_000 });
    const brokenKey = results[2]!.storagePath;
    // The real local backend, except that asking about one object fails as a flaky disk would.
    const retention = new Retention({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends: failingBackends(v.config, 'head', new RegExp(`^${brokenKey.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`), 'EIO: i/o error'), logger: createLogger('silent') });
    await expect(retention.run(Date.now() + 1, false)).rejects.toThrow(/EIO/);
    for (const r of results) {
      expect(await exists(fileOf(r))).toBe(true);
      expect((await v.catalog.getReplica(r.chunkId, r.replicaId))!.status).toBe('stored');
    }
  });

  it('never deletes a chunk that is still being written', async () => {
    env = await makeTestEnv({ storage: { cleanup: { retention_days: 0 } } });
    vault = await openVault(env); // no workers: the chunk stays queued
    await vault.producer.store(seedTasks(1, 2));
    const plan = (await vault.maintenance.runPass({ tasks: ['retention'], dryRun: true, now: () => Date.now() + 10 * DAY })).retention!;
    expect(plan.deleted).toEqual([]);
    expect((await vault.catalog.getChunk('chunk_0'))!.status).toBe('pending');
  });

  it('deletes at most max_deletes_per_pass objects; the rest wait for the next pass', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 0 } }, chunkvault: { maintenance: { max_deletes_per_pass: 3 } } });
    const results = await (await v.producer.store(seedTasks(4, 2))).results({ timeoutMs: 30_000 });
    const now = () => maxStoredAt(results) + 1;
    const first = await v.maintenance.runPass({ tasks: ['retention'], now });
    expect(first.retention).toMatchObject({ replicasDeleted: 3, more: true });
    const second = await v.maintenance.runPass({ tasks: ['retention'], now });
    expect(second.retention).toMatchObject({ replicasDeleted: 3, more: true });
    const third = await v.maintenance.runPass({ tasks: ['retention'], now });
    expect(third.retention).toMatchObject({ replicasDeleted: 2, more: false });
    // Oldest first, each replica once.
    const all = [...first.retention!.deleted, ...second.retention!.deleted, ...third.retention!.deleted];
    expect(new Set(all.map((i) => i.replicaId)).size).toBe(8);
  });

  it('makes checkpoint verify report expired replicas as "expired by retention", not missing', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 0 }, organization: { checkpoint_interval_chunks: 2 } } });
    const results = await (await v.producer.store(seedTasks(2, 1))).results({ timeoutMs: 30_000 });
    await waitFor('a checkpoint', async () => (await v.checkpoints.count()) === 1);
    await v.maintenance.runPass({ tasks: ['retention'], now: () => maxStoredAt(results) + 1 });
    const run = await runCli(['checkpoint', 'verify', 'cp-00000001', '--json', '--config', env.configPath]);
    const report = JSON.parse(run.stdout);
    expect(report.problems).toEqual([]);
    expect(report.expired.map((e: { problem: string }) => e.problem)).toEqual(['expired by retention', 'expired by retention']);
    expect(run.code).toBe(0);
  });
});

describe('scrub', () => {
  it('finds injected corruption, repairs it, and records when each replica was verified', async () => {
    const v = await start();
    const results = await (await v.producer.store(seedTasks(3, 2))).results({ timeoutMs: 30_000 });
    const before = (await v.getStatistics()).oldest_verification;
    const victim = results[1]!;
    const bytes = await readFile(fileOf(victim));
    bytes[0] = bytes[0]! ^ 0x55;
    await writeFile(fileOf(victim), bytes);

    const report = await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + DAY });
    expect(report.scrub).toMatchObject({ replicasChecked: 6, corruptFound: 1, repairsQueued: 1 });
    expect(report.scrub!.problems).toEqual([{ chunkId: victim.chunkId, replicaId: victim.replicaId, problem: expect.stringMatching(/^corrupt: checksum/) }]);
    await waitFor('the repair', async () => (await v.catalog.getReplica(victim.chunkId, victim.replicaId))?.status === 'stored');
    const original = seedTasks(3, 2).find((t) => t.chunkId === victim.chunkId)!.chunkData as Buffer;
    expect((await readFile(fileOf(victim))).equals(original)).toBe(true);

    const stats = await v.getStatistics();
    expect(stats.repairs_done).toBe(1);
    expect(stats.corruptions_found).toBe(1);
    // The five intact replicas were verified "a day later"; the repaired one when it was rewritten.
    expect(Date.parse(stats.oldest_verification!)).toBeGreaterThan(Date.parse(before!));
    expect(stats.last_maintenance?.scrub?.corruptFound).toBe(1);
  });

  it('`chunkvault scrub --now` runs a pass and exits 0 when all is intact', async () => {
    await start();
    await (await vault!.producer.store(seedTasks(2, 1))).results({ timeoutMs: 30_000 });
    const run = await runCli(['scrub', '--now', '--json', '--config', env.configPath]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ replicasChecked: 2, corruptFound: 0 });
    // Not on a terminal: plain progress lines on stderr, never a bar.
    expect(run.stderr).toContain('scrub: replicas: 2/2 (100%)');
    expect(run.stderr).not.toContain('\r');
    const text = await runCli(['scrub', '--now', '--config', env.configPath]);
    expect(text.stdout).toMatch(/^scrub: 2 replica\(s\) re-read, \d+ bytes, 0 bad, 0 repair\(s\) queued$/m);
  });
});

describe('schedule', () => {
  it('is created once however many workers start, and removed when enable_auto_cleanup is false', async () => {
    env = await makeTestEnv({ storage: { cleanup: { cleanup_schedule: 'hourly' } } });
    vault = await openVault(env);
    other = await openVault(env);
    await Promise.all([vault.startWorkers(), other.startWorkers()]);
    const schedulers = await vault.queue('maintenance').getJobSchedulers();
    expect(schedulers).toHaveLength(1);
    expect(schedulers[0]).toMatchObject({ key: 'chunkvault-maintenance', pattern: '0 * * * *', tz: 'UTC' });

    // A third process of the same deployment (Redis prefix and storage), configured otherwise.
    const off = await makeTestEnv({ storage: { cleanup: { enable_auto_cleanup: false }, backends: { local: { base_path: env.basePath } } }, chunkvault: { redis: { prefix: env.prefix }, staging: { dir: env.stagingDir } } });
    const third = await openVault(off);
    try {
      await third.startWorkers();
      expect(await third.queue('maintenance').getJobSchedulers()).toEqual([]);
    } finally {
      await third.close();
      await off.cleanup();
    }
  });

  it('runs passes on the schedule in a worker, reporting them in stats', async () => {
    env = await makeTestEnv({ storage: { cleanup: { cleanup_schedule: '* * * * * *', retention_days: 0 } } }); // every second
    vault = await openVault(env);
    await vault.startWorkers();
    await (await vault.producer.store(seedTasks(2, 1))).results({ timeoutMs: 30_000 });
    const stats = await waitFor('a scheduled pass that deleted the data', async () => {
      const s = await vault!.getStatistics();
      // The pass's report is saved when the pass ends, a moment after its deletions are counted.
      return s.expired_replicas === 2 && s.last_maintenance ? s : undefined;
    }, 20_000, 100);
    expect(stats.expired_replicas).toBe(2);
    expect(stats.last_maintenance!.scrub).toBeDefined();
  });

  it('never runs two passes at once', async () => {
    // A slow scrub (2 KB/s over ~5.5 KB) keeps the first pass running while the second starts.
    env = await makeTestEnv({ chunkvault: { maintenance: { scrub_bytes_per_second: 2000 } } });
    vault = await openVault(env);
    await vault.startWorkers();
    await (await vault.producer.store(seedTasks(1, 1))).results({ timeoutMs: 30_000 });
    other = await openVault(env);
    const first = vault.maintenance.runPass({ tasks: ['scrub'] });
    const redis = new Redis(env.config.chunkvault.redis.url);
    try {
      await waitFor('the first pass to hold the lock', async () => (await redis.exists(`{${env.prefix}}:catalog:maintenance:lock`)) === 1, 10_000, 5);
    } finally {
      redis.disconnect();
    }
    const second = await other.maintenance.runPass({ tasks: ['scrub'] });
    expect(second.skipped).toBe('another maintenance pass is running');
    expect(second.scrub).toBeUndefined();
    const done = await first;
    expect(done.skipped).toBeUndefined();
    expect(done.scrub!.replicasChecked).toBe(1);
  });
});

/** The configured backends, except that `op` first runs `before(key)` (once per key matching `match`) and `after(key)`. */
function hookedBackends(v: Chunkvault, op: 'get' | 'delete' | 'head', match: RegExp, hooks: { before?: (key: string) => Promise<void>; after?: (key: string) => Promise<void> }): BackendRegistry {
  class Hooked extends BackendRegistry {
    override byName(name: string): Backend | undefined {
      const real = super.byName(name);
      if (!real) return undefined;
      return new Proxy(real, {
        get: (target, prop) => {
          if (prop === op) {
            return async (key: string, ...rest: unknown[]) => {
              if (match.test(key)) await hooks.before?.(key);
              const result = await (target[op] as (...a: unknown[]) => Promise<unknown>).call(target, key, ...rest);
              if (match.test(key)) await hooks.after?.(key);
              return result;
            };
          }
          const value = target[prop as keyof Backend];
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    }
  }
  return new Hooked(v.config);
}

describe('maintenance racing with reads', () => {
  it('a retention pass that dies between recording a replica expired and deleting its objects is finished by the next pass', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 1 } } });
    const [stored] = await (await v.producer.store(seedTasks(1, 1))).results({ timeoutMs: 30_000 });
    const crashing = new Retention({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends: failingBackends(v.config, 'delete', /\.dat$/), logger: createLogger('silent') });
    await expect(crashing.run(Date.now() + 2 * DAY, false)).rejects.toThrow(/simulated crash/);
    // Recorded expired (so no read uses it), its object still there.
    expect((await v.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))!.status).toBe('expired');
    expect(await exists(fileOf(stored!))).toBe(true);

    const next = await v.maintenance.runPass({ tasks: ['retention'], now: () => Date.now() + 2 * DAY });
    expect(next.retention!.replicasDeleted).toBe(0); // nothing new to plan: the interrupted deletion was finished first
    expect(await exists(fileOf(stored!))).toBe(false);
    expect(await metadataOf(stored!)).toBeUndefined();
    expect(await v.catalog.deletionsInFlight()).toEqual([]);
  });


  it('a read while retention deletes the chunk says it was deleted by retention, and never calls the replica corrupt', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 1 } } });
    await (await v.producer.store(seedTasks(1, 1))).results({ timeoutMs: 30_000 });
    let read: unknown;
    // The read runs right after retention removed the data object, before it goes on.
    const backends = hookedBackends(v, 'delete', /\.dat$/, { after: async () => { read = await v.getChunk('chunk_0').catch((error: unknown) => error); } });
    const result = await new Retention({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends, logger: createLogger('silent') }).run(Date.now() + 2 * DAY, false);
    expect(result.replicasDeleted).toBe(1);
    expect(read).toBeInstanceOf(NotFoundError);
    expect((read as Error).message).toMatch(/chunk_0 was deleted by retention/);
    const stats = await v.getStatistics();
    expect(stats.corruptions_found).toBe(0);
    expect(stats.expired_replicas).toBe(1);
  });

  it('retention leaves the objects of a planned replica alone when the replica is no longer stored by the time it gets to it', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 1 } } });
    const [stored] = await (await v.producer.store(seedTasks(1, 1))).results({ timeoutMs: 30_000 });
    // Between planning (which heads every planned object) and deleting, the replica is queued to be written again.
    const redis = new Redis(env.config.chunkvault.redis.url);
    const backends = hookedBackends(v, 'head', /\.dat$/, { after: async () => { await redis.hset(`{${env.prefix}}:catalog:r:chunk_0:chunk_0_replica_0`, 'status', 'queued'); } });
    try {
      const result = await new Retention({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends, logger: createLogger('silent') }).run(Date.now() + 2 * DAY, false);
      expect(result.replicasDeleted).toBe(0);
    } finally {
      redis.disconnect();
    }
    expect(await exists(fileOf(stored!))).toBe(true);
    expect(await metadataOf(stored!)).toMatchObject({ path: stored!.storagePath });
  });

  it('a read whose replica compression moves meanwhile reads it at its new place, and never calls it corrupt', async () => {
    const v = await start();
    const tasks = seedTasks(1, 1);
    await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    // The reader found the replica at its .dat key; compression moves it to .dat.zst before the read gets there.
    const compress = (): Promise<unknown> => new Compression({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends: v.backends, logger: createLogger('silent') }).run(Date.now() + 8 * DAY, false);
    let moved = false;
    const backends = hookedBackends(v, 'get', /\.dat$/, { before: async () => { if (!moved) { moved = true; await compress(); } } });
    const reader = new ChunkReader({
      config: v.config, catalog: v.catalog, backends, logger: createLogger('silent'), metrics: new ProcessMetrics(),
      repairs: new RepairScheduler(v.config, v.catalog, new ReplicaQueues(v.queue('replicas'), new Map()), createLogger('silent')),
    });
    expect((await reader.getChunk('chunk_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
    expect((await v.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))).toMatchObject({ status: 'stored', codec: 'zstd' });
    expect((await v.getStatistics()).corruptions_found).toBe(0);
  });
});
