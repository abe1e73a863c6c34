/**
 * Storage identity: each backend carries the deployment's marker, recorded in Redis, and a
 * process whose backend is another disk, bucket or key prefix refuses to start (exit 2 in the
 * CLI) naming the expected and the found marker. Real Redis, real directories, real processes,
 * and the S3 loopback server (radosgw) of `.ci/cloud-servers start`.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import { LocalBackend } from '../src/backends/local.backend.js';
import { CatalogKeys } from '../src/catalog/catalog-keys.js';
import { StorageIdentityError } from '../src/errors.js';
import { createLogger } from '../src/logging/logger.js';
import { STORAGE_IDENTITY_KEY, verifyStorageIdentity, type StorageMarker } from '../src/storage/storage-identity.js';
import { deleteKeys, makeTestEnv, openVault, REDIS_URL, runCli, seedTasks, spawnCli, type TestEnv } from './support/harness.js';
import { cloudServers, exportCredentials, s3TestClient } from './support/cloud-servers.js';

const envs: TestEnv[] = [];
const vaults: Chunkvault[] = [];
const children: Array<ReturnType<typeof spawnCli>> = [];
let redis: Redis;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await redis.quit();
});

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  for (const vault of vaults.splice(0)) await vault.close();
  for (const env of envs.splice(0)) await env.cleanup();
});

async function testEnv(overrides: Parameters<typeof makeTestEnv>[0] = {}): Promise<TestEnv> {
  const env = await makeTestEnv(overrides);
  envs.push(env);
  return env;
}

async function open(env: TestEnv): Promise<Chunkvault> {
  const vault = await openVault(env);
  vaults.push(vault);
  return vault;
}

/** The CLI to its end, killed by afterEach if it outlives the test (a start that was not refused). */
function cli(args: string[]): Promise<Awaited<ReturnType<typeof runCli>>> {
  const child = spawnCli(args, { LOG_LEVEL: 'info' });
  children.push(child);
  return child.done;
}

const keysOf = (env: TestEnv) => new CatalogKeys(`{${env.prefix}}:catalog`);

async function markerOnDisk(basePath: string): Promise<StorageMarker> {
  return JSON.parse(await readFile(path.join(basePath, ...STORAGE_IDENTITY_KEY.split('/')), 'utf8')) as StorageMarker;
}

async function recordedId(env: TestEnv, backend: string): Promise<string | undefined> {
  const value = await redis.hget(keysOf(env).identity, backend);
  return value === null ? undefined : (JSON.parse(value) as StorageMarker).id;
}

/**
 * An env on the same Redis prefix as `env` (the same deployment) and its staging directory (a
 * shared mount, as on real hosts), with its own config and data directory unless `overrides` say otherwise.
 */
function sameDeployment(env: TestEnv, overrides: { chunkvault?: Record<string, unknown>; [key: string]: unknown } = {}): Promise<TestEnv> {
  return testEnv({ ...overrides, chunkvault: { staging: { dir: env.stagingDir }, ...overrides.chunkvault, redis: { prefix: env.prefix } } });
}

