/**
 * Each catalog script against a real Redis: what it records, what it replies, that running it
 * twice changes nothing the second time, that the counters move exactly once, and that every
 * key it touches came in its KEYS (or under a key base it was given there), which is what a
 * Redis Cluster client needs to route it. Redis's MONITOR shows each command a script runs.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Catalog, type ChunkRegistration, type StoredReplicaInput } from '../src/catalog/catalog.js';
import { CheckpointIndex, type CheckpointEntry } from '../src/catalog/checkpoint-index.js';
import { CatalogKeys } from '../src/catalog/catalog-keys.js';
import { CATALOG_SCRIPTS, scriptSource } from '../src/catalog/catalog-scripts.js';
import { MINUTE_TTL_SECONDS, SERIES_FIELDS, epochMinute, type SeriesField } from '../src/catalog/minute-series.js';
import { ConflictError } from '../src/errors.js';
import { REDIS_URL, deleteKeys } from './support/harness.js';

let redis: Redis;
let prefix: string;
let keys: CatalogKeys;
let catalog: Catalog;
let index: CheckpointIndex;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(() => {
  redis.disconnect();
});

function fresh(): void {
  prefix = `{cvtest-${randomBytes(5).toString('hex')}}:catalog`;
  keys = new CatalogKeys(prefix);
  catalog = new Catalog(redis, prefix);
  index = new CheckpointIndex(redis, prefix);
}

afterEach(async () => {
  await deleteKeys(REDIS_URL, `${prefix}*`);
});

const registration = (chunkId: string, replicas = 2, checksum = 'c0ffee'): ChunkRegistration => ({
  chunkId, checksum, algorithm: 'md5', sizeBytes: 100, createdAtMs: 1_700_000_000_000,
  replicas: Array.from({ length: replicas }, (_, i) => ({ replicaId: `${chunkId}_r${i}`, backend: 'local', targetNode: `node-${i}`, cloudProvider: 'aws', taskId: 't1' })),
});

const stored = (chunkId: string, i: number, over: Partial<StoredReplicaInput> = {}): StoredReplicaInput => ({
  chunkId, replicaId: `${chunkId}_r${i}`, backend: 'local', path: `${chunkId}/${chunkId}_r${i}.dat`, checksum: 'c0ffee', algorithm: 'md5',
  sizeBytes: 100, targetNode: `node-${i}`, cloudProvider: 'aws', taskId: 't1', storedAt: '2026-12-04T00:00:00.000Z', attempts: 1,
  createdAtMs: 1_700_000_000_000, ...over,
});

const stats = async () => redis.hgetall(keys.stats);

/** Runs `action` and returns the keys of every command a script ran meanwhile. */
async function keysTouched(action: () => Promise<unknown>): Promise<string[]> {
  const monitor = await redis.monitor();
  const touched: string[] = [];
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source.includes('lua') && args.length > 1) touched.push(args[1]!);
  });
  try {
    await action();
    await redis.ping(); // MONITOR delivers in order: once the PING is seen, so are the script's commands
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    monitor.disconnect();
  }
  return touched;
}

