/**
 * Redis failing over mid-run, under real worker processes and a producer: under Sentinel (a
 * master, a replica, three Sentinels) and under a Redis Cluster (3 masters with a replica
 * each), the master that holds chunkvault's hash slot is SIGKILLed (and brought back by its
 * supervisor once the failover is done, as a replica), or paused with SIGSTOP past the failover
 * timeout and resumed (it comes back demoted).
 *
 * What must hold: processing resumes within 30 s of the fault; no worker is left stuck (both
 * worker processes, started before the fault and never restarted, store replicas of a batch
 * queued after it); store() calls made during the failover complete; `serve`, started before
 * the fault, reads an acknowledged chunk and is ready after it; no replica acknowledged to the producer is lost (min_replicas_acked 1: the
 * record was on the replica before it was acknowledged); and every invariant of the suite.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Chunkvault } from '../../src/app.js';
import { keyRoot } from '../../src/redis/redis-connection.js';
import { freeLoopbackPort } from '../../src/redis/private-redis.js';
import { makeTestEnv, openVault, spawnCli, startWorkerProcess, waitFor, type TestEnv } from '../support/harness.js';
import { startClusterTopology, startSentinelTopology, type HostPort } from '../support/redis-topologies.js';
import { Acknowledgements, Workload, scenarioSeed } from './support/workload.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { FigureRecorder } from './support/figures.js';
import { acknowledge, submit } from './support/ingest.js';
import { queuesDrained, stopWorker, type WorkerProcess } from './support/scenario-run.js';

const REPRODUCE = 'npx vitest run --config vitest.faults.config.ts test/faults/redis-failover.faults.ts';
/** The bar: stored replicas grow again within this long of the fault. */
const RESUME_BOUND_MS = 30_000;
const CHUNKS = 240;
/** The fault comes once this many replicas are stored, so it lands among writes in flight. */
const FAULT_AFTER_STORED = 90;

type Topology = 'sentinel' | 'cluster';
type Fault = 'SIGKILL' | 'SIGSTOP';

/** One Redis deployment of either kind, as the scenario drives it. */
interface Deployment {
  config: Record<string, unknown>;
  /** The master that holds chunkvault's keys now. */
  master(): Promise<HostPort>;
  waitForFailover(oldMaster: HostPort): Promise<HostPort>;
  waitForReplicaOnline(): Promise<void>;
  kill(port: number): Promise<void>;
  pause(port: number): void;
  resume(port: number): void;
  restart(port: number): Promise<void>;
  stop(): Promise<void>;
}

async function deploy(kind: Topology, prefix: string): Promise<Deployment> {
  if (kind === 'sentinel') {
    // Sentinels that look at the nodes every second (not 10 s): a restarted or resumed old master is
    // made a replica in seconds, which keeps the scenario short; the failover itself is unchanged.
    const sentinel = await startSentinelTopology({ downAfterMs: 1000, failoverTimeoutMs: 3000, fastSentinelTimers: true });
    return {
      config: sentinel.config,
      master: () => sentinel.master(),
      waitForFailover: (old) => sentinel.waitForFailover(old.port, 30_000),
      waitForReplicaOnline: () => sentinel.waitForReplicaOnline(30_000),
      kill: (port) => sentinel.kill(port),
      pause: (port) => sentinel.pause(port),
      resume: (port) => sentinel.resume(port),
      restart: (port) => sentinel.restart(port),
      stop: () => sentinel.stop(),
    };
  }
  const cluster = await startClusterTopology({ nodeTimeoutMs: 2000 });
  const slot = await cluster.slotOf(keyRoot(prefix));
  return {
    config: cluster.config,
    master: () => cluster.masterOfSlot(slot),
    waitForFailover: (old) => cluster.waitForFailover(old.port, slot, 30_000),
    waitForReplicaOnline: () => cluster.waitForReplicaOnline(slot, 30_000),
    kill: (port) => cluster.kill(port),
    pause: (port) => cluster.pause(port),
    resume: (port) => cluster.resume(port),
    restart: (port) => cluster.restart(port),
    stop: () => cluster.stop(),
  };
}

