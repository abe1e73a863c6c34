/**
 * The checkpoint aggregator: every stored chunk lands in exactly one checkpoint (also with
 * re-queues, several worker processes and a worker killed mid-run), intervals are honoured
 * as configured, manifests are immutable and checksummed, and the CLI reports on them.
 */
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { manifestChecksum, parseManifest, type Manifest } from '../src/checkpoints/manifest.js';
import { makeTestEnv, openVault, runCli, seedTasks, startWorkerProcess, waitFor, type TestEnv } from './support/harness.js';

let env: TestEnv;
let vault: Chunkvault | undefined;
const children: Array<{ kill: (s?: NodeJS.Signals) => boolean; exitCode: number | null }> = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  await vault?.close();
  vault = undefined;
  await env.cleanup();
});

async function start(interval: number, extra: Record<string, unknown> = {}): Promise<Chunkvault> {
  env = await makeTestEnv({ storage: { organization: { checkpoint_interval_chunks: interval, ...extra } } });
  vault = await openVault(env);
  return vault;
}

/** Every manifest on disk, read straight from the files and checked against their own checksum. */
async function manifestsOnDisk(): Promise<Manifest[]> {
  const dir = path.join(env.basePath, '_chunkvault', 'checkpoints');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
  return Promise.all(names.map(async (name) => parseManifest(await readFile(path.join(dir, name)), name)));
}

function chunkIdsOf(manifests: Manifest[]): string[] {
  return manifests.flatMap((m) => m.chunks.map((c) => c.chunkId));
}

