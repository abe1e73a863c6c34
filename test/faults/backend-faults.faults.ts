/**
 * Backends that fail under a real workload (a `chunkvault worker` process, 150 to 400 chunks of
 * mixed sizes, 2-3 replicas each), then the same invariants as every scenario:
 *
 *  - disk-full:          the local backend's disk (a small tmpfs) fills up mid-run, then space
 *                        is freed: writes retry; what failed for good says why and stores once
 *                        its producer queues it again; run with a file per replica, and with
 *                        small replicas appended to pack files (a full disk fails a commit);
 *  - permission-errors:  two node directories stop taking writes mid-run (a tmpfs remounted
 *                        read-only: EROFS; an ext4 directory made immutable: EPERM, which root
 *                        cannot bypass), then are restored;
 *  - s3-restart:         the S3 server (a radosgw of our own on the shared Ceph cluster) is
 *                        killed mid-run, twice, and restarted: every write lands once;
 *  - faulty-server:      S3, GCS and Azure behind proxies that fail, cut, lose the answer to,
 *                        or damage the body of a seeded random share of requests: nothing
 *                        damaged is ever stored as good or returned by a read.
 *
 * Seeds come from FAULT_SEED when set (see workload.ts); each test names its own in its title.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../../src/app.js';
import type { ReplicaRecord } from '../../src/domain/types.js';
import { ChunkCorruptError } from '../../src/errors.js';
import { makeTestEnv, openVault, startWorkerProcess, waitFor, type TestEnv } from '../support/harness.js';
import { FaultyProxy, type RandomFaults } from '../support/faulty-proxy.js';
import { cloudServers } from '../support/cloud-servers.js';
import { makeImmutable, TmpfsMount } from './support/disk-faults.js';
import { FigureRecorder } from './support/figures.js';
import { acknowledge, submit } from './support/ingest.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { makeCloudEnv, s3Keys, s3OpenUploads, type CloudEnv } from './support/cloud-env.js';
import { PrivateRadosgw } from './support/private-radosgw.js';
import { queuesDrained, stopWorker, type WorkerProcess } from './support/scenario-run.js';
import { Acknowledgements, scenarioSeed, Workload } from './support/workload.js';
import { RESERVED_KEY_PREFIX } from '../../src/storage/storage-layout.js';
import { parsePackedKey } from '../../src/backends/pack/packed-key.js';
import { replicaJobId } from '../../src/jobs/job-table.js';

const FILE = 'test/faults/backend-faults.faults.ts';
const reproduce = (seed: number, title: string) => `FAULT_SEED=${seed} npx vitest run --config vitest.faults.config.ts ${FILE} -t "${title}"`;

/** Undone after each test, last first. */
const teardown: Array<() => unknown> = [];
let vault: Chunkvault | undefined;
let env: TestEnv | undefined;

afterEach(async () => {
  const problems: unknown[] = [];
  await vault?.close().catch((e: unknown) => problems.push(e));
  vault = undefined;
  for (const undo of teardown.splice(0).reverse()) {
    try {
      await undo();
    } catch (error) {
      problems.push(error);
    }
  }
  await env?.cleanup();
  env = undefined;
  if (problems.length) throw new AggregateError(problems, 'teardown failed');
});

/** A worker process, SIGKILLed at teardown if the test has not stopped it. */
async function worker(testEnv: TestEnv, processEnv: NodeJS.ProcessEnv = {}): Promise<WorkerProcess> {
  const child = await startWorkerProcess(testEnv, processEnv);
  teardown.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await child.done;
    }
  });
  return child;
}

/** Every replica record of the workloads' chunks. */
async function recordsOf(vault: Chunkvault, ...workloads: Workload[]): Promise<ReplicaRecord[]> {
  const out: ReplicaRecord[] = [];
  for (const w of workloads) for (const c of w.chunks) out.push(...(await vault.catalog.listReplicas(c.chunkId)));
  return out;
}

