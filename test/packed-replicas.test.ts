/**
 * Small replicas in pack files on the local backend (chunkvault.packing.max_chunk_bytes):
 * stored as records of packs in the partition directories, read back verified, found by scrub
 * when damaged and repaired into a new record, deleted by retention in their pack, rebuilt by
 * reindex from the backend alone; larger chunks keep a file each.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import { parsePackedKey } from '../src/backends/pack/packed-key.js';
import { packNameOf, THIS_HOST_TAG } from '../src/backends/pack/pack-writer.js';
import { scanPack } from '../src/backends/pack/pack-scan.js';
import type { StoredChunk } from '../src/domain/types.js';
import { startPrivateRedis, type PrivateRedis } from '../src/redis/private-redis.js';
import { failingBackends, journalMetadata, makeTestEnv, openVault, seedTasks, waitFor, type TestEnv } from './support/harness.js';
import { Compression } from '../src/maintenance/compression.js';
import { createLogger } from '../src/logging/logger.js';

const DAY = 24 * 3600 * 1000;
const PACKING = { chunkvault: { packing: { max_chunk_bytes: 64 * 1024 } } };
let env: TestEnv;
let vault: Chunkvault | undefined;
let redisServer: PrivateRedis | undefined;

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  await env.cleanup();
  await redisServer?.stop();
  redisServer = undefined;
});

async function start(overrides: Record<string, unknown> = {}, redisUrl?: string): Promise<Chunkvault> {
  env = await makeTestEnv({ ...PACKING, ...overrides }, ...(redisUrl ? [redisUrl] : []));
  vault = await openVault(env);
  await vault.startWorkers();
  return vault;
}

const packOf = (r: StoredChunk) => path.join(env.basePath, parsePackedKey(r.storagePath)!.pack);
const original = (tasks: ReturnType<typeof seedTasks>, chunkId: string) => tasks.find((t) => t.chunkId === chunkId)!.chunkData as Buffer;

/** Every file under `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe('packed replicas', () => {
  it('are stored as records of packs in their partition directory, read back verified, and a larger chunk keeps a file', async () => {
    const v = await start();
    const tasks = seedTasks(6, 2);
    const big = { ...seedTasks(1, 2, 'big')[0]!, chunkData: Buffer.alloc(100 * 1024, 9) };
    const results = await (await v.producer.store([...tasks, big])).results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status)).toEqual(Array(14).fill('stored'));
    const small = results.filter((r) => !r.chunkId.startsWith('big'));
    for (const r of small) expect(r.storagePath).toMatch(/^\d{4}\/\d{2}\/\d{2}\/[a-z0-9]+-[0-9a-f]{6}-[a-z0-9]+-[0-9a-f]{4}\.pack#\d+=\d+$/);
    // Within Redis's hash-max-listpack-value (64) even at a full pack's offsets, so the record stays a listpack.
    for (const r of small) expect(r.storagePath.replace(/#.*$/, '#67108864=262144').length).toBeLessThanOrEqual(64);
    for (const r of results.filter((r) => r.chunkId.startsWith('big'))) expect(r.storagePath).toMatch(/\.dat$/);

    const data = (await filesUnder(env.basePath)).filter((f) => !f.startsWith('_chunkvault') && !f.startsWith('.chunkvault'));
    expect(data.filter((f) => f.endsWith('.dat'))).toHaveLength(2);
    const packs = data.filter((f) => f.endsWith('.pack'));
    expect(packs.length).toBeGreaterThanOrEqual(1);
    expect(packs.length).toBeLessThanOrEqual(2); // one open pack per worker process and partition
    const records = (await Promise.all(packs.map((p) => scanPack(path.join(env.basePath, p))))).flatMap((s) => s.records);
    expect(records.flatMap((r) => (r.header.kind === 'replica' ? [`${r.header.chunkId}/${r.header.replicaId}`] : [])).sort()).toEqual(small.map((r) => `${r.chunkId}/${r.replicaId}`).sort());

    for (const t of tasks) expect(await v.getChunk(t.chunkId)).toEqual(t.chunkData);
    const stats = await v.getStatistics();
    expect(stats.total_replicas).toBe(14);
  });

  it('has flipped bytes inside a pack found by scrub and repaired into a new record; the other records are untouched', async () => {
    const v = await start();
    const tasks = seedTasks(3, 2);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const victim = results[2]!;
    const { offset, length } = parsePackedKey(victim.storagePath)!;
    const pack = await readFile(packOf(victim));
    pack[offset + length - 5] = pack[offset + length - 5]! ^ 0x55; // inside its body
    await writeFile(packOf(victim), pack);

    const report = await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + DAY });
    expect(report.scrub).toMatchObject({ replicasChecked: 6, corruptFound: 1, repairsQueued: 1 });
    const repaired = await waitFor('the repair', async () => {
      const record = await v.catalog.getReplica(victim.chunkId, victim.replicaId);
      return record?.status === 'stored' && record.path !== victim.storagePath ? record : undefined;
    });
    expect(parsePackedKey(repaired.path)).toBeDefined();
    expect(await v.getChunk(victim.chunkId)).toEqual(original(tasks, victim.chunkId));
    // The damaged record stays damaged on disk (nothing points at it); compaction will drop it.
    const scan = await scanPack(packOf(victim));
    expect(scan.damaged.map((d) => d.offset)).toEqual([offset]);
    const again = await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + 2 * DAY });
    expect(again.scrub).toMatchObject({ replicasChecked: 6, corruptFound: 0 });
  });

  it('are deleted by retention in their pack (marked, the pack kept for the others) and never read again', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 30 } } });
    const results = await (await v.producer.store(seedTasks(2, 2, 'old'))).results({ timeoutMs: 30_000 });
    const cutoff = Math.max(...results.map((r) => Date.parse(r.storedAt)));
    const kept = await (await v.producer.store(seedTasks(1, 2, 'new'))).results({ timeoutMs: 30_000 });
    const report = await v.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * DAY + 1 });
    expect(report.retention).toMatchObject({ replicasDeleted: 4, chunksExpired: 2 });
    const backend = v.backends.byName('local')!;
    for (const r of results) expect(await backend.head(r.storagePath)).toBeUndefined();
    await expect(v.getChunk('old_0')).rejects.toThrow(/deleted by retention/);
    const scans = await Promise.all([...new Set([...results, ...kept].map(packOf))].map((p) => scanPack(p)));
    const deleted = scans.flatMap((s) => s.records.flatMap((r) => (r.deleted && r.header.kind === 'replica' ? [r.header.chunkId] : []))).sort();
    expect(deleted).toEqual(['old_0', 'old_0', 'old_1', 'old_1']);
    expect(await v.getChunk('new_0')).toBeDefined();
  });

  it('are found again by reindex from the backend alone, and verified with --verify', async () => {
    redisServer = await startPrivateRedis();
    const v = await start({}, redisServer.url);
    const tasks = seedTasks(4, 2);
    await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const admin = new Redis(redisServer.url);
    await admin.flushall();
    admin.disconnect();
    const report = await v.reindex({ verify: true });
    expect(report).toMatchObject({ restored: 8, problems: [] });
    for (const t of tasks) expect(await v.getChunk(t.chunkId)).toEqual(t.chunkData);
  });

  it('are compacted once retention emptied their pack: the live ones move to a new pack with their metadata, the old pack goes; a dry run changes nothing', async () => {
    let v = await start({ storage: { cleanup: { retention_days: 30 } } });
    const old = await (await v.producer.store(seedTasks(6, 2, 'old'))).results({ timeoutMs: 30_000 });
    const keptTasks = seedTasks(1, 2, 'new');
    const kept = await (await v.producer.store(keptTasks)).results({ timeoutMs: 30_000 });
    const pack = packOf(kept[0]!);
    expect(old.every((r) => packOf(r) === pack)).toBe(true);
    // The workers' writer seals its pack when it closes; until then it may append to it.
    await v.close();
    vault = v = await openVault(env);
    const cutoff = Math.max(...old.map((r) => Date.parse(r.storedAt)));
    await v.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * DAY + 1 });

    const dry = await v.maintenance.runPass({ tasks: ['compaction'], dryRun: true });
    expect(dry.compaction).toMatchObject({ dryRun: true, packsCompacted: 1, replicasMoved: 2, items: [{ pack: path.relative(env.basePath, pack), liveReplicas: 2 }] });
    expect((await v.catalog.getReplica('new_0', 'new_0_replica_0'))?.path).toBe(kept.find((r) => r.replicaId.endsWith('_0'))!.storagePath);
    await expect(readFile(pack)).resolves.toBeDefined();

    const report = await v.maintenance.runPass({ tasks: ['compaction'] });
    expect(report.compaction).toMatchObject({ dryRun: false, packsCompacted: 1, replicasMoved: 2 });
    expect(report.compaction!.bytesAfter).toBeLessThan(report.compaction!.bytesBefore / 4);
    await expect(readFile(pack)).rejects.toThrow(/ENOENT/);
    const journal = await journalMetadata(env.basePath);
    for (const r of kept) {
      const record = (await v.catalog.getReplica(r.chunkId, r.replicaId))!;
      expect(record.path).not.toBe(r.storagePath);
      expect(parsePackedKey(record.path)).toBeDefined();
      expect(journal.get(`${r.chunkId}/${r.replicaId}`)?.path).toBe(record.path);
    }
    expect(await v.getChunk('new_0')).toEqual(keptTasks[0]!.chunkData);
    const scrub = await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + DAY });
    expect(scrub.scrub).toMatchObject({ replicasChecked: 2, corruptFound: 0 });
  });

  it('never compacts a pack its writer may still append to', async () => {
    const v = await start({ storage: { cleanup: { retention_days: 30 } } });
    const old = await (await v.producer.store(seedTasks(3, 2, 'old'))).results({ timeoutMs: 30_000 });
    const cutoff = Math.max(...old.map((r) => Date.parse(r.storedAt)));
    await v.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * DAY + 1 });
    const report = await v.maintenance.runPass({ tasks: ['compaction'] });
    expect(report.compaction).toMatchObject({ packsCompacted: 0, packsSkipped: 1 });
    await expect(readFile(packOf(old[0]!))).resolves.toBeDefined();
    // The same pack again once its writer sealed it: nothing in it is live, it goes.
    await v.close();
    vault = await openVault(env);
    const again = await vault.maintenance.runPass({ tasks: ['compaction'] });
    expect(again.compaction).toMatchObject({ packsCompacted: 1, replicasMoved: 0, packsSkipped: 0 });
    await expect(readFile(packOf(old[0]!))).rejects.toThrow(/ENOENT/);
  });

  it('survive a compaction that died after copying them, before the catalog moved: all stay readable, and the next pass finishes it', async () => {
    let v = await start({ storage: { cleanup: { retention_days: 30 } } });
    const old = await (await v.producer.store(seedTasks(4, 2, 'old'))).results({ timeoutMs: 30_000 });
    const keptTasks = seedTasks(1, 2, 'new');
    const kept = await (await v.producer.store(keptTasks)).results({ timeoutMs: 30_000 });
    await v.close();
    vault = v = await openVault(env);
    const cutoff = Math.max(...old.map((r) => Date.parse(r.storedAt)));
    await v.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * DAY + 1 });
    // What a pass that died mid-way left: copies of the live records in a new pack, the
    // metadata naming them, the catalog still at the old pack.
    const backend = v.backends.byName('local')!;
    for (const r of kept) {
      const { pack, offset, length } = parsePackedKey(r.storagePath)!;
      const body = await backend.packs!.body({ pack, offset, length });
      const copy = await backend.packs!.append(pack, { kind: 'replica', chunkId: r.chunkId, replicaId: r.replicaId, checksum: `md5:${r.checksum}`, sizeBytes: body.byteLength }, body);
      const record = (await v.catalog.getReplica(r.chunkId, r.replicaId))!;
      await v.metadata.of(backend).record({ ...record, path: copy, createdAtMs: Date.parse(r.storedAt) });
    }
    expect(await v.getChunk('new_0')).toEqual(keptTasks[0]!.chunkData);

    const report = await v.maintenance.runPass({ tasks: ['compaction'] });
    expect(report.compaction).toMatchObject({ packsCompacted: 1, replicasMoved: 2 });
    await expect(readFile(packOf(kept[0]!))).rejects.toThrow(/ENOENT/);
    const journal = await journalMetadata(env.basePath);
    for (const r of kept) expect(journal.get(`${r.chunkId}/${r.replicaId}`)?.path).toBe((await v.catalog.getReplica(r.chunkId, r.replicaId))!.path);
    expect(await v.getChunk('new_0')).toEqual(keptTasks[0]!.chunkData);
    expect((await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + DAY })).scrub).toMatchObject({ replicasChecked: 2, corruptFound: 0 });
  });

  it('are compressed once aged into new records of a pack, read back decoded; the originals are marked deleted and compaction takes them', async () => {
    let v = await start({ storage: { cleanup: { compression_age_days: 7 } } });
    const tasks = seedTasks(3, 2); // 'test data i' repeated: compresses well
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const report = await v.maintenance.runPass({ tasks: ['compression'], now: () => Date.now() + 8 * DAY });
    expect(report.compression).toMatchObject({ replicasCompressed: 6 });
    for (const r of results) {
      const record = (await v.catalog.getReplica(r.chunkId, r.replicaId))!;
      expect(record).toMatchObject({ codec: 'zstd' });
      expect(parsePackedKey(record.path)).toBeDefined();
      expect(record.path).not.toBe(r.storagePath);
      expect(record.storedBytes).toBeLessThan(r.sizeBytes / 10);
      expect(await v.backends.byName('local')!.head(r.storagePath)).toBeUndefined(); // the original: deleted in its pack
    }
    for (const t of tasks) expect(await v.getChunk(t.chunkId)).toEqual(t.chunkData);
    expect((await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + 9 * DAY })).scrub).toMatchObject({ replicasChecked: 6, corruptFound: 0 });
    await v.close();
    vault = v = await openVault(env);
    const compaction = await v.maintenance.runPass({ tasks: ['compaction'] });
    expect(compaction.compaction).toMatchObject({ packsCompacted: 1, replicasMoved: 6 });
    expect(compaction.compaction!.bytesAfter).toBeLessThan(compaction.compaction!.bytesBefore / 5);
    for (const t of tasks) expect(await v.getChunk(t.chunkId)).toEqual(t.chunkData);
  });

  it('have a compression that died after the catalog switched, before the original was marked deleted, finished by the next pass', async () => {
    const v = await start({ storage: { cleanup: { compression_age_days: 7 } } });
    const tasks = seedTasks(1, 1);
    const [result] = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const backends = failingBackends(v.config, 'delete', /\.pack#/);
    const crashing = new Compression({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends, logger: createLogger('silent') });
    await expect(crashing.run(Date.now() + 8 * DAY, false)).rejects.toThrow(/simulated crash/);
    await backends.close();
    const record = (await v.catalog.getReplica(result!.chunkId, result!.replicaId))!;
    expect(record).toMatchObject({ codec: 'zstd' });
    const local = v.backends.byName('local')!;
    expect(await local.head(result!.storagePath)).toBeDefined(); // the original is still live in its pack

    const report = await v.maintenance.runPass({ tasks: ['compression'], now: () => Date.now() + 8 * DAY });
    expect(report.compression).toMatchObject({ recovered: 1 });
    expect(await local.head(result!.storagePath)).toBeUndefined(); // the original, not the compressed record
    expect(await local.head(record.path)).toBeDefined();
    expect(await v.getChunk(result!.chunkId)).toEqual(tasks[0]!.chunkData);
  });

  it('have a pack file whose writer died before writing its header removed by compaction once it is left alone', async () => {
    const v = await start();
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!; // a pid that has exited
    const dir = path.join(env.basePath, '2026', '12', '06');
    await mkdir(dir, { recursive: true });
    const torn = path.join(dir, packNameOf({ createdAtMs: Date.now(), hostTag: THIS_HOST_TAG, pid: dead, random: 'f00d' }));
    await writeFile(torn, Buffer.from('CVP')); // cut inside its 16-byte header
    const fresh = await v.maintenance.runPass({ tasks: ['compaction'] });
    expect(fresh.compaction).toMatchObject({ packsCompacted: 0, packsSkipped: 1 }); // just written: it waits
    const aMinuteAgo = new Date(Date.now() - 2 * 60_000);
    await utimes(torn, aMinuteAgo, aMinuteAgo);
    const report = await v.maintenance.runPass({ tasks: ['compaction'] });
    expect(report.compaction).toMatchObject({ packsCompacted: 1, replicasMoved: 0 });
    await expect(readFile(torn)).rejects.toThrow(/ENOENT/);
  });
});

