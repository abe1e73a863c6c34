/**
 * The write path end to end, in one process (producer + worker pool) on the real Redis and
 * filesystem: the seed design's tests and acceptance criteria, and the guarantees around them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { LocalBackend } from '../src/backends/local.backend.js';
import { replicaJobId } from '../src/jobs/job-table.js';
import { STORAGE_IDENTITY_KEY } from '../src/storage/storage-identity.js';
import { journalMetadata, makeTestEnv, openVault, seedTasks, waitFor, stagedFiles, type TestEnv } from './support/harness.js';
import { RedisServer } from './faults/support/redis-server.js';

let env: TestEnv;
let vault: Chunkvault;

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** What a test env's directory holds before anything is stored: its config, and the storage markers made at open (data and staging). */
function filesOfAFreshEnv(): string[] {
  return [env.configPath, ...[env.basePath, env.stagingDir].map((dir) => path.join(dir, ...STORAGE_IDENTITY_KEY.split('/')))].sort();
}

describe('storing distributed chunks (seed tests)', () => {
  beforeEach(async () => {
    env = await makeTestEnv();
    vault = await openVault(env);
    await vault.startWorkers();
  });
  afterEach(async () => {
    await vault.close();
    await env.cleanup();
  });

  it('initialises with the local backend and verify_on_write on (test_storage_manager_initialization)', () => {
    expect(vault.backends.all().map((b) => b.name)).toEqual(['local']);
    expect(vault.backends.forReplica('aws')).toBeInstanceOf(LocalBackend);
    expect(vault.config.storage.integrity.verify_on_write).toBe(true);
  });

  it('stores every replica of every completed task (test_store_distributed_chunks)', async () => {
    const tasks = seedTasks(10, 2);
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    expect(results).toHaveLength(20);
    expect(results.filter((r) => r.status === 'stored')).toHaveLength(20);
    for (const r of results) {
      const bytes = await readFile(path.join(env.basePath, r.storagePath));
      expect(bytes.equals(tasks.find((t) => t.chunkId === r.chunkId)!.chunkData as Buffer)).toBe(true);
    }
  });

  it('gives every stored replica the md5 of its bytes (test_data_integrity_verification, test_checksum_validation)', async () => {
    const tasks = seedTasks(10, 2);
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    for (const r of results) {
      expect(r.status).toBe('stored');
      expect(r.checksum).toMatch(/^[0-9a-f]{32}$/);
      const onDisk = await readFile(path.join(env.basePath, r.storagePath));
      expect(createHash('md5').update(onDisk).digest('hex')).toBe(r.checksum);
    }
  });

  it('reports 100% integrity: no failed stores and every stored replica hashes right (acceptance 1)', async () => {
    const results = await (await vault.producer.store(seedTasks(10, 2))).results({ timeoutMs: 30_000 });
    const stats = await vault.getStatistics();
    expect(stats.failed_stores).toBe(0);
    expect(stats.successful_stores).toBe(results.length);
    for (const r of results) {
      const onDisk = await readFile(path.join(env.basePath, r.storagePath));
      expect(createHash('md5').update(onDisk).digest('hex')).toBe(r.checksum);
    }
  });

  it('stores only completed tasks and completed replicas, as the seed does', async () => {
    const [a, b] = seedTasks(2, 2);
    b!.status = 'failed';
    a!.replicas[1]!.status = 'pending';
    const handle = await vault.producer.store([a!, b!]);
    const results = await handle.results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.replicaId)).toEqual(['chunk_0_replica_0']);
    expect((await filesUnder(env.basePath)).map((f) => path.relative(env.basePath, f)).sort()).toEqual([
      expect.stringMatching(/^\.chunkvault-journal\/[^/]+\.jsonl$/), // the worker's metadata journal
      expect.stringMatching(/\/chunk_0@chunk_0_replica_0\.dat$/),
      STORAGE_IDENTITY_KEY,
    ]);
  });

  it('reports statistics with the seed\'s fields (test_storage_statistics)', async () => {
    const tasks = seedTasks(10, 2);
    tasks[0]!.replicas[1]!.cloudProvider = 'gcp';
    await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const stats = await vault.getStatistics();
    const size = (tasks[0]!.chunkData as Buffer).byteLength;
    const totalBytes = tasks.reduce((sum, t) => sum + t.chunkData.byteLength * 2, 0);
    expect(stats.total_chunks).toBe(10);
    expect(stats.total_size_bytes).toBe(totalBytes);
    expect(stats.total_size_gb).toBeCloseTo(totalBytes / 1024 ** 3, 12);
    expect(stats.checkpoints_created).toBe(0);
    expect(stats.storage_by_cloud.gcp).toEqual({ count: 1, size_bytes: size });
    expect(stats.storage_by_cloud.aws!.count).toBe(19);
    expect(stats.successful_stores).toBe(20);
    expect(stats.failed_stores).toBe(0);
    expect(stats.backend_stats.local!.file_count).toBe(20); // replica objects, as catalogued
    expect(stats.backend_stats.local!.base_path).toBe(env.basePath);
  });

  it('reports a task without bytes as failed and stores nothing of it (test_storage_failure_handling)', async () => {
    const [task] = seedTasks(1, 1, 'invalid');
    (task as { chunkData: unknown }).chunkData = null;
    const handle = await vault.producer.store([task!]);
    const results = await handle.results({ timeoutMs: 5_000 });
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'failed', replicaId: 'invalid_0_replica_0' });
    expect(results[0]!.error).toMatch(/chunkData: must be a Uint8Array/);
    expect((await filesUnder(env.dir)).sort()).toEqual(filesOfAFreshEnv());
  });

  it('keeps one record and one metadata entry per replica, never one per chunk (test_metadata_storage)', async () => {
    await (await vault.producer.store(seedTasks(1, 3))).results({ timeoutMs: 30_000 });
    const records = await vault.catalog.listReplicas('chunk_0');
    expect(records.map((r) => r.replicaId)).toEqual(['chunk_0_replica_0', 'chunk_0_replica_1', 'chunk_0_replica_2']);
    expect(new Set(records.map((r) => r.path)).size).toBe(3);
    expect(records.map((r) => r.targetNode)).toEqual(['aws-node-1', 'aws-node-2', 'aws-node-3']);
    const metadata = await journalMetadata(env.basePath);
    expect([...metadata.keys()].sort()).toEqual(records.map((r) => `chunk_0/${r.replicaId}`));
    for (const record of records) {
      expect(record).toMatchObject({ status: 'stored', backend: 'local', algorithm: 'md5', error: '' });
      expect(metadata.get(`chunk_0/${record.replicaId}`)).toMatchObject({ chunkId: 'chunk_0', replicaId: record.replicaId, path: record.path, checksum: record.checksum, sizeBytes: record.sizeBytes });
    }
    expect((await vault.catalog.getChunk('chunk_0'))?.status).toBe('stored');
  });

  it('frees the staged bytes once every replica of the chunk has ended', async () => {
    await (await vault.producer.store(seedTasks(5, 2))).results({ timeoutMs: 30_000 });
    await expect.poll(() => stagedFiles(env.stagingDir), { timeout: 10_000 }).toEqual([]);
  });

  it('stores a replica once when it is queued twice, also concurrently', async () => {
    const tasks = seedTasks(5, 2);
    const [first, second] = await Promise.all([vault.producer.store(tasks), vault.producer.store(tasks)]);
    await first.results({ timeoutMs: 30_000 });
    await second.results({ timeoutMs: 30_000 });
    const before = await Promise.all((await filesUnder(env.basePath)).map(async (f) => [f, (await stat(f)).mtimeMs] as const));

    const third = await vault.producer.store(tasks);
    const results = await third.results({ timeoutMs: 30_000 });
    expect(results.every((r) => r.status === 'stored')).toBe(true);
    const after = await Promise.all((await filesUnder(env.basePath)).map(async (f) => [f, (await stat(f)).mtimeMs] as const));
    expect(after).toEqual(before);

    const queue = new Queue('replicas', { connection: { url: env.config.chunkvault.redis.url }, prefix: `{${env.prefix}}` });
    try {
      expect((await queue.getJobCounts('completed')).completed).toBe(10);
    } finally {
      await queue.close();
    }
    const stats = await vault.getStatistics();
    expect(stats.successful_stores).toBe(10);
    expect(stats.total_size_bytes).toBe(tasks.reduce((sum, t) => sum + t.chunkData.byteLength * 2, 0));
  });

  it('refuses a known chunk id with other bytes, keeping the stored chunk as it was', async () => {
    const [task] = seedTasks(1, 1);
    const [stored] = await (await vault.producer.store([task!])).results({ timeoutMs: 30_000 });
    const changed = { ...task!, chunkData: Buffer.from('different bytes') };
    const [result] = await (await vault.producer.store([changed])).results({ timeoutMs: 5_000 });
    expect(result).toMatchObject({ status: 'failed' });
    expect(result!.error).toMatch(/chunk chunk_0 is already recorded with md5 checksum/);
    expect((await readFile(path.join(env.basePath, stored!.storagePath))).equals(task!.chunkData as Buffer)).toBe(true);
  });

  it('rejects ids that could escape the backend root and writes nothing', async () => {
    const tasks = seedTasks(3, 1);
    tasks[0]!.chunkId = '../../escape';
    tasks[0]!.replicas[0]!.chunkId = '../../escape';
    tasks[1]!.replicas[0]!.replicaId = 'a/b';
    tasks[2]!.replicas[0]!.targetNode = '';
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 5_000 });
    expect(results.map((r) => r.status)).toEqual(['failed', 'failed', 'failed']);
    expect(results[0]!.error).toMatch(/chunkId: must not contain "\.\."/);
    expect(results[1]!.error).toMatch(/replicaId: must not contain a path separator/);
    expect(results[2]!.error).toMatch(/targetNode: must not be empty/);
    expect((await filesUnder(env.dir)).sort()).toEqual(filesOfAFreshEnv());
    expect(await filesUnder(path.resolve(env.basePath, '../..'))).not.toContain(expect.stringContaining('escape'));
  });

  it('uses sha256 when checksum_algorithm says so', async () => {
    await vault.close();
    await env.cleanup();
    env = await makeTestEnv({ storage: { integrity: { checksum_algorithm: 'sha256' } } });
    vault = await openVault(env);
    await vault.startWorkers();
    const tasks = seedTasks(2, 1);
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    for (const [i, r] of results.entries()) {
      expect(r).toMatchObject({ status: 'stored', algorithm: 'sha256' });
      expect(r.checksum).toBe(createHash('sha256').update(tasks[i]!.chunkData).digest('hex'));
    }
  });

  it('makes a re-run of a finished replica job change nothing (at-least-once processing)', async () => {
    const [task] = seedTasks(1, 1);
    const [stored] = await (await vault.producer.store([task!])).results({ timeoutMs: 30_000 });
    const file = path.join(env.basePath, stored!.storagePath);
    const before = await stat(file);
    // Stage the bytes again and run the same replica under a new job id, as a stalled re-run would.
    const redis = new Redis(env.config.chunkvault.redis.url);
    const queue = new Queue('replicas', { connection: redis, prefix: `{${env.prefix}}` });
    try {
      await vault.staging.stage('rerun', task!.chunkData, stored!.checksum, 'md5');
      const job = await queue.add('replica.write', {
        chunkId: 'chunk_0', replicaId: 'chunk_0_replica_0', taskId: 'dist_task_0', targetNode: 'aws-node-1', cloudProvider: 'aws',
        checksum: stored!.checksum, algorithm: 'md5', sizeBytes: stored!.sizeBytes, stagedKey: 'rerun', createdAtMs: Date.parse(stored!.storedAt),
      }, { jobId: 'rerun-1' });
      await expect.poll(() => job.getState(), { timeout: 10_000 }).toBe('completed');
      expect((await stat(file)).mtimeMs).toBe(before.mtimeMs);
      expect((await vault.getStatistics()).successful_stores).toBe(1);
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });
});

