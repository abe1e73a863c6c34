/**
 * The backend is the source of truth: after Redis loses everything, `reindex` finds every
 * stored replica again from the metadata stored beside the data.
 */
import { open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import type { ReplicaRecord } from '../src/domain/types.js';
import { packedKeyOf, parsePackedKey } from '../src/backends/pack/packed-key.js';
import { scanPack, type ScannedRecord } from '../src/backends/pack/pack-scan.js';
import type { ReplicaRecordHeader } from '../src/backends/pack/pack-format.js';
import { startPrivateRedis, type PrivateRedis } from '../src/redis/private-redis.js';
import { journalMetadata, makeTestEnv, openVault, runCli, seedTasks, startWorkerProcess, waitFor, stagedEntries, type TestEnv } from './support/harness.js';

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

describe('reindex', () => {
  it('rebuilds every replica record and the statistics after a Redis FLUSHALL', async () => {
    redisServer = await startPrivateRedis(); // its own server, so FLUSHALL touches nothing else
    env = await makeTestEnv({}, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const tasks = seedTasks(10, 2);
    tasks[3]!.replicas[0]!.cloudProvider = 'gcp';
    await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const before = await vault.getStatistics();
    const recordsBefore = await vault.catalog.listReplicas('chunk_3');
    await vault.close();
    vault = undefined;

    const admin = new Redis(redisServer!.url);
    await admin.flushall();
    expect(await admin.dbsize()).toBe(0);
    admin.disconnect();

    const run = await runCli(['reindex', '--verify', '--config', env.configPath]);
    expect(run.stdout).toMatch(/read 20 metadata records, indexed 20 replicas, 0 problem\(s\)/);
    expect(run.code).toBe(0);

    vault = await openVault(env);
    const { queues: _liveQueues, ...after } = await vault.getStatistics();
    const { queues: _queuesBefore, ...storedBefore } = before;
    expect(after).toEqual(storedBefore);
    const recordsAfter = await vault.catalog.listReplicas('chunk_3');
    expect(recordsAfter.map(({ attempts: _a, ...r }) => r)).toEqual(recordsBefore.map(({ attempts: _a, ...r }) => r));
    expect((await vault.catalog.getChunk('chunk_3'))!.status).toBe('stored');
  });

  it('restores checkpoints after a FLUSHALL, and never seals their chunks again', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({ storage: { organization: { checkpoint_interval_chunks: 4 } } }, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const tasks = seedTasks(10, 2);
    await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    await waitFor('two checkpoints', async () => (await vault!.checkpoints.count()) === 2);
    const before = await vault.checkpoints.list();
    await vault.close();
    vault = undefined;

    const admin = new Redis(redisServer!.url);
    await admin.flushall();
    admin.disconnect();

    const run = await runCli(['reindex', '--config', env.configPath]);
    expect(run.stdout).toMatch(/restored 2 checkpoints; read 20 metadata records, indexed 20 replicas, 0 problem\(s\)/);
    expect(run.code).toBe(0);

    vault = await openVault(env);
    expect(await vault.checkpoints.list()).toEqual(before);
    expect((await vault.checkpoints.verify('cp-00000002')).problems).toEqual([]);
    // Only the two chunks that were in no checkpoint are sealed now.
    const sealed = await vault.checkpoints.sealNow();
    expect(sealed.map((e) => [e.id, e.chunkCount])).toEqual([['cp-00000003', 2]]);
    const all = await Promise.all((await vault.checkpoints.list()).map((e) => vault!.checkpoints.manifest(e.id)));
    const ids = all.flatMap((m) => m.chunks.map((c) => c.chunkId));
    expect(ids.sort()).toEqual(tasks.map((t) => t.chunkId).sort());
    // The restored chunk records are whole: a read still verifies against them.
    expect((await vault.getChunk('chunk_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
  });

  it('after a Redis loss, a sealer never re-uses a checkpoint id sealed before it, and chunks stored before reindex are sealed after it, each once', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({ storage: { organization: { checkpoint_interval_chunks: 2 } } }, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    await (await vault.producer.store(seedTasks(4, 1))).results({ timeoutMs: 30_000 });
    await waitFor('two checkpoints', async () => (await vault!.checkpoints.count()) === 2);
    const manifestDir = path.join(env.basePath, '_chunkvault', 'checkpoints');
    const sealedBefore = (await readdir(manifestDir)).sort();

    const admin = new Redis(redisServer!.url);
    await admin.flushall();
    admin.disconnect();
    // Workers go on storing into the empty index: a full interval enters the new ledger and its sealer wants cp-00000001.
    await (await vault.producer.store(seedTasks(3, 1, 'after'))).results({ timeoutMs: 30_000 });
    await expect(vault.checkpoints.sealNow()).rejects.toThrow(/checkpoint cp-00000001 already exists on the backend .* Run `chunkvault reindex`/);
    expect((await readdir(manifestDir)).sort()).toEqual(sealedBefore);

    const report = await vault.reindex();
    expect(report).toMatchObject({ checkpoints: 2, problems: [] });
    await vault.checkpoints.sealNow();
    const manifests = await Promise.all((await vault.checkpoints.list()).map((e) => vault!.checkpoints.manifest(e.id)));
    expect(manifests.map((m) => m.id)).toEqual(['cp-00000001', 'cp-00000002', 'cp-00000003', 'cp-00000004']);
    const ids = manifests.flatMap((m) => m.chunks.map((c) => c.chunkId));
    expect(ids.sort()).toEqual([...seedTasks(4, 1), ...seedTasks(3, 1, 'after')].map((t) => t.chunkId).sort());
    expect(new Set(ids).size).toBe(7);
  });

  it('tells a waiting producer which replicas were lost with Redis\'s data (failed, naming the loss) instead of waiting forever; storing them again completes them', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({}, redisServer.url);
    vault = await openVault(env);
    const tasks = seedTasks(3, 2);
    // Queued with no worker running: then Redis loses everything, jobs and records alike.
    const handle = await vault.producer.store(tasks);
    const admin = new Redis(redisServer!.url);
    await admin.flushall();
    admin.disconnect();

    const results = await handle.results({ timeoutMs: 10_000 });
    expect(results).toHaveLength(6);
    for (const result of results) {
      expect(result).toMatchObject({ status: 'failed', error: expect.stringMatching(/record vanished from the catalog .*store the chunk again/) });
    }
    await vault.startWorkers();
    const again = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    expect(again.map((r) => r.status)).toEqual(Array(6).fill('stored'));
  });

  it('frees the staged bytes of jobs Redis lost and of chunks that ended at the next worker start, and keeps those a queued job still needs', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({ chunkvault: { worker: { stale_temp_after_ms: 1 } } }, redisServer.url);
    vault = await openVault(env);
    await vault.producer.store(seedTasks(3, 2, 'lost'));
    expect((await stagedEntries(env.stagingDir)).length).toBeGreaterThan(0);
    const admin = new Redis(redisServer!.url);
    await admin.flushall();
    admin.disconnect();
    const live = await vault.producer.store(seedTasks(1, 2, 'live'));
    await new Promise((resolve) => setTimeout(resolve, 20));

    await vault.startWorkers();
    const stored = await live.results({ timeoutMs: 30_000 });
    expect(stored.map((r) => r.status)).toEqual(['stored', 'stored']);
    // The job that ended the chunk frees its staged bytes just after recording it.
    await waitFor('the live chunk\'s staged bytes to be freed', async () => (await stagedEntries(env.stagingDir)).length === 0);

    // A worker that died between recording the chunk's end and freeing its staged bytes
    // leaves them behind: the next worker start frees them (no job needs them).
    // So does a segment whose last chunk ended (its set of chunks is then dropped too).
    const segment = '_seg#0123456789abcdef01234567';
    await writeFile(path.join(env.stagingDir, `${stored[0]!.chunkId}@0123456789abcdef`), 'left behind');
    await writeFile(path.join(env.stagingDir, segment), 'left behind');
    await vault.catalog.trackSegment(segment, [stored[0]!.chunkId]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await vault.startWorkers();
    expect(await stagedEntries(env.stagingDir)).toEqual([]);
    expect(await vault.catalog.segmentChunks(segment)).toEqual([]);
  });

  it('frees staged bytes left behind while the workers run, at their periodic housekeeping', async () => {
    redisServer = await startPrivateRedis();
    // Housekeeping every 2 s here (15 s by default).
    env = await makeTestEnv({ chunkvault: { worker: { stale_temp_after_ms: 1, housekeeping_interval_ms: 2_000 } } }, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const stored = await (await vault.producer.store(seedTasks(2, 2, 'ended'))).results({ timeoutMs: 30_000 });
    expect(stored.map((r) => r.status)).toEqual(Array(4).fill('stored'));
    await waitFor('the ended chunks\' staged bytes to be freed', async () => (await stagedEntries(env.stagingDir)).length === 0);

    // Left behind after the start-up sweep ran: only the periodic one can free them.
    const segment = '_seg#89abcdef0123456789abcdef';
    await writeFile(path.join(env.stagingDir, `${stored[0]!.chunkId}@fedcba9876543210`), 'left behind');
    await writeFile(path.join(env.stagingDir, segment), 'left behind');
    await vault.catalog.trackSegment(segment, [stored[2]!.chunkId]);
    // A chunk queued but not yet written (its queue paused) keeps its staged bytes through the sweeps.
    await vault.queue('replicas').pause();
    const queued = await vault.producer.store(seedTasks(1, 2, 'queued'));
    const kept = (await stagedEntries(env.stagingDir)).filter((name) => !name.includes('fedcba') && name !== segment);
    expect(kept).toHaveLength(1);

    await waitFor('the periodic sweep to free what no job needs', async () => (await stagedEntries(env.stagingDir)).length === 1, 10_000);
    expect(await stagedEntries(env.stagingDir)).toEqual(kept);
    expect(await vault.catalog.segmentChunks(segment)).toEqual([]);
    await vault.queue('replicas').resume();
    expect((await queued.results({ timeoutMs: 30_000 })).map((r) => r.status)).toEqual(['stored', 'stored']);
  }, 40_000);

  it('finds exactly the kept replicas after retention and a compaction of the journals of two worker processes, one killed', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({ storage: { cleanup: { retention_days: 30 } } }, redisServer.url);
    vault = await openVault(env);
    const journalDir = path.join(env.basePath, '.chunkvault-journal');
    // Two worker processes write (each its own journal file); one is killed, one exits.
    const stored: Array<{ chunkId: string; replicaId: string; storedAt: string }> = [];
    for (const [tag, stop] of [['old', 'SIGKILL'], ['new', 'SIGTERM']] as const) {
      const worker = await startWorkerProcess(env);
      stored.push(...(await (await vault.producer.store(seedTasks(6, 2, tag))).results({ timeoutMs: 30_000 })));
      worker.kill(stop);
      await worker.done;
    }
    expect(await readdir(journalDir)).toHaveLength(2);
    expect(stored.every((r) => 'status' in r && r.status === 'stored')).toBe(true);

    // Retention deletes the old chunks (journalling it, in this process's own file), then the
    // pass merges the two closed files into one snapshot.
    const cutoff = Math.max(...stored.filter((r) => r.chunkId.startsWith('old')).map((r) => Date.parse(r.storedAt)));
    const newest = Math.min(...stored.filter((r) => r.chunkId.startsWith('new')).map((r) => Date.parse(r.storedAt)));
    expect(newest).toBeGreaterThan(cutoff + 1);
    const report = await vault.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * 24 * 3600 * 1000 + 1 });
    expect(report.retention).toMatchObject({ replicasDeleted: 12 });
    expect(report.metadata).toEqual({ filesMerged: 2, entriesRead: 24, entriesKept: 24 }); // the forgets are in the live file
    await vault.close();
    vault = undefined;
    const files = await readdir(journalDir);
    expect(files.filter((f) => f.startsWith('snapshot~'))).toHaveLength(1);
    expect(files).toHaveLength(2); // the snapshot and this process's file with the forgets

    const admin = new Redis(redisServer!.url);
    await admin.flushall();
    admin.disconnect();
    const run = await runCli(['reindex', '--json', '--verify', '--config', env.configPath]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ metadataRecords: 12, restored: 12, problems: [] });
    vault = await openVault(env);
    for (const r of stored) {
      const record = await vault.catalog.getReplica(r.chunkId, r.replicaId);
      if (r.chunkId.startsWith('new')) expect(record).toMatchObject({ status: 'stored' });
      else expect(record).toBeUndefined();
    }
  });

  it('reports missing data, corrupt metadata and data without metadata, reads sidecars from before the journal, and exits 1', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({}, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const results = await (await vault.producer.store(seedTasks(5, 1))).results({ timeoutMs: 30_000 });
    await vault.close();
    vault = undefined;
    const [a, , , d, e] = results.map((r) => path.join(env.basePath, r.storagePath));
    await rm(a!);
    // chunk_1's journal line is damaged, chunk_2's is gone; chunk_3 and chunk_4 have only
    // sidecars, as written before the journal (chunk_4's unreadable).
    const journalDir = path.join(env.basePath, '.chunkvault-journal');
    const [journalFile] = await readdir(journalDir);
    const lines = (await readFile(path.join(journalDir, journalFile!), 'utf8')).split('\n').filter(Boolean);
    const lineOf = (replicaId: string) => lines.findIndex((l) => l.includes(`"replicaId":"${replicaId}"`));
    const sidecarOf3 = JSON.parse(lines[lineOf('chunk_3_replica_0')]!);
    delete sidecarOf3.recordedAtMs;
    lines[lineOf('chunk_1_replica_0')] = '{ not json';
    const kept = lines.filter((_, i) => ![lineOf('chunk_2_replica_0'), lineOf('chunk_3_replica_0'), lineOf('chunk_4_replica_0')].includes(i));
    const damagedLine = kept.indexOf('{ not json') + 1;
    await writeFile(path.join(journalDir, journalFile!), kept.map((l) => `${l}\n`).join(''));
    await writeFile(d!.replace(/\.dat$/, '.meta.json'), JSON.stringify(sidecarOf3));
    await writeFile(e!.replace(/\.dat$/, '.meta.json'), '{ not json');

    const run = await runCli(['reindex', '--json', '--config', env.configPath]);
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout);
    expect(report.restored).toBe(1);
    expect(report.problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/chunk_0_replica_0\.dat: data missing/),
      expect.stringMatching(new RegExp(`local:\\.chunkvault-journal/${journalFile!.replaceAll('.', '\\.')} line ${damagedLine}: unreadable metadata`)),
      expect.stringMatching(/chunk_1_replica_0\.dat: data without metadata/),
      expect.stringMatching(/chunk_2_replica_0\.dat: data without metadata/),
      expect.stringMatching(/chunk_4_replica_0\.meta\.json: unreadable metadata/),
      expect.stringMatching(/chunk_4_replica_0\.dat: data without metadata/),
    ]));
    expect(report.problems).toHaveLength(6);
  });
});