describe('storage identity of the local backend', () => {
  it('is created on first start, recorded in Redis, and accepted by a second process on the same base_path', async () => {
    const env = await testEnv();
    const vault = await open(env);
    const marker = await markerOnDisk(env.basePath);
    expect(marker).toMatchObject({ format: 'chunkvault.storage-identity/1', backend: 'local', location: env.basePath });
    expect(marker.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await recordedId(env, 'local')).toBe(marker.id);

    // Another process (a producer, the CLI) on the same Redis and directory starts and queues a chunk.
    const file = path.join(env.dir, 'chunk-2');
    await writeFile(file, 'some bytes');
    const put = await cli(['put', file, '--replica', 'n1:aws', '--config', env.configPath]);
    expect(put.code, put.stderr).toBe(0);
    expect(await vault.catalog.getChunk('chunk-2')).toMatchObject({ chunkId: 'chunk-2' });
    expect((await markerOnDisk(env.basePath)).id).toBe(marker.id);
  });

  it('refuses a worker whose base_path is another, empty directory: exit 2, naming the expected marker and the missing one', async () => {
    const env = await testEnv();
    await open(env);
    const expected = (await markerOnDisk(env.basePath)).id;

    // The same Redis prefix (deployment), a directory of its own: "another disk".
    const otherDisk = await sameDeployment(env);
    const worker = await cli(['worker', '--config', otherDisk.configPath]);
    expect(worker.code).toBe(2);
    expect(worker.stderr).toContain(`backend local at ${otherDisk.basePath} is not the storage this deployment knows`);
    expect(worker.stderr).toContain(`expected marker ${expected} (created `);
    expect(worker.stderr).toContain(`at ${env.basePath})`);
    expect(worker.stderr).toContain('found no marker');
    expect(worker.stderr).toContain('one shared volume');
    expect(worker.stderr).toContain(`redis-cli HDEL '{${env.prefix}}:catalog:identity' local`);
    expect(worker.stderr).not.toContain('worker pool started');
    // Refused before writing anything there, the marker included.
    expect(existsSync(otherDisk.basePath)).toBe(false);
    expect(await recordedId(env, 'local')).toBe(expected);
  });

  it('marks the staging directory too: a producer whose staging directory is another one is refused', async () => {
    const env = await testEnv();
    await open(env);
    expect(await recordedId(env, 'staging-local')).toBe((await markerOnDisk(env.stagingDir)).id);
    // Same deployment, same replica directory, a staging directory of its own: the workers would never see its bytes.
    const otherStaging = await sameDeployment(env, { storage: { backends: { local: { base_path: env.basePath } } }, chunkvault: { staging: { dir: path.join(env.dir, 'other-staging') } } });
    const put = await cli(['put', otherStaging.configPath, '--replica', 'n1:aws', '--config', otherStaging.configPath]);
    expect(put.code).toBe(2);
    expect(put.stderr).toContain(`backend staging-local at ${otherStaging.stagingDir} is not the storage this deployment knows`);
    expect(put.stderr).not.toContain('backend local at');
  });

  it("refuses a producer and serve whose directory holds another deployment's marker, naming both markers", async () => {
    const ours = await testEnv();
    await open(ours);
    const theirs = await testEnv();
    await open(theirs);
    const [expected, found] = [(await markerOnDisk(ours.basePath)).id, (await markerOnDisk(theirs.basePath)).id];
    expect(found).not.toBe(expected);

    const crossed = await sameDeployment(ours, { storage: { backends: { local: { base_path: theirs.basePath } } } });
    const file = path.join(crossed.dir, 'chunk-x');
    await writeFile(file, 'some bytes');
    for (const args of [['put', file, '--replica', 'n1:aws'], ['serve', '--port', '0']]) {
      const run = await cli([...args, '--config', crossed.configPath]);
      expect(run.code, `${args[0]}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toContain(`expected marker ${expected}`);
      expect(run.stderr).toContain(`found marker ${found}`);
      expect(run.stdout).toBe('');
    }
    // The producer queued nothing, and neither marker changed.
    expect(await (await open(ours)).catalog.getChunk('chunk-x')).toBeUndefined();
    expect((await markerOnDisk(theirs.basePath)).id).toBe(found);
    expect(await recordedId(ours, 'local')).toBe(expected);
  });

  it('refuses a directory whose marker is not one, saying so, and records nothing', async () => {
    const env = await testEnv();
    const backend = new LocalBackend({ basePath: env.basePath, staleTempAfterMs: 60_000 });
    await backend.put(STORAGE_IDENTITY_KEY, Buffer.from('{"id": 42}'), { sizeBytes: 10, checksum: createHash('md5').update('{"id": 42}').digest('hex'), algorithm: 'md5' });
    const refusal = await verifyStorageIdentity(redis, keysOf(env), [backend], createLogger('silent')).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(StorageIdentityError);
    expect((refusal as StorageIdentityError).mismatches).toEqual([{ backend: 'local', location: env.basePath, expected: undefined, found: expect.stringContaining('an unreadable marker') }]);
    expect((refusal as Error).message).toContain(`The marker ${STORAGE_IDENTITY_KEY} of backend local was damaged or written by something else: remove it.`);
    expect(await recordedId(env, 'local')).toBeUndefined();
  });

  it('adopts the marker the directory holds when Redis records none (a flushed Redis), and the next start matches it', async () => {
    const env = await testEnv();
    await (await open(env)).close();
    const marker = await markerOnDisk(env.basePath);
    await deleteKeys(env.config.chunkvault.redis.url, `{${env.prefix}}*`);

    const backend = new LocalBackend({ basePath: env.basePath, staleTempAfterMs: 60_000 });
    expect(await verifyStorageIdentity(redis, keysOf(env), [backend], createLogger('silent'))).toEqual({ local: 'adopted' });
    expect(await recordedId(env, 'local')).toBe(marker.id);
    expect(await verifyStorageIdentity(redis, keysOf(env), [backend], createLogger('silent'))).toEqual({ local: 'matched' });
    expect(await markerOnDisk(env.basePath)).toEqual(marker);

    // `reindex` on the emptied Redis starts (adopting is what it needs) and finds nothing amiss.
    await deleteKeys(env.config.chunkvault.redis.url, `{${env.prefix}}*`);
    const run = await cli(['reindex', '--json', '--config', env.configPath]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).problems).toEqual([]);
    expect(await recordedId(env, 'local')).toBe(marker.id);
  });

  it('ends with one marker that every process accepts when several race to create it on a fresh deployment', async () => {
    const env = await testEnv();
    const racers = Array.from({ length: 6 }, () => ({ redis: new Redis(REDIS_URL), backend: new LocalBackend({ basePath: env.basePath, staleTempAfterMs: 60_000 }) }));
    try {
      const outcomes = await Promise.all(racers.map((r) => verifyStorageIdentity(r.redis, keysOf(env), [r.backend], createLogger('silent'))));
      expect(outcomes.map((o) => o.local).sort()).toEqual(['created', 'matched', 'matched', 'matched', 'matched', 'matched']);
    } finally {
      for (const r of racers) await r.redis.quit();
    }
    expect(await recordedId(env, 'local')).toBe((await markerOnDisk(env.basePath)).id);

    // The same with two real processes on another fresh deployment.
    const fresh = await testEnv();
    const runs = await Promise.all([cli(['stats', '--config', fresh.configPath]), cli(['stats', '--config', fresh.configPath])]);
    expect(runs.map((r) => r.code), runs.map((r) => r.stderr).join('\n')).toEqual([0, 0]);
    expect(await recordedId(fresh, 'local')).toBe((await markerOnDisk(fresh.basePath)).id);
  });

  it('leaves a backend it cannot reach unchecked rather than refusing the start', async () => {
    const env = await testEnv();
    const notADirectory = path.join(env.dir, 'not-a-directory');
    await writeFile(notADirectory, 'a file where the data directory should be');
    const backend = new LocalBackend({ basePath: path.join(notADirectory, 'data'), staleTempAfterMs: 60_000 });
    expect(await verifyStorageIdentity(redis, keysOf(env), [backend], createLogger('silent'))).toEqual({ local: 'unchecked' });
    expect(await recordedId(env, 'local')).toBeUndefined();
  });

  it('does not let a backend that never answers hold up the start: unchecked after the deadline', async () => {
    const env = await testEnv();
    const silent = Object.assign(Object.create(new LocalBackend({ basePath: env.basePath, staleTempAfterMs: 60_000 })) as LocalBackend, {
      get: () => new Promise<never>(() => undefined),
    });
    const started = Date.now();
    expect(await verifyStorageIdentity(redis, keysOf(env), [silent], createLogger('silent'))).toEqual({ local: 'unchecked' });
    expect(Date.now() - started).toBeLessThan(8_000);
  });
});

describe('storage identity of an S3 bucket prefix (radosgw)', () => {
  const servers = cloudServers();
  const bucket = `cv-identity-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  let sdk: typeof import('@aws-sdk/client-s3');

  beforeAll(async () => {
    exportCredentials(servers);
    sdk = await import('@aws-sdk/client-s3');
    const client = s3TestClient(sdk, servers);
    await client.send(new sdk.CreateBucketCommand({ Bucket: bucket }));
    client.destroy();
  });

  afterAll(async () => {
    const client = s3TestClient(sdk, servers);
    const listed = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket }));
    for (const object of listed.Contents ?? []) await client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: object.Key! }));
    await client.send(new sdk.DeleteBucketCommand({ Bucket: bucket }));
    client.destroy();
  });

  const s3Block = (keyPrefix: string) => ({ bucket, region: servers.s3.region, endpoint: servers.s3.endpoint, force_path_style: true, key_prefix: keyPrefix });
  const cloudOn = (keyPrefix: string, basePath?: string) => ({
    storage: { backends: { cloud: { enabled: true, aws_s3: s3Block(keyPrefix) }, ...(basePath ? { local: { base_path: basePath } } : {}) } },
  });

  async function markerInBucket(keyPrefix: string): Promise<StorageMarker | undefined> {
    const client = s3TestClient(sdk, servers);
    try {
      const object = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: keyPrefix + STORAGE_IDENTITY_KEY }));
      return JSON.parse(await object.Body!.transformToString()) as StorageMarker;
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    } finally {
      client.destroy();
    }
  }

  it('marks the prefix, refuses another key_prefix of the same bucket, adopts after a flush, and listings pass over the marker', async () => {
    const keyPrefix = `t-${randomBytes(6).toString('hex')}/`;
    const env = await testEnv(cloudOn(keyPrefix));
    const vault = await open(env);
    const marker = await markerInBucket(keyPrefix);
    expect(marker).toMatchObject({ backend: 'aws_s3', location: `s3://${bucket}/${keyPrefix} (${servers.s3.endpoint})` });
    expect(await recordedId(env, 'aws_s3')).toBe(marker!.id);
    expect(await recordedId(env, 'local')).toBe((await markerOnDisk(env.basePath)).id);

    // Replicas on both backends, then a reindex: the marker is neither data nor metadata, and no problem.
    await vault.startWorkers();
    const tasks = seedTasks(2, 1).map((t) => ({ ...t, replicas: [...t.replicas, { ...t.replicas[0]!, replicaId: `${t.chunkId}_local`, cloudProvider: 'local' }] }));
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    expect(results.filter((r) => r.status === 'stored')).toHaveLength(4);
    const report = await vault.reindex();
    expect(report.problems).toEqual([]);
    expect(report.restored).toBe(4);

    // The same deployment and disk, another prefix of the bucket: refused, naming the S3 location.
    const elsewhere = `t-${randomBytes(6).toString('hex')}/`;
    const moved = await sameDeployment(env, cloudOn(elsewhere, env.basePath));
    const refusal = await openVault(moved).then(
      (opened) => opened.close().then(() => undefined),
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(StorageIdentityError);
    expect((refusal as StorageIdentityError).mismatches).toEqual([
      { backend: 'aws_s3', location: `s3://${bucket}/${elsewhere} (${servers.s3.endpoint})`, expected: expect.objectContaining({ id: marker!.id }), found: 'no marker' },
    ]);
    expect((refusal as Error).message).toContain(`redis-cli HDEL '{${env.prefix}}:catalog:identity' aws_s3`);
    expect(await markerInBucket(elsewhere)).toBeUndefined();

    // Redis forgets the identity: the next start adopts the bucket's marker again.
    await redis.del(keysOf(env).identity);
    await open(env);
    expect(await recordedId(env, 'aws_s3')).toBe(marker!.id);
    expect((await markerInBucket(keyPrefix))!.id).toBe(marker!.id);
  });
});