describe('event loop', () => {
  afterEach(async () => {
    await vault.close();
    await env.cleanup();
  });

  it('hashes, stages, writes and verifies a 256 MiB chunk without blocking the event loop near a job lock', async () => {
    // A block longer than lock_duration_ms lets BullMQ hand the same job to a second worker.
    // md5 is the slower hash (~0.7 GB/s): hashing 256 MiB in one go would block for ~380 ms.
    // The bound leaves room for a loaded machine's scheduling hiccups (~130 ms seen).
    env = await makeTestEnv({ chunkvault: { worker: { lock_duration_ms: 30_000 } } });
    vault = await openVault(env);
    await vault.startWorkers();
    const chunkData = randomBytes(256 * 1024 * 1024);
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    histogram.enable();
    await new Promise((resolve) => setTimeout(resolve, 30)); // the monitor measures from its first tick on
    const handle = await vault.producer.store([{ taskId: 't', chunkId: 'big', chunkData, status: 'completed', replicas: [
      { replicaId: 'big_r0', chunkId: 'big', targetNode: 'n1', cloudProvider: 'aws', status: 'completed' },
    ] }]);
    const [result] = await handle.results({ timeoutMs: 60_000 });
    histogram.disable();
    expect(result!.status).toBe('stored');
    const longestBlockMs = histogram.max / 1e6;
    expect(longestBlockMs).toBeLessThan(200);
  });
});