const PACKING = { chunkvault: { packing: { max_chunk_bytes: 64 * 1024 } } };
const DAY = 24 * 3600 * 1000;

/** What reindex rebuilds of a replica's record: all but the counts of its history (attempts, corruptions, generation, last error). */
function rebuiltPart({ attempts: _a, corruptions: _c, generation: _g, error: _e, ...rest }: ReplicaRecord) {
  return rest;
}

async function recordsOf(v: Chunkvault, chunkIds: string[]) {
  return (await Promise.all(chunkIds.map((id) => v.catalog.listReplicas(id)))).flat().map(rebuiltPart);
}

/** Redis loses everything (its own server: nothing else is touched). */
async function flushAll(): Promise<void> {
  const admin = new Redis(redisServer!.url);
  await admin.flushall();
  admin.disconnect();
}

/** The live replica records of the pack `pack`, in order. */
async function replicaRecordsIn(pack: string): Promise<Array<ScannedRecord & { header: ReplicaRecordHeader }>> {
  const scan = await scanPack(path.join(env.basePath, pack));
  return scan.records.filter((r): r is ScannedRecord & { header: ReplicaRecordHeader } => !r.deleted && r.header.kind === 'replica');
}

/** Flips one byte of the file at `offset`, in place. */
async function flipByte(file: string, offset: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0x55;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

describe('reindex of packed replicas', () => {
  it('rebuilds them from their packs\' record headers alone, with no journal: plain, repaired and compressed ones exactly; an expired one stays gone', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({ ...PACKING, storage: { cleanup: { retention_days: 30, compression_age_days: 7 } } }, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const stored = async (tasks: ReturnType<typeof seedTasks>) => (await vault!.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const old = await stored(seedTasks(1, 2, 'old'));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const compressedTasks = seedTasks(1, 2, 'cmp');
    await stored(compressedTasks);
    expect((await vault.maintenance.runPass({ tasks: ['compression'], now: () => Date.now() + 8 * DAY })).compression).toMatchObject({ replicasCompressed: 4 });
    const tasks = seedTasks(3, 2);
    tasks[1]!.replicas[0]!.cloudProvider = 'gcp';
    tasks[2]!.replicas[1]!.targetNode = 'node-b';
    const plain = await stored(tasks);
    expect(plain.every((r) => parsePackedKey(r.storagePath))).toBe(true);
    // Packed replicas have no journal line: their pack's record header is their metadata.
    const journal = await journalMetadata(env.basePath);
    for (const r of plain) expect(journal.get(`${r.chunkId}/${r.replicaId}`)).toBeUndefined();

    // chunk_0's first replica rots in its pack; scrub finds it and a repair rewrites it into a new record.
    const victim = plain.find((r) => r.replicaId === 'chunk_0_replica_0')!;
    const at = parsePackedKey(victim.storagePath)!;
    await flipByte(path.join(env.basePath, at.pack), at.offset + at.length - 3);
    expect((await vault.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + DAY })).scrub).toMatchObject({ corruptFound: 1 });
    await waitFor('the repair', async () => {
      const record = await vault!.catalog.getReplica(victim.chunkId, victim.replicaId);
      return record?.status === 'stored' && record.path !== victim.storagePath;
    });
    // old_0 expires: its records are marked deleted in their pack.
    const cutoff = Math.max(...old.map((r) => Date.parse(r.storedAt)));
    expect((await vault.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * DAY + 1 })).retention).toMatchObject({ replicasDeleted: 2 });

    const chunkIds = ['cmp_0', 'chunk_0', 'chunk_1', 'chunk_2'];
    const before = await recordsOf(vault, chunkIds);
    expect(before.filter((r) => r.codec === 'zstd')).toHaveLength(2);
    const chunksBefore = await Promise.all(chunkIds.map((id) => vault!.catalog.getChunk(id)));
    await vault.close();
    vault = undefined;
    // From the disk alone: the metadata journal (compression and retention wrote to it) is gone too.
    await rm(path.join(env.basePath, '.chunkvault-journal'), { recursive: true, force: true });
    await flushAll();

    const run = await runCli(['reindex', '--verify', '--json', '--config', env.configPath]);
    expect(JSON.parse(run.stdout)).toMatchObject({ metadataRecords: 8, restored: 8, problems: [] });
    expect(run.code).toBe(0);
    vault = await openVault(env);
    expect(await recordsOf(vault, chunkIds)).toEqual(before);
    expect(await Promise.all(chunkIds.map((id) => vault!.catalog.getChunk(id)))).toEqual(chunksBefore);
    expect(await vault.catalog.getReplica('old_0', 'old_0_replica_0')).toBeUndefined();
    for (const t of [...compressedTasks, ...tasks]) expect(await vault.getChunk(t.chunkId)).toEqual(t.chunkData);

    // Again on the live catalog: it changes nothing.
    expect(await vault.reindex({ verify: true })).toMatchObject({ metadataRecords: 8, problems: [] });
    expect(await recordsOf(vault, chunkIds)).toEqual(before);
  }, 60_000);

  it('reports a flipped byte in a pack by pack and offset and restores the rest; of two live records of a replica it takes the newest that checks out', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv(PACKING, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const tasks = seedTasks(4, 2);
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const { pack } = parsePackedKey(results[0]!.storagePath)!;
    expect(results.every((r) => parsePackedKey(r.storagePath)!.pack === pack)).toBe(true);
    const [damaged, copied, miscopied] = await replicaRecordsIn(pack);
    const packs = vault.backends.byName('local')!.packs!;
    const bodyOf = (r: ScannedRecord) => packs.body({ pack, offset: r.offset, length: r.length });
    // What a compaction or repair that died mid-way leaves: a second live record of a replica,
    // newer; and one whose bytes are whole (their CRC good) but not the chunk's.
    const copy = await packs.append(pack, copied!.header, await bodyOf(copied!));
    const wrong = Buffer.from(await bodyOf(miscopied!));
    wrong[0] = wrong[0]! ^ 0xff;
    const wrongCopy = await packs.append(pack, miscopied!.header, wrong);
    await flipByte(path.join(env.basePath, pack), damaged!.bodyOffset + 2);
    await vault.close();
    vault = undefined;
    await flushAll();

    vault = await openVault(env);
    const report = await vault.reindex({ verify: true });
    const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(report.problems).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`^local:${escaped(pack)} at ${damaged!.offset}: \\d+ damaged bytes \\(record CRC mismatch\\)`)),
      expect.stringMatching(new RegExp(`^local:${escaped(wrongCopy)}: checksum [0-9a-f]+ .*its header says`)),
    ]));
    expect(report).toMatchObject({ metadataRecords: 7, restored: 7 });
    expect(report.problems).toHaveLength(2);
    const pathOf = async (h: ReplicaRecordHeader) => (await vault!.catalog.getReplica(h.chunkId, h.replicaId))?.path;
    expect(await pathOf(copied!.header)).toBe(copy);
    expect(await pathOf(miscopied!.header)).toBe(packedKeyOf({ pack, ...miscopied! }));
    expect(await pathOf(damaged!.header)).toBeUndefined();
    for (const r of results) {
      if (r.replicaId !== damaged!.header.replicaId && r.replicaId !== copied!.header.replicaId) expect((await vault.catalog.getReplica(r.chunkId, r.replicaId))?.path).toBe(r.storagePath);
    }
    for (const t of tasks) expect(await vault.getChunk(t.chunkId)).toEqual(t.chunkData);
  }, 60_000);

  it('still reads journal lines of packed replicas from before, once per replica, completing records whose headers lacked metadata', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv(PACKING, redisServer.url);
    vault = await openVault(env);
    await vault.startWorkers();
    const tasks = seedTasks(3, 2);
    tasks[0]!.replicas[0]!.cloudProvider = 'gcp';
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const local = vault.backends.byName('local')!;
    const chunkCreatedAtMs = async (chunkId: string) => Date.parse((await vault!.catalog.getChunk(chunkId))!.createdAt);
    // Older data: each replica had a journal line too (but chunk_1's first, whose line is lost).
    for (const r of results) {
      if (r.replicaId === 'chunk_1_replica_0') continue;
      const record = (await vault.catalog.getReplica(r.chunkId, r.replicaId))!;
      await vault.metadata.of(local).record({ ...record, createdAtMs: await chunkCreatedAtMs(r.chunkId) });
    }
    // A repair from before rewrote two replicas into records whose headers held no metadata
    // (the old ones marked deleted); chunk_0's journal line names its new record.
    const rewritten = new Map<string, string>();
    for (const r of results.filter((r) => r.replicaId.endsWith('_replica_0') && r.chunkId !== 'chunk_2')) {
      const { pack, offset, length } = parsePackedKey(r.storagePath)!;
      const header: ReplicaRecordHeader = { kind: 'replica', chunkId: r.chunkId, replicaId: r.replicaId, checksum: `md5:${r.checksum}`, sizeBytes: r.sizeBytes };
      const key = await local.packs!.append(pack, header, await local.packs!.body({ pack, offset, length }));
      await local.delete(r.storagePath);
      rewritten.set(r.replicaId, key);
      const record = (await vault.catalog.getReplica(r.chunkId, r.replicaId))!;
      if (r.chunkId === 'chunk_0') await vault.metadata.of(local).record({ ...record, path: key, createdAtMs: await chunkCreatedAtMs(r.chunkId) });
    }
    const before = (await recordsOf(vault, ['chunk_0', 'chunk_2'])).map((r) => ({ ...r, path: rewritten.get(r.replicaId) ?? r.path }));
    await vault.close();
    vault = undefined;
    await flushAll();

    vault = await openVault(env);
    const report = await vault.reindex({ verify: true });
    // Six replicas read (five with a journal line as well as a pack record: each counted once).
    expect(report).toMatchObject({ metadataRecords: 6, restored: 5 });
    expect(report.problems).toEqual([
      expect.stringMatching(new RegExp(`^local:${rewritten.get('chunk_1_replica_0')!.replace(/[.#]/g, '\\$&')}: record of chunk_1/chunk_1_replica_0 lacks targetNode, cloudProvider, taskId, createdAtMs, storedAt .*no journal line`)),
    ]);
    expect(await recordsOf(vault, ['chunk_0', 'chunk_2'])).toEqual(before);
    expect((await vault.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))).toMatchObject({ cloudProvider: 'gcp', path: rewritten.get('chunk_0_replica_0') });
    for (const t of tasks) expect(await vault.getChunk(t.chunkId)).toEqual(t.chunkData);
  }, 60_000);

  it('on a live catalog, leaves a replica retention deleted expired though a leftover record of it is live', async () => {
    env = await makeTestEnv({ ...PACKING, storage: { cleanup: { retention_days: 30 } } });
    vault = await openVault(env);
    await vault.startWorkers();
    const [first] = await (await vault.producer.store(seedTasks(1, 1, 'old'))).results({ timeoutMs: 30_000 });
    // A retried write's first append: durable, but nothing points at it.
    const { pack, offset, length } = parsePackedKey(first!.storagePath)!;
    const packs = vault.backends.byName('local')!.packs!;
    const [record] = await replicaRecordsIn(pack);
    await packs.append(pack, record!.header, await packs.body({ pack, offset, length }));
    await vault.maintenance.runPass({ tasks: ['retention'], now: () => Date.parse(first!.storedAt) + 30 * DAY + 1 });
    expect(await vault.catalog.getReplica('old_0', 'old_0_replica_0')).toMatchObject({ status: 'expired' });

    expect(await vault.reindex()).toMatchObject({ metadataRecords: 1, restored: 0, problems: [] });
    expect(await vault.catalog.getReplica('old_0', 'old_0_replica_0')).toMatchObject({ status: 'expired' });
    await expect(vault.getChunk('old_0')).rejects.toThrow(/deleted by retention/);
  });
});
