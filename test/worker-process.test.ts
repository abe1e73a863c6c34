/**
 * The worker as deployed: its own process, killed and stopped the ways production does it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask, ReplicaRecord, ReplicaStatus } from '../src/domain/types.js';
import { makeTestEnv, openVault, startWorkerProcess, waitFor, stagedEntries, type TestEnv } from './support/harness.js';

let env: TestEnv;
let vault: Chunkvault;
const children: Array<{ kill: (s?: NodeJS.Signals) => boolean; exitCode: number | null }> = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  await vault?.close();
  await env?.cleanup();
});

/** One large chunk (so a write takes long enough to be caught mid-way), flat layout: data/big@big_r0.dat. */
async function queueBigChunk(sizeMiB: number, attempts = 3): Promise<{ task: DistributionTask; dir: string; sha: string }> {
  env = await makeTestEnv({
    storage: { organization: { partition_by: 'flat' }, integrity: { checksum_algorithm: 'sha256' } },
    chunkvault: { retry: { attempts, backoff_ms: 50 } },
  });
  vault = await openVault(env);
  const chunkData = randomBytes(sizeMiB * 1024 * 1024);
  const task: DistributionTask = {
    taskId: 'big-task', chunkId: 'big', chunkData, status: 'completed',
    // The chunk's first replica is a hard link to its staged file, made at once; big_r0, the
    // one these tests interrupt, is a copy of it, written and read back for a second or more.
    replicas: ['big_link', 'big_r0'].map((replicaId) => ({ replicaId, chunkId: 'big', targetNode: 'node-1', cloudProvider: 'aws', status: 'completed' })),
  };
  await vault.producer.store([task]);
  return { task, dir: env.basePath, sha: createHash('sha256').update(chunkData).digest('hex') };
}

/** The big chunk's replica record once it has `status` (waits up to 50 s). */
function replicaReaching(status: ReplicaStatus, what: string): Promise<ReplicaRecord> {
  return waitFor(what, async () => {
    const record = await vault.catalog.getReplica('big', 'big_r0');
    return record?.status === status ? record : undefined;
  }, 50_000);
}

async function tempFilesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => name.startsWith('.cvtmp~'));
}

/** Temp files of big_r0's write (a temp file's name ends with the name it is written for). */
async function copyTempFilesIn(dir: string): Promise<string[]> {
  return (await tempFilesIn(dir)).filter((name) => name.endsWith('~big@big_r0.dat'));
}

describe('a worker process', () => {
  it('killed with SIGKILL mid-write leaves no torn replica, and a restarted worker cleans up and stores it', async () => {
    const { dir, sha } = await queueBigChunk(384);
    const first = await startWorkerProcess(env);
    children.push(first);
    await waitFor('the write to be under way', async () => (await copyTempFilesIn(dir)).length > 0, 30_000, 1);
    first.kill('SIGKILL');
    await first.done;

    // Killed mid-write: the temp file is there, the final name is not (or is complete).
    expect(await copyTempFilesIn(dir)).toHaveLength(1);
    const finalPath = path.join(dir, 'big@big_r0.dat');
    const finalNow = await readFile(finalPath).catch(() => undefined);
    if (finalNow) expect(createHash('sha256').update(finalNow).digest('hex')).toBe(sha);
    expect((await vault.catalog.getReplica('big', 'big_r0'))!.status).toBe('queued');

    const second = await startWorkerProcess(env);
    children.push(second);
    const record = await replicaReaching('stored', 'the stalled job to be re-run and stored');
    expect(record.checksum).toBe(sha);
    expect(createHash('sha256').update(await readFile(finalPath)).digest('hex')).toBe(sha);
    expect(await tempFilesIn(dir)).toEqual([]);
    second.kill('SIGTERM');
    expect((await second.done).code).toBe(0);
  });

  it('that dies every time it writes a replica gives it up after as many stalls as write attempts: recorded failed saying why, staged bytes freed', async () => {
    // One attempt allowed: a job may stall once; the run after its second stall records it failed.
    const { dir } = await queueBigChunk(256, 1);
    for (let kill = 1; kill <= 2; kill++) {
      const worker = await startWorkerProcess(env);
      children.push(worker);
      await waitFor(`write ${kill} to be under way`, async () => (await copyTempFilesIn(dir)).length > 0, 30_000, 1);
      worker.kill('SIGKILL');
      await worker.done;
      expect((await vault.catalog.getReplica('big', 'big_r0'))!.status).toBe('queued');
    }
    expect(await stagedEntries(env.stagingDir)).toHaveLength(1);

    const third = await startWorkerProcess(env);
    children.push(third);
    const record = await replicaReaching('failed', 'the replica to be given up');
    expect(record.error).toMatch(/^replica big_r0 of chunk big: given up after its worker stopped 2 times while writing it/);
    // big_link was stored: the chunk has a replica, not all of them.
    expect((await vault.catalog.getChunk('big'))!.status).toBe('degraded');
    // The job records the outcome, then frees the staged bytes, then BullMQ records it failed.
    await waitFor('the staged bytes to be freed', async () => (await stagedEntries(env.stagingDir)).length === 0);
    await waitFor('the job to be failed', async () => (await vault.queue('replicas').getJobState('big_r0@big')) === 'failed');
    expect(await tempFilesIn(dir)).toEqual([]);
    third.kill('SIGTERM');
    expect((await third.done).code).toBe(0);
  });

  it('stopped with SIGTERM during a write finishes the active job, closes and exits 0', async () => {
    const { dir, sha } = await queueBigChunk(256);
    const worker = await startWorkerProcess(env);
    children.push(worker);
    await waitFor('the write to be under way', async () => (await copyTempFilesIn(dir)).length > 0, 30_000, 1);
    worker.kill('SIGTERM');
    const run = await worker.done;
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('shutting down');
    expect(run.stderr).toContain('worker stopped');
    const record = await vault.catalog.getReplica('big', 'big_r0');
    expect(record).toMatchObject({ status: 'stored', checksum: sha });
    expect(await tempFilesIn(dir)).toEqual([]);
  });

  it('stopped with SIGINT while idle exits 0', async () => {
    env = await makeTestEnv();
    const worker = await startWorkerProcess(env);
    children.push(worker);
    worker.kill('SIGINT');
    expect((await worker.done).code).toBe(0);
  });
});