describe('partitioning', () => {
  afterEach(async () => {
    await vault.close();
    await env.cleanup();
  });

  it.each([
    ['date', /^\d{4}\/\d{2}\/\d{2}\/chunk_0@chunk_0_replica_0\.dat$/],
    ['cloud', /^aws\/chunk_0@chunk_0_replica_0\.dat$/],
    ['node', /^aws-node-1\/chunk_0@chunk_0_replica_0\.dat$/],
    ['chunk_size', /^lt-64KiB\/chunk_0@chunk_0_replica_0\.dat$/],
    ['flat', /^chunk_0@chunk_0_replica_0\.dat$/],
  ])('partition_by %s lays replicas out as documented', async (partition, expected) => {
    env = await makeTestEnv({ storage: { organization: { partition_by: partition } } });
    vault = await openVault(env);
    await vault.startWorkers();
    const [result] = await (await vault.producer.store(seedTasks(1, 1))).results({ timeoutMs: 30_000 });
    expect(result!.storagePath).toMatch(expected);
    if (partition === 'date') {
      const queuedDay = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
      expect(result!.storagePath.startsWith(queuedDay)).toBe(true); // UTC, not the writer's local date
    }
    expect((await stat(path.join(env.basePath, result!.storagePath))).isFile()).toBe(true);
  });
});