describe('checkpoints', () => {
  it('writes a checkpoint every checkpoint_interval_chunks stored chunks (test_checkpoint_creation)', async () => {
    const v = await start(5);
    expect(await v.checkpoints.latest()).toBeUndefined();
    await v.startWorkers();
    const tasks = seedTasks(10, 2);
    await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    await waitFor('two checkpoints', async () => (await v.checkpoints.count()) === 2);
    const manifests = await manifestsOnDisk();
    expect(manifests.map((m) => [m.id, m.sequence, m.chunkCount])).toEqual([['cp-00000001', 1, 5], ['cp-00000002', 2, 5]]);
    expect(await v.checkpoints.latest()).toMatchObject({ id: 'cp-00000002', previousId: 'cp-00000001', chunkCount: 5 });
    expect(manifests[0]!.previousId).toBeNull();
    expect(manifests[1]!.previousId).toBe('cp-00000001');
    expect(chunkIdsOf(manifests).sort()).toEqual(tasks.map((t) => t.chunkId).sort());
    const first = manifests[0]!.chunks[0]!;
    const record = await v.catalog.getChunk(first.chunkId);
    expect(first).toMatchObject({ checksum: record!.checksum, algorithm: 'md5', sizeBytes: record!.sizeBytes });
    expect(first.replicas).toHaveLength(2);
    for (const replica of first.replicas) {
      expect(replica).toMatchObject({ backend: 'local', status: 'stored' });
      expect((await readFile(path.join(env.basePath, replica.path))).byteLength).toBe(first.sizeBytes);
    }
    expect(manifests[0]!.totalBytes).toBe(manifests[0]!.chunks.reduce((s, c) => s + c.sizeBytes, 0));
    expect((await v.getStatistics()).checkpoints_created).toBe(2);
  });

  it('honours an interval that does not divide the total, and `checkpoint create` seals the rest', async () => {
    const v = await start(3);
    await v.startWorkers();
    await (await v.producer.store(seedTasks(10, 1))).results({ timeoutMs: 30_000 });
    await waitFor('three checkpoints', async () => (await v.checkpoints.count()) === 3);
    expect((await manifestsOnDisk()).map((m) => m.chunkCount)).toEqual([3, 3, 3]);

    const run = await runCli(['checkpoint', 'create', '--config', env.configPath]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/sealed cp-00000004: 1 chunks/);
    const again = await runCli(['checkpoint', 'create', '--config', env.configPath]);
    expect(again.stdout).toMatch(/nothing stored since the last checkpoint/);
    const manifests = await manifestsOnDisk();
    expect(chunkIdsOf(manifests).sort()).toEqual(seedTasks(10, 1).map((t) => t.chunkId).sort());
  });

  it('writes no checkpoint when create_checkpoints is false', async () => {
    const v = await start(2, { create_checkpoints: false });
    await v.startWorkers();
    await (await v.producer.store(seedTasks(6, 1))).results({ timeoutMs: 30_000 });
    expect(await v.checkpoints.count()).toBe(0);
    expect(await manifestsOnDisk()).toEqual([]);
  });

  it('counts a chunk once however often it is queued, and a degraded chunk once even after its repair re-queue', async () => {
    const v = await start(4);
    await v.startWorkers();
    const tasks = seedTasks(4, 2);
    await Promise.all([v.producer.store(tasks), v.producer.store(tasks)]);
    await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    await (await v.producer.store([...tasks, ...seedTasks(4, 2, 'more')])).results({ timeoutMs: 30_000 });
    await waitFor('two checkpoints', async () => (await v.checkpoints.count()) === 2);
    const ids = chunkIdsOf(await manifestsOnDisk());
    expect(ids).toHaveLength(8);
    expect(new Set(ids).size).toBe(8);
    const redis = new Redis(env.config.chunkvault.redis.url);
    try {
      // The sealed part of the ledger is dropped: sealing cost follows the interval, not the total.
      expect(await redis.zcard(`{${env.prefix}}:catalog:ledger`)).toBe(0);
      expect(await redis.get(`{${env.prefix}}:catalog:ledger:seq`)).toBe('8');
    } finally {
      redis.disconnect();
    }
  });

  it('keeps every stored chunk in exactly one checkpoint with two worker processes, one killed with SIGKILL mid-run', async () => {
    const v = await start(7);
    const tasks = seedTasks(120, 2);
    for (const task of tasks) task.chunkData = Buffer.alloc(256 * 1024, task.chunkId);
    const handle = await v.producer.store(tasks);
    const a = await startWorkerProcess(env);
    const b = await startWorkerProcess(env);
    children.push(a, b);
    await waitFor('some chunks stored', async () => (await v.getStatistics()).total_chunks >= 20, 30_000, 5);
    a.kill('SIGKILL');
    await a.done;
    const c = await startWorkerProcess(env);
    children.push(c);
    const results = await handle.results({ timeoutMs: 90_000 });
    expect(results.every((r) => r.status === 'stored')).toBe(true);

    // Seal what is left (whatever the dead worker's lock held up, and the tail: 120 = 17 x 7 + 1),
    // then compare the union of all manifests with the stored set.
    await v.checkpoints.sealNow();
    const ids = chunkIdsOf(await manifestsOnDisk());
    expect(ids).toHaveLength(120);
    expect(new Set(ids)).toEqual(new Set(tasks.map((t) => t.chunkId)));
    expect((await v.checkpoints.list()).map((e) => e.chunkCount)).toEqual([...Array(17).fill(7), 1]);
  });

  it('removes the manifest of a sealer killed before its commit once that sequence is sealed again', async () => {
    const v = await start(3);
    // What a sealer killed between writing its manifest and committing it leaves behind.
    const body: Omit<Manifest, 'checksum'> = {
      format: 'chunkvault.checkpoint/1', id: 'cp-00000001', sequence: 1, createdAt: new Date(0).toISOString(), previousId: null,
      fromLedgerSeq: 0, toLedgerSeq: 2, chunkCount: 0, totalBytes: 0, chunks: [],
    };
    const checksum = manifestChecksum(body);
    const dir = path.join(env.basePath, '_chunkvault', 'checkpoints');
    await mkdir(dir, { recursive: true });
    const leftover = path.join(dir, `cp-00000001-${checksum.slice(0, 16)}.json`);
    await writeFile(leftover, JSON.stringify({ ...body, checksum }));

    await v.startWorkers();
    await (await v.producer.store(seedTasks(3, 2))).results({ timeoutMs: 30_000 });
    await waitFor('a checkpoint', async () => (await v.checkpoints.count()) === 1);
    const manifests = await manifestsOnDisk();
    expect(manifests.map((m) => [m.id, m.chunkCount])).toEqual([['cp-00000001', 3]]);
    expect((await v.checkpoints.list())[0]!.checksum).toBe(manifests[0]!.checksum);
  });

  it('checkpoint list, show and verify report on the manifests; verify exits 1 on a missing or corrupt replica, and is clean once the bad replicas are repaired', async () => {
    const v = await start(2);
    await v.startWorkers();
    const results = await (await v.producer.store(seedTasks(2, 2))).results({ timeoutMs: 30_000 });
    await waitFor('a checkpoint', async () => (await v.checkpoints.count()) === 1);

    const list = await runCli(['checkpoint', 'list', '--json', '--config', env.configPath]);
    expect(list.code).toBe(0);
    const [entry] = JSON.parse(list.stdout);
    expect(entry).toMatchObject({ id: 'cp-00000001', sequence: 1, chunkCount: 2 });

    const show = await runCli(['checkpoint', 'show', 'cp-00000001', '--config', env.configPath]);
    expect(show.code).toBe(0);
    const manifest = JSON.parse(show.stdout) as Manifest;
    expect(manifestChecksum(manifest)).toBe(manifest.checksum);
    expect(manifest.chunks.map((c) => c.chunkId).sort()).toEqual(['chunk_0', 'chunk_1']);

    const clean = await runCli(['checkpoint', 'verify', 'cp-00000001', '--config', env.configPath]);
    expect(clean.stdout).toMatch(/2 chunks, 4 replicas checked, 0 problem/);
    expect(clean.code).toBe(0);

    await rm(path.join(env.basePath, results[0]!.storagePath));
    const corruptPath = path.join(env.basePath, results[3]!.storagePath);
    const bytes = await readFile(corruptPath);
    bytes[0] = bytes[0]! ^ 0xff;
    await writeFile(corruptPath, bytes);
    const dirty = await runCli(['checkpoint', 'verify', 'cp-00000001', '--json', '--config', env.configPath]);
    expect(dirty.code).toBe(1);
    const report = JSON.parse(dirty.stdout);
    expect(report.problems).toEqual(expect.arrayContaining([
      expect.objectContaining({ replicaId: results[0]!.replicaId, problem: 'missing' }),
      expect.objectContaining({ replicaId: results[3]!.replicaId, problem: expect.stringMatching(/^corrupt: checksum/) }),
    ]));
    expect(report.problems).toHaveLength(2);

    // Verify recorded what it found: both replicas are marked corrupt, with repairs queued.
    expect((await v.getStatistics()).corruptions_found).toBe(2);
    // Reads return the right bytes from the good replicas; the repairs restore both bad ones...
    const got0 = path.join(env.dir, 'got-0.bin');
    const got1 = path.join(env.dir, 'got-1.bin');
    expect((await runCli(['get', results[0]!.chunkId, '-o', got0, '--config', env.configPath])).code).toBe(0);
    expect((await runCli(['get', results[3]!.chunkId, '-o', got1, '--config', env.configPath])).code).toBe(0);
    const tasks = seedTasks(2, 2);
    expect((await readFile(got0)).equals(tasks.find((t) => t.chunkId === results[0]!.chunkId)!.chunkData as Buffer)).toBe(true);
    expect((await readFile(got1)).equals(tasks.find((t) => t.chunkId === results[3]!.chunkId)!.chunkData as Buffer)).toBe(true);
    await waitFor('both repairs', async () => (await v.getStatistics()).repairs_done === 2);
    // ...after which the checkpoint verifies clean again.
    const repaired = await runCli(['checkpoint', 'verify', 'cp-00000001', '--config', env.configPath]);
    expect(repaired.stdout).toMatch(/4 replicas checked, 0 problem/);
    expect(repaired.code).toBe(0);

    expect((await runCli(['checkpoint', 'show', 'cp-00000099', '--config', env.configPath])).code).toBe(1);
  });

  it('refuses a manifest whose bytes were altered', async () => {
    const v = await start(1);
    await v.startWorkers();
    await (await v.producer.store(seedTasks(1, 1))).results({ timeoutMs: 30_000 });
    await waitFor('a checkpoint', async () => (await v.checkpoints.count()) === 1);
    const dir = path.join(env.basePath, '_chunkvault', 'checkpoints');
    const [name] = await readdir(dir);
    expect(name).toMatch(/^cp-00000001-[0-9a-f]{16}\.json$/);
    const file = path.join(dir, name!);
    const manifest = JSON.parse(await readFile(file, 'utf8'));
    manifest.chunks[0].sizeBytes += 1;
    await writeFile(file, JSON.stringify(manifest));
    await expect(v.checkpoints.manifest('cp-00000001')).rejects.toThrow(/cp-00000001: manifest checksum is [0-9a-f]{64}, it records/);
  });
});
