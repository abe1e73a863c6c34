/**
 * One replica queue per backend (chunkvault.routing.queue_per_backend), against real Redis, the
 * real filesystem and the loopback S3 server (radosgw): replica jobs go to the queue of the
 * backend they write to, a worker serving some backends leaves the others' replicas queued,
 * repairs go to the queue of the bad replica's backend, and `chunkvault worker --backends`
 * refuses what it cannot serve (exit 2).
 *
 * These tests fail, never skip, when the servers are not running.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask } from '../src/domain/types.js';
import { buildHttpServer } from '../src/http/server.js';
import { makeTestEnv, openVault, runCli, waitFor, type TestEnv } from './support/harness.js';
import { cloudServers, useTestBuckets, exportCredentials } from './support/cloud-servers.js';

const servers = cloudServers();
exportCredentials(servers);

const RUN = `cv-queues-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

let env: TestEnv | undefined;
const vaults: Chunkvault[] = [];

useTestBuckets(servers, RUN);

afterEach(async () => {
  for (const vault of vaults.splice(0).reverse()) await vault.close();
  await env?.cleanup();
  env = undefined;
});

async function perBackendEnv(queuePerBackend = true): Promise<TestEnv> {
  return makeTestEnv({
    storage: {
      backends: {
        cloud: {
          enabled: true,
          aws_s3: { bucket: RUN, region: servers.s3.region, endpoint: servers.s3.endpoint, force_path_style: true, key_prefix: `t-${randomBytes(6).toString('hex')}/` },
        },
      },
    },
    chunkvault: { routing: { queue_per_backend: queuePerBackend } },
  });
}

async function open(testEnv: TestEnv): Promise<Chunkvault> {
  const vault = await openVault(testEnv);
  vaults.push(vault);
  return vault;
}

function tasks(count: number): DistributionTask[] {
  return Array.from({ length: count }, (_, i) => {
    const chunkId = `routed-${i}`;
    return {
      taskId: `task-${i}`, chunkId, chunkData: randomBytes(2048 + i), status: 'completed',
      replicas: ['local', 'aws'].map((provider) => ({ replicaId: `${chunkId}_${provider}`, chunkId, targetNode: `${provider}-node`, cloudProvider: provider, status: 'completed' })),
    };
  });
}

async function statusesByProvider(vault: Chunkvault, count: number): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = { local: [], aws: [] };
  for (let i = 0; i < count; i++) {
    const records = (await vault.findChunkRecords(`routed-${i}`))!;
    for (const replica of records.replicas) out[replica.cloudProvider]!.push(replica.status);
  }
  return out;
}

describe('one replica queue per backend', () => {
  it('queues each replica on its backend\'s queue, and a worker serving one backend writes only that backend\'s replicas', async () => {
    env = await perBackendEnv();
    const producer = await open(env);
    expect(producer.queueNames()).toEqual(['replicas', 'chunks', 'maintenance', 'replicas-local', 'replicas-aws_s3']);
    // The statistics (and so the dashboard and /metrics) show every queue.
    expect(Object.keys((await producer.getStatistics()).queues).sort()).toEqual(['chunks', 'maintenance', 'replicas', 'replicas-aws_s3', 'replicas-local']);
    // And so does Bull Board.
    const app = await buildHttpServer(producer, { readOnly: true, auth: undefined });
    try {
      const board = await app.inject({ url: '/admin/queues/api/queues', headers: { host: '127.0.0.1' } });
      expect(board.statusCode).toBe(200);
      expect((board.json() as { queues: Array<{ name: string }> }).queues.map((q) => q.name).sort()).toEqual(['chunks', 'maintenance', 'replicas', 'replicas-aws_s3', 'replicas-local']);
    } finally {
      await app.close();
    }
    const handle = await producer.producer.store(tasks(6));
    expect(await producer.queue('replicas-local').getWaitingCount()).toBe(6);
    expect(await producer.queue('replicas-aws_s3').getWaitingCount()).toBe(6);
    expect(await producer.queue('replicas').getWaitingCount()).toBe(0);

    // A worker near the disk: it stores the local replicas and never touches the S3 ones.
    const nearDisk = await open(env);
    await nearDisk.startWorkers({ backends: ['local'] });
    await waitFor('the local replicas to be stored', async () => (await statusesByProvider(producer, 6)).local!.every((s) => s === 'stored'));
    expect((await statusesByProvider(producer, 6)).aws).toEqual(Array(6).fill('queued'));
    expect(await producer.queue('replicas-aws_s3').getWaitingCount()).toBe(6);

    // A worker near the bucket takes the rest.
    const nearBucket = await open(env);
    await nearBucket.startWorkers({ backends: ['aws_s3'] });
    const results = await handle.results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status)).toEqual(Array(12).fill('stored'));
    // Each job completes in BullMQ just after its outcome is in the catalog (what results() reads).
    for (const queue of ['replicas-aws_s3', 'replicas-local']) {
      await waitFor(`six completed jobs on ${queue}`, async () => (await producer.queue(queue).getJobCounts('completed')).completed === 6);
    }
    expect(await producer.queue('replicas').getJobCounts('completed', 'failed')).toEqual({ completed: 0, failed: 0 });
  });

  it('queues the repair of a bad replica on its backend\'s queue', async () => {
    env = await perBackendEnv();
    const vault = await open(env);
    const handle = await vault.producer.store(tasks(1));
    await vault.startWorkers();
    const [local] = (await handle.results({ timeoutMs: 30_000 })).filter((r) => r.backend === 'local');
    await writeFile(path.join(env.basePath, ...local!.storagePath.split('/')), 'rotten bytes');
    expect((await vault.maintenance.runPass({ tasks: ['scrub'] })).scrub).toMatchObject({ corruptFound: 1, repairsQueued: 1 });
    const repaired = await waitFor('the repair job to complete', async () => {
      const jobs = await vault.queue('replicas-local').getJobs(['completed']);
      return jobs.find((job) => job.name === 'replica.repair');
    });
    expect(repaired.data).toMatchObject({ chunkId: 'routed-0', replicaId: 'routed-0_local' });
    expect(await vault.queue('replicas-aws_s3').getJobs(['completed'])).not.toContainEqual(expect.objectContaining({ name: 'replica.repair' }));
  });

  it('`worker --backends` refuses a backend that is not configured, and refuses to serve some backends when queues are shared', async () => {
    env = await perBackendEnv();
    const unknown = await runCli(['worker', '--backends', 'gcp_gcs', '--config', env.configPath]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no configured backend named gcp_gcs \(configured: local, aws_s3\)/);
    await env.cleanup();
    env = await perBackendEnv(false);
    const shared = await runCli(['worker', '--backends', 'local', '--config', env.configPath]);
    expect(shared.code).toBe(2);
    expect(shared.stderr).toMatch(/set chunkvault\.routing\.queue_per_backend: true/);
  });
});
