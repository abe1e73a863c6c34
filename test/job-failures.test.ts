/**
 * How replica jobs fail: bad input fails at once without retries and writes nothing;
 * I/O errors are retried with backoff; a replica that keeps failing is recorded failed and
 * its chunk degraded; the size limit is enforced. Real Redis, real filesystems (a tmpfs that
 * is genuinely full stands for a disk out of space).
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { STORAGE_IDENTITY_KEY } from '../src/storage/storage-identity.js';
import { replicaJobId } from '../src/jobs/job-table.js';
import { makeTestEnv, openVault, seedTasks, waitFor, stagedEntries, type TestEnv } from './support/harness.js';

let env: TestEnv;
let vault: Chunkvault;
let redis: Redis | undefined;
let queue: Queue | undefined;
const mounts: string[] = [];

afterEach(async () => {
  await queue?.close();
  redis?.disconnect();
  queue = undefined;
  redis = undefined;
  await vault?.close();
  for (const mount of mounts.splice(0)) execFileSync('umount', ['-l', mount]);
  await env?.cleanup();
});

async function start(overrides: Record<string, unknown> = {}): Promise<void> {
  env = await makeTestEnv(overrides);
  vault = await openVault(env);
  await vault.startWorkers();
  redis = new Redis(env.config.chunkvault.redis.url, { maxRetriesPerRequest: null });
  queue = new Queue('replicas', { connection: redis, prefix: `{${env.prefix}}` });
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** The storage marker every backend holds from the first start on: the only file before any replica. */
function markerOf(testEnv: TestEnv): string {
  return path.join(testEnv.basePath, ...STORAGE_IDENTITY_KEY.split('/'));
}

const bytes = Buffer.from('the chunk bytes '.repeat(1000));
const md5 = createHash('md5').update(bytes).digest('hex');

function jobData(overrides: Record<string, unknown> = {}) {
  return {
    chunkId: 'c1', replicaId: 'c1_r0', taskId: 't1', targetNode: 'node-1', cloudProvider: 'aws',
    checksum: md5, algorithm: 'md5', sizeBytes: bytes.byteLength, stagedKey: 'c1-staged', createdAtMs: Date.now(),
    ...overrides,
  };
}

async function failedJob(job: Job): Promise<Job> {
  await waitFor(`job ${job.id} to fail`, async () => (await job.getState()) === 'failed');
  return (await queue!.getJob(job.id!))!;
}

describe('bad job data fails at once, without retries, and writes nothing', () => {
  it.each([
    ['a chunk id with ..', { chunkId: '../../etc' }, /chunkId: must not contain "\.\."/],
    ['a replica id with a path separator', { replicaId: 'x/y' }, /replicaId: must not contain a path separator/],
    ['an empty id', { targetNode: '' }, /targetNode: must not be empty/],
    ['an id that is too long', { chunkId: 'c'.repeat(129) }, /chunkId: must be at most 128 characters/],
    ['a malformed checksum', { checksum: 'not-hex' }, /checksum: must be a lowercase hex/],
    ['an sha256 job with an md5-length digest', { algorithm: 'sha256' }, /a sha256 digest has 64 hex characters/],
    ['a staging key that escapes', { stagedKey: '../x' }, /stagedKey: must be a plain staging file name/],
    ['an unknown field', { chunkData: [1, 2, 3] }, /Unrecognized key/],
  ])('%s', async (_name, overrides, message) => {
    await start();
    await vault.staging.stage('c1-staged', bytes, md5, 'md5');
    const job = await queue!.add('replica.write', jobData(overrides), { attempts: 3, backoff: { type: 'fixed', delay: 10 } });
    const failed = await failedJob(job);
    expect(failed.failedReason).toMatch(/^invalid replica job data: /);
    expect(failed.failedReason).toMatch(message);
    expect(failed.attemptsMade).toBe(1);
    expect(await filesUnder(env.basePath)).toEqual([markerOf(env)]);
  });

  it.each([
    ['a checksum that does not match the staged bytes', { checksum: createHash('md5').update('other').digest('hex') }, /checksum mismatch \(expected [0-9a-f]{32}, got [0-9a-f]{32}\)/],
    ['a size that does not match the staged bytes', { sizeBytes: bytes.byteLength + 1 }, /size mismatch \(expected 16001 bytes, got 16000\)/],
  ])('%s', async (_name, overrides, message) => {
    await start();
    await vault.staging.stage('c1-staged', bytes, md5, 'md5');
    const job = await queue!.add('replica.write', jobData(overrides), { attempts: 3, backoff: { type: 'fixed', delay: 10 } });
    const failed = await failedJob(job);
    expect(failed.failedReason).toMatch(message);
    expect(failed.attemptsMade).toBe(1);
    expect(await filesUnder(env.basePath)).toEqual([markerOf(env)]); // not even a temp file
  });

  it('a job whose staged bytes are gone fails for good and names the chunk', async () => {
    await start();
    const job = await queue!.add('replica.write', jobData(), { attempts: 3 });
    const failed = await failedJob(job);
    expect(failed.failedReason).toMatch(/staged bytes of chunk c1 are gone/);
    expect(failed.attemptsMade).toBe(1);
  });

  it('a job with an unknown name fails without retries', async () => {
    await start();
    const job = await queue!.add('replica.erase', jobData(), { attempts: 3 });
    const failed = await failedJob(job);
    expect(failed.failedReason).toMatch(/no handler for job "replica.erase"/);
    expect(failed.attemptsMade).toBe(1);
  });
});