describe('catalog scripts', () => {
  it('each script file is complete: a header naming KEYS and the reply, and includes that exist', () => {
    for (const { file } of Object.values(CATALOG_SCRIPTS)) {
      const source = scriptSource(file);
      expect(source, file).toMatch(/KEYS\[1\]/);
      expect(source, file).toMatch(/Reply/);
      expect(source, file).not.toMatch(/--- @include/);
    }
  });

  it('register-chunk: records a chunk and its replicas once, says which need a job, refuses another checksum', async () => {
    fresh();
    const first = await catalog.registerChunk(registration('c1'));
    expect(first).toEqual({ createdAtMs: 1_700_000_000_000, replicas: [{ replicaId: 'c1_r0', action: 'enqueue', generation: 0 }, { replicaId: 'c1_r1', action: 'enqueue', generation: 0 }] });
    expect(await catalog.registerChunk(registration('c1'))).toEqual(first);
    expect(await stats()).toEqual({ chunks_pending: '1' });
    expect((await catalog.getChunk('c1'))?.status).toBe('pending');
    await expect(catalog.registerChunk(registration('c1', 2, 'other'))).rejects.toBeInstanceOf(ConflictError);

    // A stored replica is skipped; a failed one gets a fresh generation and leaves the failed count.
    await catalog.recordStored(stored('c1', 0));
    await catalog.recordFailed('c1', 'c1_r1', 'local', 'disk full', 5);
    expect(await catalog.registerChunk(registration('c1'))).toMatchObject({ replicas: [{ action: 'skip', generation: 0 }, { action: 'enqueue', generation: 1 }] });
    expect(await stats()).toMatchObject({ replicas_failed: '0', replicas_stored: '1', chunks_pending: '1', chunks_degraded: '0' });
  });

  it('register-chunk: chunks registered at once go in one call, and a conflict fails its own chunk alone', async () => {
    fresh();
    await catalog.registerChunk(registration('k2'));
    const outcomes = await Promise.allSettled([
      catalog.registerChunk(registration('k1')), catalog.registerChunk(registration('k2', 2, 'other')), catalog.registerChunk(registration('k3', 1)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect((outcomes[2] as PromiseFulfilledResult<unknown>).value).toEqual({ createdAtMs: 1_700_000_000_000, replicas: [{ replicaId: 'k3_r0', action: 'enqueue', generation: 0 }] });
    expect(await stats()).toEqual({ chunks_pending: '3' });
    expect((await catalog.getChunk('k2'))?.checksum).toBe('c0ffee');
  });

  it('record-stored: moves every counter once, enters the chunk in the ledger once, frees the reservation', async () => {
    fresh();
    await catalog.registerChunk(registration('c1'));
    expect(await catalog.reserveQuota('local', 'c1', 'c1_r0', 100, 1000)).toBeUndefined();
    expect(await catalog.recordStored(stored('c1', 0, { storedBytes: 60, codec: 'zstd', path: 'c1/c1_r0.dat.zst' }))).toBe('pending');
    expect(await catalog.recordStored(stored('c1', 0, { storedBytes: 60, codec: 'zstd', path: 'c1/c1_r0.dat.zst' }))).toBe('pending');
    expect(await catalog.recordStored(stored('c1', 1))).toBe('stored');
    expect(await stats()).toEqual({
      chunks_pending: '0', chunks_stored: '1', replicas_stored: '2', bytes_stored: '160',
      'cloud:aws:count': '2', 'cloud:aws:bytes': '160', 'node:node-0:count': '1', 'node:node-0:bytes': '60', 'node:node-1:count': '1', 'node:node-1:bytes': '100',
      'backend:local:count': '2', 'backend:local:bytes': '160', 'reserved:local': '0',
    });
    expect(await redis.zrange(keys.ledger, 0, -1)).toEqual(['c1']);
    expect(await redis.zcard(keys.verified)).toBe(2);
    expect(await redis.hlen(keys.reserved('local'))).toBe(0);
    expect(await catalog.getReplica('c1', 'c1_r0')).toMatchObject({ status: 'stored', codec: 'zstd', storedBytes: 60, path: 'c1/c1_r0.dat.zst' });
  });

  it('record-stored settles replicas recorded at once in one script call, each as if alone', async () => {
    fresh();
    for (const chunkId of ['b1', 'b2', 'b3']) await catalog.registerChunk(registration(chunkId));
    // A connection of its own whose commands are counted as they are sent.
    const counted = new Redis(REDIS_URL);
    let calls = 0;
    const send = counted.sendCommand.bind(counted);
    counted.sendCommand = (command, stream) => {
      if (command.name === 'evalsha' || command.name === 'eval') calls += 1;
      return send(command, stream);
    };
    const batching = new Catalog(counted, prefix);
    // Once alone first, so Redis holds the script and each call is one EVALSHA.
    const firstMinute = epochMinute(Date.now());
    expect(await batching.recordStored(stored('w0', 0))).toBe('stored');
    calls = 0;
    // Six replicas of three chunks at once, one of them twice (a job that ran twice).
    const statuses = await Promise.all([
      batching.recordStored(stored('b1', 0)), batching.recordStored(stored('b2', 0)), batching.recordStored(stored('b1', 1)),
      batching.recordStored(stored('b2', 1, { storedBytes: 40 })), batching.recordStored(stored('b3', 0)), batching.recordStored(stored('b3', 0)),
    ]);
    counted.disconnect();
    // In order: the first replica of a chunk leaves it pending, the second ends it.
    expect(statuses).toEqual(['pending', 'pending', 'stored', 'stored', 'pending', 'pending']);
    expect(calls).toBe(1);
    expect(await stats()).toMatchObject({ replicas_stored: '6', bytes_stored: String(5 * 100 + 40), chunks_stored: '3', chunks_pending: '1' });
    expect(await redis.zrange(keys.ledger, 0, -1)).toEqual(['w0', 'b1', 'b2']);
    const minutes: Array<Record<string, string>> = [];
    for (let m = firstMinute; m <= epochMinute(Date.now()); m += 1) minutes.push(await redis.hgetall(keys.minute(m)));
    const sum = (field: string) => minutes.reduce((n, minute) => n + Number(minute[field] ?? 0), 0);
    expect([sum('replicas_stored'), sum('bytes_stored')]).toEqual([6, 5 * 100 + 40]);
  });

  it('record-stored without a registration creates the chunk and replica records, as reindex needs', async () => {
    fresh();
    expect(await catalog.recordStored(stored('c9', 0))).toBe('stored');
    expect(await catalog.getChunk('c9')).toMatchObject({ checksum: 'c0ffee', sizeBytes: 100, status: 'stored', createdAt: new Date(1_700_000_000_000).toISOString() });
    expect(await catalog.listReplicas('c9')).toHaveLength(1);
  });

  it('record-failed: unknown replicas say so, stored ones stay stored, a failure counts once', async () => {
    fresh();
    expect(await catalog.recordFailed('nope', 'nope_r0', 'local', 'x', 1)).toBe('unknown');
    await catalog.registerChunk(registration('c1'));
    await catalog.reserveQuota('local', 'c1', 'c1_r1', 100, 0);
    await catalog.recordStored(stored('c1', 0));
    expect(await catalog.recordFailed('c1', 'c1_r0', 'local', 'late duplicate', 2)).toBe('pending');
    expect(await catalog.recordFailed('c1', 'c1_r1', 'local', 'disk full', 5)).toBe('degraded');
    expect(await catalog.recordFailed('c1', 'c1_r1', 'local', 'disk full', 5)).toBe('degraded');
    expect(await stats()).toMatchObject({ replicas_failed: '1', replicas_stored: '1', chunks_degraded: '1', 'reserved:local': '0' });
    expect(await catalog.getReplica('c1', 'c1_r1')).toMatchObject({ status: 'failed', error: 'disk full', attempts: 5 });
  });

  it('reserve-quota: reserves once per replica and refuses what would pass the limit, with the bytes used', async () => {
    fresh();
    expect(await catalog.reserveQuota('local', 'c1', 'c1_r0', 600, 1000)).toBeUndefined();
    expect(await catalog.reserveQuota('local', 'c1', 'c1_r0', 600, 1000)).toBeUndefined();
    expect(await catalog.reserveQuota('local', 'c2', 'c2_r0', 600, 1000)).toBe(600);
    expect(await catalog.reserveQuota('local', 'c2', 'c2_r0', 600, 0)).toBeUndefined();
    expect(await stats()).toEqual({ 'reserved:local': '1200' });
  });

  it('record-corrupt: takes a stored replica out of the stored counters once and keeps its number', async () => {
    fresh();
    await catalog.registerChunk(registration('c1'));
    await catalog.recordStored(stored('c1', 0));
    await catalog.recordStored(stored('c1', 1));
    expect(await catalog.recordCorrupt('c1', 'c1_r0', 'checksum mismatch', 'elsewhere.dat')).toBe(0);
    expect(await catalog.recordCorrupt('c1', 'c1_r0', 'checksum mismatch')).toBe(1);
    expect(await catalog.recordCorrupt('c1', 'c1_r0', 'checksum mismatch')).toBe(1);
    expect(await catalog.recordCorrupt('c1', 'c1_queued', 'x')).toBe(0);
    expect(await stats()).toMatchObject({ replicas_stored: '1', bytes_stored: '100', replicas_corrupt: '1', corruptions_found: '1', chunks_degraded: '1', 'node:node-0:count': '0', 'backend:local:count': '1' });
    expect(await redis.zcard(keys.verified)).toBe(1);
    // Repaired: stored again, and the repair counted.
    expect(await catalog.recordStored(stored('c1', 0))).toBe('stored');
    expect(await stats()).toMatchObject({ replicas_stored: '2', replicas_corrupt: '0', repairs_done: '1', chunks_stored: '1', chunks_degraded: '0' });
  });

  it('record-expired: tombstones stored and corrupt replicas once; an expired chunk leaves the live index', async () => {
    fresh();
    await catalog.registerChunk(registration('c1'));
    await catalog.recordStored(stored('c1', 0));
    await catalog.recordStored(stored('c1', 1));
    await catalog.recordCorrupt('c1', 'c1_r1', 'gone');
    // The stored replica expired, the corrupt one not yet: no data left, so the chunk is failed.
    expect(await catalog.recordExpired('c1', 'c1_r0', '2026-12-05T00:00:00.000Z')).toBe('failed');
    expect(await catalog.recordExpired('c1', 'c1_r0', '2026-12-05T00:00:00.000Z')).toBe('skip');
    expect(await catalog.recordExpired('c1', 'c1_r1', '2026-12-05T00:00:00.000Z')).toBe('expired');
    expect(await stats()).toMatchObject({ replicas_stored: '0', bytes_stored: '0', replicas_expired: '2', bytes_expired: '100', replicas_corrupt: '0', chunks_expired: '1', chunks_degraded: '0', chunks_failed: '0' });
    expect(await redis.zscore(keys.chunks, 'c1')).toBeNull();
  });

  it('record-compressed: moves the byte counters by what was saved, and skips a replica that moved', async () => {
    fresh();
    await catalog.registerChunk(registration('c1', 1));
    await catalog.recordStored(stored('c1', 0));
    expect(await catalog.recordCompressed('c1', 'c1_r0', 'wrong/path.dat', 'x.zst', 'zstd', 30)).toBe('skip');
    expect(await catalog.recordCompressed('c1', 'c1_r0', 'c1/c1_r0.dat', 'c1/c1_r0.dat.zst', 'zstd', 30)).toBe('ok');
    expect(await catalog.recordCompressed('c1', 'c1_r0', 'c1/c1_r0.dat', 'c1/c1_r0.dat.zst', 'zstd', 30)).toBe('skip');
    expect(await stats()).toMatchObject({ bytes_stored: '30', 'cloud:aws:bytes': '30', 'node:node-0:bytes': '30', 'backend:local:bytes': '30', replicas_compressed: '1', bytes_saved_by_compression: '70', replicas_stored: '1' });
  });

  it('segment-chunk-ended: true only for the call that takes the last chunk out', async () => {
    fresh();
    await catalog.trackSegment('seg1', ['a', 'b']);
    expect(await catalog.segmentChunkEnded('seg1', 'a')).toBe(false);
    expect(await catalog.segmentChunkEnded('seg1', 'a')).toBe(false);
    expect(await catalog.segmentChunkEnded('seg1', 'b')).toBe(true);
    expect(await catalog.segmentChunkEnded('seg1', 'b')).toBe(false);
    expect(await redis.exists(keys.staged('seg1'))).toBe(0);
  });

  it('commit-checkpoint: lands only with the lock and an unmoved head, and drops the sealed ledger range', async () => {
    fresh();
    for (const id of ['c1', 'c2', 'c3']) {
      await catalog.registerChunk(registration(id, 1));
      await catalog.recordStored(stored(id, 0));
    }
    const entry: CheckpointEntry = { id: 'cp-00000001', sequence: 1, createdAt: '2026-12-04T00:00:00.000Z', previousId: '', chunkCount: 2, totalBytes: 200, checksum: 'abc', key: '_chunkvault/checkpoints/cp-00000001.json', fromLedgerSeq: 0, toLedgerSeq: 2 };
    expect(await index.commit('not-the-token', 0, entry)).toBe('lost-lock');
    const token = await index.lock.acquire();
    expect(token).toBeTruthy();
    expect(await index.commit(token!, 5, entry)).toBe('moved');
    expect(await index.commit(token!, 0, entry)).toBe('ok');
    expect(await index.commit(token!, 0, entry)).toBe('moved');
    expect(await redis.zrange(keys.ledger, 0, -1)).toEqual(['c3']);
    expect(await index.state()).toEqual({ ledgerSeq: 3, headToSeq: 2, headId: 'cp-00000001', headSequence: 1 });
    expect(await index.get('cp-00000001')).toEqual(entry);
  });

  it('restore-checkpoint and renumber-stranded-ledger: restored chunks are never sealed again, stranded ones are', async () => {
    fresh();
    // Stored while the index was empty: in the ledger at 1, below the head a restore brings back.
    await catalog.registerChunk(registration('late', 1));
    await catalog.recordStored(stored('late', 0));
    const entry: CheckpointEntry = { id: 'cp-00000002', sequence: 2, createdAt: '2026-12-04T00:00:00.000Z', previousId: 'cp-00000001', chunkCount: 2, totalBytes: 200, checksum: 'def', key: 'k', fromLedgerSeq: 10, toLedgerSeq: 12 };
    await index.restore(entry, [
      { chunkId: 'old1', checksum: 'aa', algorithm: 'md5', sizeBytes: 100, createdAtMs: 1_600_000_000_000 },
      { chunkId: 'old2', checksum: 'bb', algorithm: 'md5', sizeBytes: 100, createdAtMs: 1_600_000_000_001 },
    ]);
    expect(await index.state()).toEqual({ ledgerSeq: 12, headToSeq: 12, headId: 'cp-00000002', headSequence: 2 });
    expect(await redis.hget(keys.chunk('old1'), 'ledgerSeq')).toBe('11');
    expect(await redis.hget(keys.chunk('old2'), 'ledgerSeq')).toBe('12');
    expect(await catalog.getChunk('old2')).toMatchObject({ checksum: 'bb', createdAt: new Date(1_600_000_000_001).toISOString() });
    expect(await index.renumberStranded()).toBe(1);
    expect(await index.renumberStranded()).toBe(0);
    expect(await redis.zrange(keys.ledger, 0, -1, 'WITHSCORES')).toEqual(['late', '13']);
  });

  it('the per-minute series counts each event once, as the counters do, leaves out what reindex rebuilds, and expires', async () => {
    fresh();
    const firstMinute = epochMinute(Date.now());
    await catalog.registerChunk(registration('c1', 3));
    for (let run = 0; run < 2; run += 1) {
      // Every transition twice (a job that ran twice): the second changes nothing.
      await catalog.recordStored(stored('c1', 0, { storedBytes: 70 }));
      await catalog.recordStored(stored('c1', 1));
      await catalog.recordFailed('c1', 'c1_r2', 'local', 'disk full', 3);
    }
    for (let run = 0; run < 2; run += 1) await catalog.recordCorrupt('c1', 'c1_r1', 'checksum mismatch');
    for (let run = 0; run < 2; run += 1) await catalog.recordStored(stored('c1', 1)); // the repair
    await catalog.recordStored(stored('rebuilt', 0, { rebuilt: true, sizeBytes: 5000 }));
    const lastMinute = epochMinute(Date.now());

    const series = await catalog.minuteSeries(3);
    expect(series.stepSeconds).toBe(60);
    expect(Date.parse(series.start)).toBe((lastMinute - 2) * 60_000);
    const total = (field: SeriesField) => series.values[field].reduce((sum, n) => sum + n, 0);
    expect(Object.fromEntries(SERIES_FIELDS.map((field) => [field, total(field)]))).toEqual({
      replicas_stored: 3, bytes_stored: 70 + 100 + 100, replicas_failed: 1, corruptions_found: 1, repairs_done: 1,
    });
    // The counters moved by as much (plus the rebuilt replica, which they do count).
    expect(await stats()).toMatchObject({ replicas_stored: '3', replicas_failed: '1', corruptions_found: '1', repairs_done: '1', bytes_stored: String(70 + 100 + 5000) });
    for (let m = firstMinute; m <= lastMinute; m += 1) {
      const ttl = await redis.ttl(keys.minute(m));
      if (ttl !== -2) expect(ttl).toBeGreaterThan(MINUTE_TTL_SECONDS - 60);
      expect(ttl).toBeLessThanOrEqual(MINUTE_TTL_SECONDS);
    }
    // Minutes before the first event hold nothing, and the window ends with the current minute.
    expect(series.values.replicas_stored.slice(0, 3 - (lastMinute - firstMinute + 1))).toEqual(new Array(3 - (lastMinute - firstMinute + 1)).fill(0));
    await expect(catalog.minuteSeries(0)).rejects.toThrow(RangeError);
  });

  it('every key a script touches came in its KEYS, or under a key base it got there', async () => {
    fresh();
    const firstMinute = epochMinute(Date.now());
    const touched = await keysTouched(async () => {
      await catalog.registerChunk(registration('c1'));
      await catalog.reserveQuota('local', 'c1', 'c1_r0', 100, 1000);
      await catalog.recordStored(stored('c1', 0));
      await catalog.recordFailed('c1', 'c1_r1', 'local', 'x', 1);
      await catalog.recordCorrupt('c1', 'c1_r0', 'x');
      await catalog.recordStored(stored('c1', 0));
      await catalog.recordCompressed('c1', 'c1_r0', 'c1/c1_r0.dat', 'c1/c1_r0.dat.zst', 'zstd', 10);
      await catalog.recordExpired('c1', 'c1_r0', '2026-12-05T00:00:00.000Z');
      await catalog.trackSegment('s', ['c1']);
      await catalog.segmentChunkEnded('s', 'c1');
      const token = (await index.lock.acquire())!;
      const entry: CheckpointEntry = { id: 'cp-00000001', sequence: 1, createdAt: 'x', previousId: '', chunkCount: 1, totalBytes: 100, checksum: 'a', key: 'k', fromLedgerSeq: 0, toLedgerSeq: 1 };
      await index.commit(token, 0, entry);
      await index.restore({ ...entry, id: 'cp-00000002', sequence: 2, fromLedgerSeq: 1, toLedgerSeq: 2 }, [{ chunkId: 'c2', checksum: 'b', algorithm: 'md5', sizeBytes: 1, createdAtMs: 1 }]);
      await index.renumberStranded();
    });
    // Declared: the fixed keys, the records of chunks c1/c2 and replicas of c1 (given whole or as
    // a key base), the backend's reservations, the segment and the checkpoint entries.
    const declared = [
      keys.stats, keys.chunks, keys.verified, keys.ledger, keys.ledgerSeq, keys.checkpoints, keys.checkpointHead, keys.checkpointLock,
      keys.chunk('c1'), keys.chunkReplicas('c1'), keys.chunk('c2'), keys.reserved('local'), keys.staged('s'), keys.checkpoint('cp-00000001'), keys.checkpoint('cp-00000002'),
    ];
    // The per-minute series' hash of each minute the scripts ran in.
    for (let m = firstMinute; m <= epochMinute(Date.now()); m += 1) declared.push(keys.minute(m));
    // Only this file's catalog: other processes may run scripts on the same Redis meanwhile, and
    // a key outside the prefix could only come from a name written into the Lua itself.
    const ours = touched.filter((key) => key.startsWith(prefix.slice(0, prefix.indexOf('}') + 1)));
    expect(ours.length).toBeGreaterThan(50);
    for (const key of ours) {
      const ok = declared.includes(key) || key.startsWith(keys.replicaBase('c1'));
      expect(ok, `a script touched ${key}, which no KEYS entry names`).toBe(true);
    }
  });
});