/** Queues again every chunk with a replica that failed for good (as a producer does once the cause is fixed); acknowledges the outcome into `acks`. */
async function storeFailedAgain(vault: Chunkvault, workload: Workload, acks: Acknowledgements): Promise<number> {
  const failed = (await recordsOf(vault, workload)).filter((r) => r.status === 'failed');
  const chunkIds = new Set(failed.map((r) => r.chunkId));
  if (chunkIds.size === 0) return 0;
  const again = new Acknowledgements();
  const handle = await vault.producer.store(workload.chunks.filter((c) => chunkIds.has(c.chunkId)).map((c) => workload.task(c)));
  await acknowledge([handle], again, 120_000);
  expect(again.failed.map((r) => `${r.replicaId}: ${r.error}`), 'replicas queued again once the fault was gone').toEqual([]);
  for (const chunkId of again.acknowledgedChunks) acks.acknowledgedChunks.add(chunkId);
  acks.acknowledgedReplicas += failed.length;
  return chunkIds.size;
}

/** tmpfs bytes that hold every replica of `workload` with its sidecar and the checkpoints, with room to spare. */
function bytesToHold(workload: Workload): number {
  const page = 4096;
  let bytes = 0;
  for (const c of workload.chunks) bytes += c.replicas.length * (Math.ceil(c.sizeBytes / page) + 1) * page;
  return bytes + 32 * 1024 * 1024;
}

describe('the disk filling up', () => {
  const figures = new FigureRecorder('disk-full', 'The local backend\'s disk (a tmpfs) fills up mid-run, then space is freed (one run with replicas up to 64 KiB in pack files)', `npx vitest run --config vitest.faults.config.ts ${FILE} -t "disk"`);
  afterAll(() => figures.write());

  // 400 chunks in batches of 50: a quarter of the replicas are stored before the disk fills
  // (the third batch still in flight); the rest are queued one batch every 250 ms while it is
  // full, so when it is freed some replicas have used up their retries on it and others,
  // queued since, still wait in backoff, however fast a worker holding 100 jobs gets through
  // what it has. The second run packs replicas up to 64 KiB (about three in four of these
  // sizes): a full disk fails a whole group commit, or the header of the pack the writer
  // starts after it.
  for (const { fallbackSeed, packing, what } of [
    { fallbackSeed: 8_0803, packing: 0, what: 'writes' },
    { fallbackSeed: 8_0807, packing: 64 * 1024, what: 'appends to pack files' },
  ]) {
    const seed = scenarioSeed(fallbackSeed);
    it(`makes ${what} retry and fail with the reason; once space is freed all acknowledged chunks are intact (seed ${seed})`, async () => {
      const started = Date.now();
      const workload = new Workload({ seed, chunks: 400, maxBytes: 256 * 1024 });
      env = await makeTestEnv({
        storage: { organization: { checkpoint_interval_chunks: 100 }, cleanup: { enable_auto_cleanup: false } },
        chunkvault: { retry: { attempts: 4, backoff_ms: 100 }, packing: { max_chunk_bytes: packing } },
      });
      const disk = await TmpfsMount.mount(env.basePath, bytesToHold(workload));
      teardown.push(() => disk.unmount());
      vault = await openVault(env);
      const child = await worker(env);

      const acks = new Acknowledgements();
      let fullAt: number | undefined;
      let freed = false;
      const submitted = submit(vault, workload, acks, {
        batch: 50,
        beforeBatch: async (index) => {
          if (index < 3) return;
          while (fullAt === undefined) await sleep(10);
          if (!freed) await sleep(250);
        },
      });
      await waitFor('a quarter of the replicas stored', async () => (await vault!.catalog.counters()).replicasStored >= workload.replicaCount / 4, 120_000, 20);
      const fillerBytes = await disk.fill();
      fullAt = Date.now();
      // Full until some replicas used up their retries (the rest wait in backoff), then freed;
      // with packing, until small replicas are among them too (which fail first depends on how
      // many jobs a worker holds: file writes take turns, appends do not).
      const smallFailed = async () => (await recordsOf(vault!, workload)).some((r) => r.status === 'failed' && workload.spec(r.chunkId).sizeBytes <= packing);
      await waitFor('20 replicas failed for good on the full disk', async () => (await vault!.catalog.counters()).replicasFailed >= 20 && (packing === 0 || (await smallFailed())), 120_000, 20);
      await disk.free();
      freed = true;
      const outageMs = Date.now() - fullAt;
      await acknowledge(await submitted, acks, 180_000);

      const failed = (await recordsOf(vault, workload)).filter((r) => r.status === 'failed');
      expect(failed.length).toBeGreaterThanOrEqual(20);
      for (const r of failed) expect(r.error, `${r.replicaId} failed for good`).toMatch(/ENOSPC|no space left/i);
      const retried = (await recordsOf(vault, workload)).filter((r) => r.status === 'stored' && r.attempts > 1);
      expect(retried.length, 'replicas stored after a failed attempt on the full disk').toBeGreaterThan(0);
      const packedFailures = failed.filter((r) => workload.spec(r.chunkId).sizeBytes <= packing).length;
      if (packing > 0) {
        expect(packedFailures, 'small replicas whose appends failed for good on the full disk').toBeGreaterThan(0);
        expect(retried.filter((r) => parsePackedKey(r.path)).length, 'small replicas appended after a failed append').toBeGreaterThan(0);
      }

      const storedAgain = await storeFailedAgain(vault, workload, acks);
      await queuesDrained(vault);
      await stopWorker(child);
      // Space is back: every replica is stored, the small ones in packs, the rest in files.
      for (const r of await recordsOf(vault, workload)) {
        expect(r.status, `${r.replicaId}`).toBe('stored');
        expect(parsePackedKey(r.path) !== undefined, `${r.replicaId} (${workload.spec(r.chunkId).sizeBytes} bytes) at ${r.path}`).toBe(workload.spec(r.chunkId).sizeBytes <= packing);
      }

      const report = await checkInvariants(vault, workload, { acks, faultsInjected: 1 });
      figures.add(report, Date.now() - started, { packing, outageMs, fillerBytes, failedForGood: failed.length, packedFailedForGood: packedFailures, storedAfterRetries: retried.length, chunksStoredAgain: storedAgain });
      expectInvariants(report, reproduce(seed, `makes ${what} retry`));
    });
  }
});