describe('a replica job run again after its chunk ended', () => {
  // The producer adds a replica's jobs again after a Redis reconnect cut its batch off; one
  // that already finished and was removed runs again, as a first run, after its chunk ended.
  it.each([
    ['a file of its own', 0],
    ['a pack record', 256 * 1024],
  ])('a replica job added again after it finished and was removed finds the replica stored in %s, and completes writing nothing', async (_name, packing) => {
    await start({ chunkvault: { packing: { max_chunk_bytes: packing } } });
    const [stored] = await (await vault.producer.store(seedTasks(1, 1, 'again'))).results({ timeoutMs: 30_000 });
    expect(stored!.status).toBe('stored');
    await waitFor('the ended chunk\'s staged bytes to be freed', async () => (await stagedEntries(env.stagingDir)).length === 0);
    const id = replicaJobId(stored!.chunkId, stored!.replicaId, 0);
    const first = (await queue!.getJob(id))!;
    await waitFor(`job ${id} to complete`, async () => (await first.getState()) === 'completed');
    await first.remove();
    const counters = await vault.catalog.counters();
    const record = await vault.catalog.getReplica(stored!.chunkId, stored!.replicaId);
    const files = await filesUnder(env.basePath);

    const again = await queue!.add(first.name, first.data, { jobId: id, attempts: 3 });
    await waitFor(`job ${id} to run again`, async () => ['completed', 'failed'].includes(await again.getState()));
    const finished = (await queue!.getJob(id))!;
    expect(finished.failedReason).toBeUndefined();
    expect(finished.returnvalue).toMatchObject({ status: 'stored', storagePath: stored!.storagePath, storedAt: stored!.storedAt });
    expect(await vault.catalog.getReplica(stored!.chunkId, stored!.replicaId)).toEqual(record);
    expect(await vault.catalog.counters()).toEqual(counters);
    expect(await filesUnder(env.basePath)).toEqual(files);
  });
});