describe('staging', () => {
  beforeEach(async () => {
    env = await makeTestEnv();
    vault = await openVault(env);
  });
  afterEach(async () => {
    await vault.close();
    await env.cleanup();
  });

  it('makes one replica of a large chunk the staged file itself (a hard link), the others kernel copies, no two sharing a file', async () => {
    const bytes = randomBytes(1 << 20);
    const task = { ...seedTasks(1, 3, 'linked')[0]!, chunkData: bytes };
    const handle = await vault.producer.store([task]);
    const [staged] = await stagedFiles(env.stagingDir);
    const stagedInode = (await stat(path.join(env.stagingDir, staged!))).ino;
    await vault.startWorkers();
    const results = await handle.results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status)).toEqual(['stored', 'stored', 'stored']);
    const files = results.map((r) => path.join(env.basePath, r.storagePath));
    const inodes = await Promise.all(files.map(async (file) => (await stat(file)).ino));
    expect(inodes.filter((inode) => inode === stagedInode)).toHaveLength(1);
    expect(new Set(inodes).size).toBe(3);
    for (const file of files) expect((await readFile(file)).equals(bytes)).toBe(true);
    // The checksum is the staged file's digest (its read-back, hashed once); the link holds
    // those very bytes and is not read back again; each copy is.
    expect(results[0]!.checksum).toBe(createHash(results[0]!.algorithm).update(bytes).digest('hex'));
    const verified = (await vault.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'chunkvault_bytes_read_total')!.values;
    expect(verified.find((v) => v.labels.purpose === 'verify')?.value).toBe(2 * bytes.byteLength);
    // Once the chunk ended its staged name is gone: each replica is a file of its own.
    await waitFor('the staged file to be freed', async () => (await stagedFiles(env.stagingDir)).length === 0);
    for (const file of files) expect((await stat(file)).nlink).toBe(1);

    // Stored again, nothing is left to write: the bytes staged to hash them are dropped, never named.
    const again = await vault.producer.store([task]);
    expect((await again.results({ timeoutMs: 30_000 })).map((r) => r.checksum)).toEqual(results.map((r) => r.checksum));
    expect(await stagedFiles(env.stagingDir)).toEqual([]);
  });

  it('stages small chunks many to a file and frees each file with the last of its chunks', async () => {
    const tasks = seedTasks(60, 2);
    const handle = await vault.producer.store(tasks);
    // Queued, nothing written yet: fewer staged files than chunks, each a segment whose
    // chunks the catalog tracks, every chunk in exactly one.
    const staged = await stagedFiles(env.stagingDir);
    expect(staged.length).toBeGreaterThan(0);
    expect(staged.length).toBeLessThan(60);
    const tracked: string[] = [];
    for (const file of staged) {
      expect(path.basename(file)).toMatch(/^_seg#[0-9a-f]{24}$/);
      tracked.push(...(await vault.catalog.segmentChunks(path.basename(file))));
    }
    expect(tracked.sort()).toEqual(tasks.map((t) => t.chunkId).sort());
    const job = (await vault.queue('replicas').getJob(replicaJobId(tasks[0]!.chunkId, tasks[0]!.replicas[0]!.replicaId, 0)))!;
    expect(job.data).toMatchObject({ stagedKey: expect.stringMatching(/^_seg#/), stagedOffset: expect.any(Number) });

    await vault.startWorkers();
    const results = await handle.results({ timeoutMs: 30_000 });
    expect(results.every((r) => r.status === 'stored')).toBe(true);
    for (const [i, task] of tasks.entries()) expect((await vault.getChunk(task.chunkId)).equals(task.chunkData as Buffer), `chunk ${i}`).toBe(true);
    await expect.poll(() => stagedFiles(env.stagingDir), { timeout: 10_000 }).toEqual([]);
    for (const file of staged) expect(await vault.catalog.segmentChunks(path.basename(file))).toEqual([]);
  });

  it('refuses a segment whose chunk no longer hashes to its checksum, leaving no file; reads each chunk of a good one back exactly', async () => {
    const parts = [randomBytes(1000), randomBytes(0), randomBytes(5000)].map((bytes) => ({ bytes, checksum: createHash('md5').update(bytes).digest('hex'), algorithm: 'md5' as const }));
    const changed = parts.map((part, i) => (i === 2 ? { ...part, bytes: Buffer.from('not what was hashed') } : part));
    await expect(vault.staging.stageSegment(changed)).rejects.toThrow(/part 2/);
    expect(await stagedFiles(env.stagingDir)).toEqual([]);

    const { segment, offsets } = await vault.staging.stageSegment(parts);
    expect(offsets).toEqual([0, 1000, 1000]);
    for (const [i, part] of parts.entries()) {
      expect((await vault.staging.open(segment, `c${i}`, offsets[i], part.bytes.byteLength)) as Buffer).toEqual(part.bytes);
    }
    await expect(vault.staging.open(segment, 'c9', 5000, 2000)).rejects.toThrow(/size mismatch \(expected 2000 bytes, got 1000\)/);
  });
});

describe('a Redis restart under store()', () => {
  let redis: RedisServer | undefined;
  afterEach(async () => {
    await vault?.close();
    await env?.cleanup();
    await redis?.stop();
    redis = undefined;
  });

  it('does not fail the call: commands cut off by the restart are sent again, and every replica is queued once', async () => {
    redis = new RedisServer('aof');
    await redis.start();
    env = await makeTestEnv({}, redis.url);
    vault = await openVault(env);
    const tasks = seedTasks(3000, 2);
    let done = false;
    const storing = vault.producer.store(tasks).finally(() => {
      done = true;
    });
    const replicas = vault.queue('replicas');
    await waitFor('the first jobs to be queued', async () => ((await replicas.getJobCounts('waiting')).waiting ?? 0) > 0, 30_000, 5);
    // Restart Redis every 50-100 ms while the call runs (up to 10 times): some restart cuts
    // off a batch of jobs (a transaction) half-answered, which ioredis cannot send again.
    for (let restarts = 0; restarts < 10 && !done; restarts++) {
      await redis.crashAndRestart(50);
      await sleep(50 + ((restarts * 17) % 50));
    }
    expect(redis.restarts).toBeGreaterThan(1);
    const handle = await storing;
    expect(handle.rejected).toEqual([]);
    expect(handle.tracked).toHaveLength(6000);

    await vault.startWorkers();
    const results = await handle.results({ timeoutMs: 60_000 });
    expect(results.filter((r) => r.status !== 'stored').map((r) => `${r.replicaId}: ${r.error}`)).toEqual([]);
    await waitFor('every job to complete', async () => (await replicas.getJobCounts('completed')).completed === 6000, 30_000);
  });
});