describe('permission errors', () => {
  const seed = scenarioSeed(8_0804);
  const figures = new FigureRecorder('permission-errors', 'Two node directories stop taking writes mid-run (EROFS: tmpfs remounted read-only; EPERM: chattr +i), then are restored', reproduce(seed, 'permission'));
  afterAll(() => figures.write());

  it(`fail the replicas bound there at once, with the reason; the rest store, and once restored everything stores (seed ${seed})`, async () => {
    const started = Date.now();
    // 400 chunks: three quarters of them are still to write when the two directories break,
    // hundreds of replicas bound there (800 only made the run longer).
    const workload = new Workload({ seed, chunks: 400, maxBytes: 256 * 1024 });
    env = await makeTestEnv({
      storage: { organization: { partition_by: 'node', checkpoint_interval_chunks: 100 }, cleanup: { enable_auto_cleanup: false } },
      chunkvault: { retry: { attempts: 3, backoff_ms: 100 } },
    });
    // node-b: its own tmpfs, remounted read-only mid-run; node-c: a plain directory made immutable.
    const readOnlyDir = path.join(env.basePath, 'node-b');
    const immutableDir = path.join(env.basePath, 'node-c');
    const disk = await TmpfsMount.mount(readOnlyDir, bytesToHold(workload));
    teardown.push(() => disk.unmount());
    await mkdir(immutableDir, { recursive: true });
    teardown.push(() => makeImmutable(immutableDir, false)); // before env.cleanup removes it
    teardown.push(() => disk.writable());
    vault = await openVault(env);
    const child = await worker(env);

    const acks = new Acknowledgements();
    const submitted = submit(vault, workload, acks, { batch: 250 });
    await waitFor('a quarter of the replicas stored', async () => (await vault!.catalog.counters()).replicasStored >= workload.replicaCount / 4, 120_000, 20);
    const brokenAt = Date.now();
    await disk.readOnly();
    makeImmutable(immutableDir, true);
    const failedOn = async (node: string) => (await recordsOf(vault!, workload)).filter((r) => r.status === 'failed' && r.targetNode === node).length;
    await waitFor('10 replicas failed on each broken node', async () => (await failedOn('node-b')) >= 10 && (await failedOn('node-c')) >= 10, 120_000, 300);
    disk.writable();
    makeImmutable(immutableDir, false);
    const outageMs = Date.now() - brokenAt;
    await acknowledge(await submitted, acks, 180_000);

    const failed = (await recordsOf(vault, workload)).filter((r) => r.status === 'failed');
    const reasonFor: Record<string, RegExp> = { 'node-b': /EROFS: read-only file system/, 'node-c': /EPERM: operation not permitted/ };
    // Failed only where writes were refused, for that reason, and at once: no retry can help until an operator acts.
    const unexpected = failed.filter((r) => !reasonFor[r.targetNode]?.test(r.error) || r.attempts !== 1);
    expect(unexpected.map((r) => `${r.replicaId} on ${r.targetNode} after ${r.attempts} attempt(s): ${r.error}`)).toEqual([]);

    const storedAgain = await storeFailedAgain(vault, workload, acks);
    await queuesDrained(vault);
    await stopWorker(child);

    const report = await checkInvariants(vault, workload, { acks, faultsInjected: 2 });
    figures.add(report, Date.now() - started, {
      outageMs, failedForGood: failed.length,
      failedReadOnly: failed.filter((r) => r.targetNode === 'node-b').length,
      failedImmutable: failed.filter((r) => r.targetNode === 'node-c').length,
      chunksStoredAgain: storedAgain,
    });
    expectInvariants(report, reproduce(seed, 'permission'));
  });
});