describe('I/O failures', () => {
  /** A 1 MiB tmpfs mounted at the backend's base path, filled up so writes get ENOSPC. */
  async function fullDisk(): Promise<string> {
    await mkdir(env.basePath, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', env.basePath]);
    mounts.push(env.basePath);
    const filler = path.join(env.basePath, 'filler');
    await writeFile(filler, Buffer.alloc(1024 * 1024 - 8192)).catch(() => undefined);
    return filler;
  }

  it('retries a write that hit a full disk with backoff, and stores it once space is back', async () => {
    await start({ chunkvault: { retry: { attempts: 5, backoff_ms: 200 } } });
    const filler = await fullDisk();
    const [task] = seedTasks(1, 1);
    task!.chunkData = Buffer.alloc(64 * 1024, 7);
    const handle = await vault.producer.store([task!]);
    const firstFailure = await waitFor('a failed attempt', async () => {
      const r = await vault.catalog.getReplica('chunk_0', 'chunk_0_replica_0');
      return r && r.attempts >= 1 ? r : undefined;
    });
    expect(firstFailure.status).toBe('queued');
    expect(firstFailure.error).toMatch(/ENOSPC/);
    await rm(filler);
    const [result] = await handle.results({ timeoutMs: 20_000 });
    expect(result).toMatchObject({ status: 'stored' });
    const record = await vault.catalog.getReplica('chunk_0', 'chunk_0_replica_0');
    expect(record!.attempts).toBeGreaterThanOrEqual(2);
    expect(record!.error).toBe('');
  });

  it('records a replica that keeps failing as failed with its error, and its chunk as degraded', async () => {
    await start({ storage: { organization: { partition_by: 'node' } }, chunkvault: { retry: { attempts: 2, backoff_ms: 20 } } });
    const [task] = seedTasks(1, 2);
    task!.chunkData = Buffer.alloc(64 * 1024, 7);
    // Replica 1's node directory is a full disk, replica 0's is not.
    await fullDiskAt(path.join(env.basePath, 'aws-node-2'));
    const results = await (await vault.producer.store([task!])).results({ timeoutMs: 20_000 });
    expect(results.map((r) => r.status)).toEqual(['stored', 'failed']);
    expect(results[1]!.error).toMatch(/ENOSPC/);
    const record = await vault.catalog.getReplica('chunk_0', 'chunk_0_replica_1');
    expect(record).toMatchObject({ status: 'failed', attempts: 2 });
    expect((await vault.catalog.getChunk('chunk_0'))!.status).toBe('degraded');
    const stats = await vault.getStatistics();
    expect(stats.failed_stores).toBe(1);
    expect(stats.chunks_by_status.degraded).toBe(1);
    // The chunk ended (one replica stored, one failed for good): its staged bytes are freed.
    await expect.poll(() => stagedEntries(env.stagingDir), { timeout: 10_000 }).toEqual([]);
  });

  async function fullDiskAt(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    mounts.push(dir);
    await writeFile(path.join(dir, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
  }

  it('queuing a failed replica again gives it a fresh job, and it can then be stored', async () => {
    await start({ storage: { organization: { partition_by: 'node' } }, chunkvault: { retry: { attempts: 1, backoff_ms: 10 } } });
    const [task] = seedTasks(1, 1);
    task!.chunkData = Buffer.alloc(64 * 1024, 7);
    await fullDiskAt(path.join(env.basePath, 'aws-node-1'));
    const [failed] = await (await vault.producer.store([task!])).results({ timeoutMs: 20_000 });
    expect(failed!.status).toBe('failed');
    execFileSync('umount', ['-l', mounts.pop()!]);
    const [stored] = await (await vault.producer.store([task!])).results({ timeoutMs: 20_000 });
    expect(stored!.status).toBe('stored');
    expect((await vault.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))!.generation).toBe(1);
    expect((await vault.getStatistics()).failed_stores).toBe(0);
  });
});

describe('max_size_gb', () => {
  it('fails a write that would pass the limit with a clear error and leaves nothing of it', async () => {
    // 100 KiB limit: the first 64 KiB replica fits, the second does not.
    await start({ storage: { backends: { local: { max_size_gb: (100 * 1024) / 1024 ** 3 } } } });
    const [task] = seedTasks(1, 2);
    task!.chunkData = Buffer.alloc(64 * 1024, 1);
    const results = await (await vault.producer.store([task!])).results({ timeoutMs: 20_000 });
    const failed = results.filter((r) => r.status === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.error).toMatch(/backend local is full: 65536 more bytes for replica chunk_0_replica_\d of chunk chunk_0 would pass max_size_gb/);
    const dataFiles = (await readdir(env.basePath, { recursive: true })).filter((f) => String(f).endsWith('.dat'));
    expect(dataFiles).toHaveLength(1);
    expect((await readdir(env.basePath, { recursive: true })).filter((f) => String(f).includes('.cvtmp~'))).toEqual([]);
    const stats = await vault.getStatistics();
    expect(stats.backend_stats.local!.total_size_bytes).toBe(64 * 1024);
  });
});