const figures = new FigureRecorder('redis-failover', 'The Redis master holding chunkvault\'s slot SIGKILLed or paused (SIGSTOP) past the failover timeout, under Sentinel and under a Cluster, 2 worker processes', REPRODUCE);

let deployment: Deployment | undefined;
let env: TestEnv | undefined;
let vault: Chunkvault | undefined;
let workers: WorkerProcess[] = [];

afterEach(async () => {
  for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGKILL');
  await Promise.all(workers.map((worker) => worker.done));
  await vault?.close();
  await env?.cleanup();
  await deployment?.stop();
  workers = [];
  deployment = env = vault = undefined;
});
afterAll(async () => {
  await figures.write();
});

/** Replicas the catalog records stored, or undefined while the catalog cannot be read. */
async function storedReplicas(v: Chunkvault): Promise<number | undefined> {
  return (await Promise.race([v.catalog.counters(), sleep(1000).then(() => undefined)]))?.replicasStored;
}

const cases: Array<[Topology, Fault, number]> = [
  ['sentinel', 'SIGKILL', 1801],
  ['sentinel', 'SIGSTOP', 1802],
  ['cluster', 'SIGKILL', 1803],
  ['cluster', 'SIGSTOP', 1804],
];

describe.each(cases)('%s: the master %s mid-run', (kind, fault, defaultSeed) => {
  const seed = scenarioSeed(defaultSeed);
  it(`(seed ${seed}) processing resumes within 30 s, no worker is stuck, no acknowledged replica is lost, every invariant holds`, async () => {
    const started = Date.now();
    const prefix = `cvfail-${kind}-${fault.toLowerCase()}`;
    deployment = await deploy(kind, prefix);
    env = await makeTestEnv({
      storage: { organization: { checkpoint_interval_chunks: 40 }, performance: { max_concurrent_writes: 8 } },
      chunkvault: {
        redis: { ...deployment.config, prefix },
        retry: { attempts: 12, backoff_ms: 200 },
        worker: { concurrency: 8, watchdog_interval_ms: 1000, stuck_after_ms: 5000 },
      },
    });
    vault = await openVault(env);
    // Debug logs name each replica a process stores: how the scenario tells both workers work after the failover.
    workers = await Promise.all([0, 1].map(() => startWorkerProcess(env!, { LOG_LEVEL: 'debug' })));
    // `serve`, up before the fault, must answer reads after it on the connections it had.
    const servePort = await freeLoopbackPort();
    const serve = spawnCli(['serve', '--port', String(servePort), '--config', env.configPath], { LOG_LEVEL: 'warn' });
    workers.push(serve);
    await waitFor('serve to listen', () => serve.output().stdout.includes('chunkvault serving on'), 30_000);
    const workload = new Workload({ seed, chunks: CHUNKS, maxBytes: 64 * 1024 });
    const acks = new Acknowledgements();
    const probeFrom = CHUNKS - 40;

    let ingestEnded = false;
    let faultAt: number | undefined;
    let failedOverAt: number | undefined;
    // Batches 3 and on are queued only once the fault is in: their store() calls meet the
    // failover (a master gone or hanging) and must be carried across it.
    const storeCalls: Array<{ startedAt: number; endedAt: number }> = [];
    const ingest = (async () => {
      const handles = await submit(vault!, workload, acks, {
        batch: 20,
        to: probeFrom,
        beforeBatch: async (index) => {
          if (index > 0) storeCalls[storeCalls.length - 1]!.endedAt = Date.now();
          while (index >= 3 && faultAt === undefined) await sleep(10);
          storeCalls.push({ startedAt: Date.now(), endedAt: Number.POSITIVE_INFINITY });
        },
      });
      storeCalls[storeCalls.length - 1]!.endedAt = Date.now();
      await acknowledge(handles, acks, 180_000);
    })().finally(() => {
      ingestEnded = true;
    });
    // Awaited below, after the failover is over; until then a rejection must not count as unhandled.
    ingest.catch(() => undefined);

    // The fault, once enough is stored that writes are in flight.
    while (((await storedReplicas(vault)) ?? 0) < FAULT_AFTER_STORED) {
      if (ingestEnded) throw new Error(`the workload ended before ${FAULT_AFTER_STORED} replicas were stored: the fault would land on nothing`);
      await sleep(20);
    }
    const master = await deployment.master();
    const storedAtFault = (await storedReplicas(vault)) ?? 0;
    faultAt = Date.now();
    if (fault === 'SIGKILL') await deployment.kill(master.port);
    else deployment.pause(master.port);
    const promoted = await deployment.waitForFailover(master);
    failedOverAt = Date.now();
    const failoverMs = failedOverAt - faultAt;
    // Processing resumes: replicas are recorded stored again, past the count at the fault.
    let resumedMs: number | undefined;
    while (resumedMs === undefined && Date.now() - faultAt < 120_000) {
      const stored = await storedReplicas(vault);
      if (stored !== undefined && stored > storedAtFault) resumedMs = Date.now() - faultAt;
      else await sleep(50);
    }
    // The old master comes back: a paused one is resumed, a killed one restarted by its supervisor; either rejoins as a replica.
    if (fault === 'SIGKILL') await deployment.restart(master.port);
    else deployment.resume(master.port);
    await deployment.waitForReplicaOnline();
    await ingest;
    // store() calls that were in flight while the master was gone and none had taken over.
    const storesAcrossFailover = storeCalls.filter((call) => call.startedAt < failedOverAt! && call.endedAt > faultAt!).length;

    // serve rode out the failover: it reads a chunk acknowledged before the fault, and is ready.
    const early = workload.chunks[0]!.chunkId;
    const read = await fetch(`http://127.0.0.1:${servePort}/v1/chunks/${early}`);
    if (read.status !== 200) expect.fail(`serve answered ${read.status} for ${early}, acknowledged before the fault: ${await read.text()}\nserve's log: ${serve.output().stderr.slice(-4000)}`);
    expect(Buffer.from(await read.arrayBuffer()).equals(workload.bytesOf(early))).toBe(true);
    expect((await fetch(`http://127.0.0.1:${servePort}/readyz`)).status).toBe(200);
    await stopWorker(workers.pop()!);

    // No worker left stuck: a batch queued after the failover is served by both worker processes.
    const before = workers.map((worker) => worker.output().stderr.length);
    await acknowledge(await submit(vault, workload, acks, { batch: 40, from: probeFrom }), acks, 60_000);
    const probeChunks = workload.chunks.slice(probeFrom).map((chunk) => chunk.chunkId);
    const storedByWorker = workers.map((worker, i) => {
      const lines = worker.output().stderr.slice(before[i]).split('\n').filter((line) => line.includes('"replica stored"') || line.includes('"replica already stored"'));
      return lines.filter((line) => probeChunks.some((chunkId) => line.includes(chunkId))).length;
    });
    const restarts = workers.map((worker) => worker.output().stderr.split('\n').filter((line) => line.includes('restarting it on a new connection')).length);

    await queuesDrained(vault);
    for (const worker of workers) await stopWorker(worker);
    const report = await checkInvariants(vault, workload, { acks, faultsInjected: 1 });
    figures.add(report, Date.now() - started, {
      topology: kind, fault, failoverMs, resumedMs: resumedMs ?? -1, promoted: `${promoted.host}:${promoted.port}`, storesAcrossFailover,
      probeReplicasByWorker: storedByWorker.join('/'), workerRestartsByWatchdog: restarts.join('/'),
    });
    console.log(`[redis-failover ${kind} ${fault}] seed ${seed}: failover ${failoverMs} ms, processing resumed ${resumedMs} ms after the fault, ${storesAcrossFailover} store() calls across the failover, probe replicas by worker ${storedByWorker.join('/')}, watchdog restarts ${restarts.join('/')}, ${JSON.stringify(report.counts)}`);
    expect(resumedMs).toBeDefined();
    expect(resumedMs!).toBeLessThan(RESUME_BOUND_MS);
    expect(storesAcrossFailover).toBeGreaterThan(0);
    for (const count of storedByWorker) expect(count).toBeGreaterThan(0);
    expectInvariants(report, REPRODUCE);
    expect(report.counts.storedReplicas).toBe(workload.replicaCount);
  });
});