describe('an S3 server killed and restarted mid-run', () => {
  const seed = scenarioSeed(8_0805);
  const figures = new FigureRecorder('s3-restart', 'The S3 server (radosgw) is killed mid-run, twice, and restarted', reproduce(seed, 'S3 server'));
  afterAll(() => figures.write());

  it(`makes S3 writes retry until it is back; every replica lands once, nothing lost or duplicated (seed ${seed})`, async () => {
    const started = Date.now();
    const gateway = await PrivateRadosgw.start();
    teardown.push(() => gateway.close());
    const cloud = await makeCloudEnv({ s3: gateway.endpoint }, {
      storage: { organization: { checkpoint_interval_chunks: 200 }, cleanup: { enable_auto_cleanup: false } },
      chunkvault: { retry: { attempts: 12, backoff_ms: 200 } },
    });
    env = cloud.env;
    teardown.push(() => cloud.remove());
    // One replica on local disk and one on S3 per chunk; a few chunks large enough for multipart
    // uploads. 250 chunks: both outages (at a quarter and at 60% of the S3 replicas) still land
    // with writes in flight before and after them; 500 only made the run longer.
    const workload = new Workload({ seed, chunks: 250, maxBytes: 256 * 1024, replicas: [2, 2], providers: ['local', 'aws'] });
    const large = new Workload({ seed: seed + 1, prefix: 'fcl', chunks: 3, minBytes: 9 * 1024 * 1024, maxBytes: 12 * 1024 * 1024, replicas: [2, 2], providers: ['aws', 'local'] });
    vault = await openVault(env);
    const child = await worker(env, cloud.processEnv);

    const acks = new Acknowledgements();
    const submitted = (async () => [...await submit(vault!, large, acks), ...await submit(vault!, workload, acks, { batch: 100 })])();
    const onS3 = async () => (await vault!.catalog.counters()).backendCount.aws_s3 ?? 0;
    const s3Replicas = workload.chunks.length + large.chunks.length;
    const outages: Array<{ at: number; signal: string; ms: number }> = [];
    for (const [share, signal] of [[0.25, 'SIGKILL'], [0.6, 'SIGTERM']] as const) {
      await waitFor(`${share * 100}% of the S3 replicas stored`, async () => (await onS3()) >= s3Replicas * share, 180_000, 20);
      const down = Date.now();
      await gateway.stop(signal);
      // Writes whose last S3 request finished before the stop may still be recording themselves.
      let storedWhenDown = await onS3();
      for (let settled = await sleep(300).then(onS3); settled !== storedWhenDown; settled = await sleep(300).then(onS3)) storedWhenDown = settled;
      await sleep(3_000);
      // Nothing reached S3 while it was down.
      expect(await onS3()).toBe(storedWhenDown);
      await gateway.resume();
      outages.push({ at: storedWhenDown, signal, ms: Date.now() - down });
    }
    await acknowledge(await submitted, acks, 240_000);

    expect(acks.failed.map((r) => `${r.replicaId}: ${r.error}`), 'replicas that failed for good').toEqual([]);
    const records = (await recordsOf(vault, workload, large)).filter((r) => r.backend === 'aws_s3');
    expect(records).toHaveLength(s3Replicas);
    const retried = records.filter((r) => r.attempts > 1).length;
    expect(retried, 'S3 writes that needed more than one attempt').toBeGreaterThan(0);
    // Each S3 replica is one object under its own key, with its sidecar; nothing else is there
    // but chunkvault's own objects (the storage marker).
    const keys = (await s3Keys(cloud.servers, cloud.bucket)).filter((key) => !key.startsWith(cloud.keyPrefix + RESERVED_KEY_PREFIX));
    const expected = records.flatMap((r) => [cloud.keyPrefix + r.path, cloud.keyPrefix + r.path.replace(/\.dat$/, '.meta.json')]);
    expect(keys.sort()).toEqual(expected.sort());
    // Exactly one completed write job per replica: none ran twice to completion. Counted once
    // the queues are drained: a replica is stored (and acknowledged) before its job completes.
    await queuesDrained(vault);
    const replicaJobs = vault.queue('replicas');
    const allRecords = await recordsOf(vault, workload, large);
    expect(allRecords).toHaveLength(workload.replicaCount + large.replicaCount);
    const notCompleted: string[] = [];
    for (const r of allRecords) {
      const job = await replicaJobs.getJob(replicaJobId(r.chunkId, r.replicaId, r.generation));
      const state = job ? await job.getState() : 'missing';
      if (state !== 'completed') notCompleted.push(`${job?.id ?? r.replicaId} ${state} after ${job?.attemptsMade} attempt(s), ${job?.stalledCounter} stall(s): ${job?.failedReason}`);
    }
    expect(notCompleted, 'write jobs not completed').toEqual([]);
    expect((await replicaJobs.getFailed()).map((job) => `${job.id} after ${job.attemptsMade} attempt(s): ${job.failedReason}`), 'write jobs that failed').toEqual([]);
    expect((await replicaJobs.getJobCounts('completed')).completed).toBe(allRecords.length);
    const openUploads = await s3OpenUploads(cloud.servers, cloud.bucket);
    await stopWorker(child);

    const report = await checkInvariants(vault, [workload, large], { acks, faultsInjected: outages.length });
    figures.add(report, Date.now() - started, { outages, s3Replicas, s3WritesRetried: retried, multipartUploadsLeftOpen: openUploads.length });
    expectInvariants(report, reproduce(seed, 'S3 server'));
  });
});

