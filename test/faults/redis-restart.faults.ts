/**
 * Redis crashed (SIGKILL) and restarted mid-run, under real worker processes and a producer.
 *
 * With AOF persistence (`appendonly yes`, `appendfsync always`) nothing acknowledged by Redis
 * is lost: workers and producer reconnect and every replica completes; all invariants hold.
 *
 * Without persistence the restart loses everything Redis held (queues, catalog index,
 * checkpoint index). The backend stays the source of truth: `reindex` rebuilds the catalog
 * from it, every chunk acknowledged before the loss is intact, and replicas whose jobs were
 * lost are reported to the producer (handle.results says failed, naming the loss), never
 * silently dropped. The producer then re-submits them (store() is idempotent) and they complete.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Chunkvault } from '../../src/app.js';
import type { StoredChunk } from '../../src/domain/types.js';
import { makeTestEnv, openVault, stagedEntries, type TestEnv } from '../support/harness.js';
import { Acknowledgements, Rng, Workload, scenarioSeed } from './support/workload.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { FigureRecorder } from './support/figures.js';
import { WorkerFleet } from './support/worker-fleet.js';
import { acknowledge, submit } from './support/ingest.js';
import { RedisServer } from './support/redis-server.js';
import { queuesDrained } from './support/scenario-run.js';

const STAGED_ORPHAN_AFTER_MS = 1000;
const REPRODUCE = 'npx vitest run --config vitest.faults.config.ts test/faults/redis-restart.faults.ts';
const withAof = new FigureRecorder('redis-restart-aof', 'Redis (AOF, appendfsync always) crashed with SIGKILL and restarted mid-run, 2 worker processes', REPRODUCE);
const withoutPersistence = new FigureRecorder('redis-restart-no-persistence', 'Redis without persistence crashed mid-run (everything in Redis lost); reindex, lost jobs reported, producer re-submits', REPRODUCE);

let redis: RedisServer | undefined;
let env: TestEnv | undefined;
let vault: Chunkvault | undefined;
let fleet: WorkerFleet | undefined;

afterEach(async () => {
  await fleet?.close();
  await vault?.close();
  await env?.cleanup();
  await redis?.stop();
  fleet = vault = env = redis = undefined;
});
afterAll(async () => {
  await withAof.write();
  await withoutPersistence.write();
});

async function setUp(persistence: 'aof' | 'none'): Promise<{ v: Chunkvault; e: TestEnv; f: WorkerFleet; r: RedisServer }> {
  redis = new RedisServer(persistence);
  await redis.start();
  env = await makeTestEnv({
    storage: { organization: { checkpoint_interval_chunks: 25 }, performance: { max_concurrent_writes: 8 } },
    // Staged bytes of lost jobs are freed by a starting worker once older than this.
    chunkvault: { retry: { attempts: 8, backoff_ms: 50 }, worker: { concurrency: 8, stale_temp_after_ms: STAGED_ORPHAN_AFTER_MS } },
  }, redis.url);
  vault = await openVault(env);
  fleet = new WorkerFleet(env);
  await fleet.start(2);
  return { v: vault, e: env, f: fleet, r: redis };
}

describe('Redis restarted mid-run with AOF persistence', () => {
  const seed = scenarioSeed(303);
  it(`(seed ${seed}) workers and producer reconnect, everything completes, every invariant holds`, async () => {
    const started = Date.now();
    const { v, f, r } = await setUp('aof');
    const rng = new Rng(seed);
    const workload = new Workload({ seed, chunks: 400, maxBytes: 256 * 1024 });
    const acks = new Acknowledgements();
    let crashes = 0;
    // Eight batches; batches 1-3 are queued only once Redis has crashed as often as their
    // index, so every crash lands among writes (and store() calls) in flight however fast
    // the run is.
    const ingest = (async () => {
      const handles = await submit(v, workload, acks, {
        batch: 50,
        beforeBatch: async (index) => {
          while (crashes < Math.min(index, 3)) await sleep(25);
        },
      });
      await acknowledge(handles, acks, 200_000);
    })();
    const done = ingest.then(() => true, () => true);
    // Crash Redis at seeded moments while the run goes on (3 times), each down for a seeded while.
    while (crashes < 3 && !(await Promise.race([done, sleep(300 + rng.int(0, 1200)).then(() => false)]))) {
      await r.crashAndRestart(rng.int(100, 1500));
      crashes += 1;
    }
    await ingest;
    // Acknowledged is not finished: chunk jobs (staging release, checkpoints) may still run.
    await queuesDrained(v);
    await f.stop();
    const report = await checkInvariants(v, workload, { acks, faultsInjected: crashes });
    withAof.add(report, Date.now() - started, { redisCrashes: crashes });
    console.log(`[redis-restart-aof] seed ${seed}: ${crashes} crashes, ${JSON.stringify(report.counts)}`);
    expectInvariants(report, REPRODUCE);
    expect(crashes).toBe(3);
    // Nothing failed: with AOF a Redis crash costs no replica.
    expect(report.counts.storedReplicas).toBe(workload.replicaCount);
  });
});

describe('Redis restarted mid-run without persistence', () => {
  const seed = scenarioSeed(404);
  it(`(seed ${seed}) reindex restores the catalog, acknowledged chunks are intact, lost jobs are reported and complete once re-submitted`, async () => {
    const started = Date.now();
    const { v, e, f, r } = await setUp('none');
    const rng = new Rng(seed);
    const workload = new Workload({ seed, chunks: 400, maxBytes: 256 * 1024 });
    const half = 200;
    const acks = new Acknowledgements();
    // The first half is stored and acknowledged before the loss.
    await acknowledge(await submit(v, workload, acks, { batch: 50, to: half }), acks, 120_000);
    const acknowledgedBefore = new Set(acks.acknowledgedChunks);
    expect(acknowledgedBefore.size).toBe(half);

    // The second half is queued; Redis dies while workers are on it and comes back empty.
    const handles = await submit(v, workload, acks, { batch: 50, from: half });
    await sleep(rng.int(300, 1500));
    await r.crashAndRestart(rng.int(100, 800));

    // What the producer is told about the second half: every replica ends, stored or failed with why.
    const told: StoredChunk[] = [];
    for (const handle of handles) told.push(...(await handle.results({ timeoutMs: 120_000, pollIntervalMs: 50 })));
    const lost = told.filter((result) => result.status === 'failed');
    for (const result of lost) expect(result.error).toMatch(/record vanished from the catalog/);
    acks.acknowledge(told.filter((result) => result.status === 'stored'));

    // The operator's part: stop the workers (their in-flight writes finish), rebuild the catalog
    // from the backend, start the workers again.
    await f.stop();
    const reindexed = await v.reindex();
    expect(reindexed.problems).toEqual([]);
    // Everything acknowledged, before the loss or after it, is intact now, before anything is re-submitted.
    const lostAtReindex: string[] = [];
    for (const chunkId of acks.acknowledgedChunks) {
      const bytes = await v.getChunk(chunkId).catch((error: unknown) => Buffer.from(String(error)));
      if (!bytes.equals(workload.bytesOf(chunkId))) lostAtReindex.push(chunkId);
    }
    expect(lostAtReindex).toEqual([]);
    const checkedAtReindex = acks.acknowledgedChunks.size;
    // The jobs Redis lost never free their staged bytes; a worker starting after the loss does.
    const stagedBeforeRestart = (await stagedEntries(e.stagingDir)).length;
    await sleep(STAGED_ORPHAN_AFTER_MS);
    await f.start(2);

    // The producer's part: store again what it was told was lost (store() is idempotent).
    const resubmit = workload.chunks.filter((spec) => lost.some((result) => result.chunkId === spec.chunkId));
    if (resubmit.length) {
      const retryHandle = await v.producer.store(resubmit.map((spec) => workload.task(spec)));
      acks.track(retryHandle);
      const retried = await retryHandle.results({ timeoutMs: 120_000, pollIntervalMs: 50 });
      expect(retried.filter((result) => result.status !== 'stored')).toEqual([]);
      acks.acknowledge(retried);
    }
    await queuesDrained(v);
    await f.stop();

    // Every replica the producer handed over ended up stored, once the lost ones were re-submitted.
    const report = await checkInvariants(v, workload, { acks, faultsInjected: 1 });
    withoutPersistence.add(report, Date.now() - started, {
      redisCrashes: 1, acknowledgedBeforeLoss: acknowledgedBefore.size, replicasReportedLost: lost.length,
      acknowledgedReadBackAtReindex: checkedAtReindex, chunksResubmitted: resubmit.length, stagedOrphansFreedAtRestart: stagedBeforeRestart, reindexRestored: reindexed.restored, reindexCheckpoints: reindexed.checkpoints,
    });
    console.log(`[redis-restart-no-persistence] seed ${seed}: ${lost.length} replicas reported lost, ${resubmit.length} chunks re-submitted, reindex ${JSON.stringify(reindexed)}, ${JSON.stringify(report.counts)}`);
    expectInvariants(report, REPRODUCE);
    expect(report.counts.storedReplicas).toBe(workload.replicaCount);
  });
});
