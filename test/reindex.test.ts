/**
 * The backend is the source of truth: after Redis loses everything, `reindex` finds every
 * stored replica again from the metadata stored beside the data.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { startPrivateRedis, type PrivateRedis } from '../src/redis/private-redis.js';
import { makeTestEnv, openVault, runCli, seedTasks, startWorkerProcess, waitFor, stagedEntries, type TestEnv } from './support/harness.js';

let env: TestEnv;
let vault: Chunkvault | undefined;
let redisServer: PrivateRedis;

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  await env.cleanup();
  await redisServer.stop();
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

    const admin = new Redis(redisServer.url);
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

    const admin = new Redis(redisServer.url);
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

    const admin = new Redis(redisServer.url);
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
    const admin = new Redis(redisServer.url);
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
    const admin = new Redis(redisServer.url);
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

  it('frees staged bytes left behind while the workers run, at their periodic housekeeping (every 15 s)', async () => {
    redisServer = await startPrivateRedis();
    env = await makeTestEnv({ chunkvault: { worker: { stale_temp_after_ms: 1 } } }, redisServer.url);
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

    await waitFor('the periodic sweep to free what no job needs', async () => (await stagedEntries(env.stagingDir)).length === 1, 25_000);
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

    const admin = new Redis(redisServer.url);
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