describe('servers that fail, cut, lose or damage a share of requests', () => {
  const seed = scenarioSeed(8_0806);
  const figures = new FigureRecorder('faulty-server', 'S3, GCS and Azure behind proxies that fail, cut, lose the answer to, or damage the body of a seeded random share of requests', reproduce(seed, 'share of requests'));
  afterAll(() => figures.write());

  it(`never store damaged bytes as good nor return them; every replica ends stored or failed with a reason (seed ${seed})`, async () => {
    const started = Date.now();
    const servers = cloudServers();
    const proxies = {
      s3: await FaultyProxy.start(servers.s3.endpoint),
      gcs: await FaultyProxy.start(servers.gcs.endpoint),
      azure: await FaultyProxy.start(new URL(servers.azure.endpoint).origin),
    };
    for (const proxy of Object.values(proxies)) teardown.push(() => proxy.stop());
    const cloud = await makeCloudEnv({
      s3: proxies.s3.origin,
      gcs: proxies.gcs.origin,
      azure: `${proxies.azure.origin}${new URL(servers.azure.endpoint).pathname}`,
    }, {
      // Many writes in flight: most of the time goes to the SDKs' own backoff after injected errors.
      storage: { organization: { checkpoint_interval_chunks: 200 }, cleanup: { enable_auto_cleanup: false }, performance: { max_concurrent_writes: 64 } },
      chunkvault: { retry: { attempts: 8, backoff_ms: 100 }, worker: { concurrency: 64 } },
    });
    env = cloud.env;
    teardown.push(() => cloud.remove());
    // 150 chunks (about 375 replicas, some 1,700 requests): still over a hundred injected
    // faults, each kind on each server; most of the run's time is the SDKs' backoff per fault,
    // so 300 chunks doubled it without proving more.
    const workload = new Workload({ seed, chunks: 150, maxBytes: 256 * 1024, replicas: [2, 3], providers: ['aws', 'gcp', 'azure'] });
    const faults = (offset: number): RandomFaults => ({
      seed: seed + offset, errorRate: 0.03, resetRate: 0.01, lostAnswerRate: 0.02, corruptUploadRate: 0.03, corruptDownloadRate: 0.05,
    });
    Object.values(proxies).forEach((proxy, i) => (proxy.randomFaults = faults(i)));
    vault = await openVault(env);
    const child = await worker(env, cloud.processEnv);

    const acks = new Acknowledgements();
    await acknowledge(await submit(vault, workload, acks, { batch: 250 }), acks, 240_000);
    const failedForGood = acks.failed.length;
    for (const r of acks.failed) expect(r.error, `${r.replicaId} failed for good`).toBeTruthy();

    // Reads while the faults go on: the right bytes, or an error; never other bytes.
    let corruptReturned = 0;
    let readErrors = 0;
    const toRead = [...acks.acknowledgedChunks];
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let chunkId = toRead.pop(); chunkId !== undefined; chunkId = toRead.pop()) {
        try {
          if (!(await vault!.getChunk(chunkId)).equals(workload.bytesOf(chunkId))) corruptReturned += 1;
        } catch (error) {
          if (!(error instanceof ChunkCorruptError)) throw error;
          readErrors += 1;
        }
      }
    }));
    expect(corruptReturned, 'reads that returned bytes other than the chunk\'s').toBe(0);
    const injected = Object.fromEntries(Object.entries(proxies).map(([name, proxy]) => [name, { requests: proxy.requests, ...proxy.injected }]));
    const faultsInjected = Object.values(proxies).reduce((sum, p) => sum + Object.values(p.injected).reduce((a, b) => a + b, 0), 0);

    // The faults stop; repairs queued by the reads finish; what failed is queued again.
    for (const proxy of Object.values(proxies)) proxy.randomFaults = undefined;
    await queuesDrained(vault, 120_000);
    const corruptLeft = (await recordsOf(vault, workload)).filter((r) => r.status === 'corrupt');
    const storedAgain = await storeFailedAgain(vault, workload, acks);
    await queuesDrained(vault);
    await stopWorker(child);

    const report = await checkInvariants(vault, workload, { acks, faultsInjected });
    report.counts.corruptReturned += corruptReturned;
    const reasons: Record<string, number> = {};
    for (const r of acks.failed) {
      const reason = (r.error ?? '').replace(/\S*\.dat\S*/g, '<key>').replace(/\S+:\/\/\S+/g, '<location>').slice(0, 160);
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    }
    figures.add(report, Date.now() - started, { injected, failedForGood, failedForGoodReasons: reasons, readsRefused: readErrors, corruptAfterRepairs: corruptLeft.length, chunksStoredAgain: storedAgain });
    expectInvariants(report, reproduce(seed, 'share of requests'));
  });
});
