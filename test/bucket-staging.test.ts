/**
 * Staging in a bucket (chunkvault.staging.backend: aws_s3 | gcp_gcs | azure_blob), against the
 * real loopback servers of `.ci/cloud-servers start`: the producer stages chunk bytes as
 * objects (small chunks many to a segment, read back by ranged GETs), the workers read them
 * from there, and every staged object is freed when its chunk ends; the orphan sweep frees a
 * staged object no job names and keeps one a queued job still names. No staging directory is
 * ever made.
 *
 * These tests fail, never skip, when the servers are not running.
 */
import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask } from '../src/domain/types.js';
import { makeTestEnv, openVault, waitFor, type TestEnv } from './support/harness.js';
import { cloudServers, useTestBuckets, exportCredentials } from './support/cloud-servers.js';
import { mulberry32 } from './support/random.js';
import { RESERVED_KEY_PREFIX } from '../src/storage/storage-layout.js';

const servers = cloudServers();
exportCredentials(servers);

const RUN = `cv-stage-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const BACKENDS = ['aws_s3', 'gcp_gcs', 'azure_blob'] as const;
/** The provider whose replicas go to each backend. */
const PROVIDER = { aws_s3: 'aws', gcp_gcs: 'gcp', azure_blob: 'azure' } as const;

let env: TestEnv | undefined;
let vault: Chunkvault | undefined;

useTestBuckets(servers, RUN);

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  await env?.cleanup();
  env = undefined;
});

/** Replicas on local disk and on `backend`; chunk bytes staged in `backend`'s bucket. */
async function bucketStagingEnv(backend: (typeof BACKENDS)[number]): Promise<TestEnv> {
  const keyPrefix = `t-${randomBytes(6).toString('hex')}/`;
  const blocks = {
    aws_s3: { bucket: RUN, region: servers.s3.region, endpoint: servers.s3.endpoint, force_path_style: true, key_prefix: keyPrefix },
    gcp_gcs: { bucket: RUN, endpoint: servers.gcs.endpoint, project_id: servers.gcs.projectId, key_prefix: keyPrefix },
    azure_blob: { container: RUN, endpoint: servers.azure.endpoint, key_prefix: keyPrefix },
  };
  return makeTestEnv({
    storage: { backends: { cloud: { enabled: true, [backend]: blocks[backend] } } },
    chunkvault: { staging: { backend } },
  });
}

/** Chunks of seeded random bytes: `small` of them segment-sized (4 KiB), `large` of 300 KiB (an object each). */
function mixedTasks(backend: (typeof BACKENDS)[number], small: number, large: number): DistributionTask[] {
  const random = mulberry32(7);
  const sizes = [...Array.from({ length: small }, () => 4096), ...Array.from({ length: large }, () => 300 * 1024)];
  return sizes.map((size, i) => {
    const chunkId = `staged-${i}`;
    const bytes = Buffer.alloc(size);
    for (let b = 0; b < size; b++) bytes[b] = Math.floor(random() * 256);
    return {
      taskId: `task-${i}`, chunkId, chunkData: bytes, status: 'completed',
      replicas: ['local', PROVIDER[backend]].map((provider) => ({ replicaId: `${chunkId}_${provider}`, chunkId, targetNode: 'node-1', cloudProvider: provider, status: 'completed' })),
    };
  });
}

/** Staged chunk objects (not the store's own storage marker). */
async function stagedObjects(v: Chunkvault): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of v.staging.store.list('')) if (!object.key.startsWith(RESERVED_KEY_PREFIX)) keys.push(object.key);
  return keys;
}

describe.each(BACKENDS)('staging in the %s bucket', (backend) => {
  it('stages small chunks in segments and large ones alone, the workers store them all, and every staged object is freed', async () => {
    env = await bucketStagingEnv(backend);
    vault = await openVault(env);
    expect(vault.staging.store.capabilities.localDirectory).toBeUndefined();
    const tasks = mixedTasks(backend, 12, 2);
    const handle = await vault.producer.store(tasks);
    // Before any worker runs, the bytes are in the bucket: a few segments and the large chunks' own objects.
    const staged = await stagedObjects(vault);
    expect(staged.filter((key) => key.startsWith('_seg#')).length).toBeGreaterThanOrEqual(1);
    expect(staged.filter((key) => !key.startsWith('_seg#')).sort()).toEqual([expect.stringMatching(/^staged-12@/), expect.stringMatching(/^staged-13@/)]);

    await vault.startWorkers();
    const results = await handle.results({ timeoutMs: 60_000 });
    expect(results.filter((r) => r.status === 'stored')).toHaveLength(tasks.length * 2);
    for (const task of tasks) expect((await vault.getChunk(task.chunkId)).equals(task.chunkData as Buffer)).toBe(true);
    await waitFor('every staged object to be freed', async () => (await stagedObjects(vault!)).length === 0, 20_000);
    await expect(access(env.stagingDir)).rejects.toThrow(/ENOENT/);
  });

  it('the orphan sweep frees a staged object no job names, and keeps one a queued job still names', async () => {
    env = await bucketStagingEnv(backend);
    vault = await openVault(env); // no workers: the stored chunk's jobs stay queued
    await vault.producer.store(mixedTasks(backend, 0, 1));
    const orphan = Buffer.from('bytes no job will ever read');
    await vault.staging.stage('orphan@0123456789abcdef', orphan, (await import('node:crypto')).hash('md5', orphan, 'hex'), 'md5');
    expect((await stagedObjects(vault)).sort()).toEqual([expect.stringMatching(/^orphan@/), expect.stringMatching(/^staged-0@/)]);

    expect(await vault.sweepStagedOrphans(0)).toBe(1);
    expect(await stagedObjects(vault)).toEqual([expect.stringMatching(/^staged-0@/)]);
  });
});
