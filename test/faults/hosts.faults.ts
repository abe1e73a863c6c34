/**
 * chunkvault across hosts: each host a network namespace of its own (test/hosts/), sharing
 * nothing but the Redis (with a password) and the storage servers, reached over the hosts'
 * veth addresses. Every process is a real `chunkvault` CLI (`node dist/cli/main.js`) on its
 * host; the test process only sets up, cuts links, and checks the outcome with the same
 * invariants as every fault scenario (support/invariants.ts).
 *
 *  - four hosts:   a producer host stages chunks in a bucket, two worker hosts store them on
 *                  S3 and Azure, a fourth host reads every chunk back byte for byte.
 *  - another disk: a worker host whose local backend is a directory of its own, on a
 *                  deployment whose local backend another host used first, refuses to start.
 *  - per-backend queues: one worker host per cloud, each serving only its backend's queue,
 *                  writes exactly its backend's replicas; the other cloud's wait meanwhile.
 *  - cut off:      a worker host's link goes down while it writes; another host takes its
 *                  jobs over once their locks expire; the late writes the first host makes
 *                  once the link is back change nothing.
 *
 * Needs root, `ip` (iproute2), a built dist/ (`npm run build`) and the cloud test servers.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../../src/app.js';
import type { ReplicaRecord, StoredChunk } from '../../src/domain/types.js';
import { RESERVED_KEY_PREFIX } from '../../src/storage/storage-layout.js';
import { STORAGE_IDENTITY_KEY, type StorageMarker } from '../../src/storage/storage-identity.js';
import { Hosts, type Host } from '../hosts/hosts.js';
import { CloudDeployment, type DeploymentOptions } from '../hosts/cloud-deployment.js';
import { PasswordRedis } from '../hosts/password-redis.js';
import { startServer, startWorker, type HostProcess, type HostProcessEnv } from '../hosts/host-process.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { queuesDrained } from './support/scenario-run.js';
import { waitFor } from '../support/harness.js';
import { Acknowledgements, scenarioSeed, Workload } from './support/workload.js';

const FILE = 'test/faults/hosts.faults.ts';
const reproduce = (seed: number, title: string) => `FAULT_SEED=${seed} npx vitest run --config vitest.faults.config.ts ${FILE} -t "${title}"`;
/** Both clouds: a replica on S3 and one on Azure for every chunk. */
const BOTH_CLOUDS = ['node-a:aws', 'node-b:azure'];

let redis: PasswordRedis | undefined;
/** Undone after each test, last first. */
const teardown: Array<() => unknown> = [];

beforeAll(async () => {
  redis = await PasswordRedis.start();
});

afterAll(async () => {
  await redis?.stop();
});

afterEach(async () => {
  const problems: unknown[] = [];
  for (const undo of teardown.splice(0).reverse()) {
    try {
      await undo();
    } catch (error) {
      problems.push(error);
    }
  }
  if (problems.length) throw new AggregateError(problems, 'teardown failed');
});

/** A deployment and `count` hosts that reach its Redis and storage servers; all removed after the test. */
async function setUp(count: number, options: DeploymentOptions): Promise<{ hosts: Hosts; deployment: CloudDeployment }> {
  const deployment = await CloudDeployment.create(redis!, options);
  teardown.push(() => deployment.remove());
  const hosts = await Hosts.create(count, deployment.services);
  teardown.push(() => hosts.close());
  return { hosts, deployment };
}

/**
 * Starts `chunkvault put --wait --json` on the producer host: the workload's chunks as files of
 * the host's own directory, one replica per placement. See `acknowledgementsOf`.
 */
async function startPut(host: Host, configPath: string, env: HostProcessEnv, workload: Workload, placements: readonly string[]): Promise<HostProcess> {
  const dir = path.join(host.dir, 'chunks');
  await mkdir(dir, { recursive: true });
  const files = await Promise.all(workload.chunks.map(async (chunk) => {
    const file = path.join(dir, chunk.chunkId);
    await writeFile(file, workload.bytesOf(chunk.chunkId));
    return file;
  }));
  return host.cli(['put', ...files, ...placements.flatMap((p) => ['--replica', p]), '--wait', '--json', '--timeout', '120', '--config', configPath], env);
}

/** What the producer was told, once its `put --wait --json` ended. */
async function acknowledgementsOf(put: HostProcess): Promise<Acknowledgements> {
  const run = await put.exited(150_000);
  let results: StoredChunk[];
  try {
    results = JSON.parse(run.stdout) as StoredChunk[];
  } catch {
    throw new Error(`put on ${put.host.name} exited ${run.code ?? run.signal} without results:\n${run.stderr.slice(-3000)}`);
  }
  const acks = new Acknowledgements();
  acks.track({ tracked: results });
  acks.acknowledge(results);
  return acks;
}

async function produce(host: Host, configPath: string, env: HostProcessEnv, workload: Workload, placements: readonly string[]): Promise<Acknowledgements> {
  return acknowledgementsOf(await startPut(host, configPath, env, workload, placements));
}

/** Replicas a worker host logged storing (LOG_LEVEL=debug), as `replicaId -> backend`. */
function replicasStoredBy(worker: { logLines(): Array<Record<string, unknown>> }): Map<string, string> {
  const stored = new Map<string, string>();
  for (const line of worker.logLines()) if (line.msg === 'replica stored') stored.set(String(line.replicaId), String(line.backend));
  return stored;
}

/** The catalog status of every replica of the workload, by the backend it is bound for. */
async function statusesByBackend(vault: Chunkvault, workload: Workload): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const chunk of workload.chunks) {
    for (const replica of await vault.catalog.listReplicas(chunk.chunkId)) (out[replica.cloudProvider] ??= []).push(replica.status);
  }
  return out;
}

/** Staged chunk objects left in the staging bucket (not the storage marker). */
async function stagedObjects(vault: Chunkvault): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of vault.staging.store.list('')) if (!object.key.startsWith(RESERVED_KEY_PREFIX)) keys.push(object.key);
  return keys;
}

describe('a producer host and two worker hosts, staging in a bucket', () => {
  const seed = scenarioSeed(17_0401);
  it(`store every chunk on S3 and Azure; a fourth host reads each back byte-identical; the staging bucket ends empty (seed ${seed})`, async () => {
    const { hosts, deployment } = await setUp(4, { staging: 'azure_blob' });
    const vault = await deployment.openVault(hosts.dir);
    const [producer, workerA, workerB, reader] = hosts.all as [Host, Host, Host, Host];
    const workload = new Workload({ seed, chunks: 24, prefix: 'hc', maxBytes: 256 * 1024 });
    const debug = { LOG_LEVEL: 'debug' };
    const started = Date.now();
    const workers = await Promise.all([workerA, workerB].map(async (host) => startWorker(host, await deployment.configFor(host, { 'storage.performance.max_concurrent_writes': 4, 'chunkvault.worker.concurrency': 4 }), deployment.envFor(host, debug))));

    const acks = await produce(producer, await deployment.configFor(producer), deployment.envFor(producer), workload, BOTH_CLOUDS);
    expect(acks.failed.map((r) => `${r.replicaId}: ${r.error}`)).toEqual([]);
    expect(acks.acknowledgedChunks.size).toBe(workload.chunks.length);

    // Each worker host wrote some of the replicas, and between them every one, to its cloud.
    const [byA, byB] = workers.map(replicasStoredBy) as [Map<string, string>, Map<string, string>];
    expect(byA.size, 'replicas stored by the first worker host').toBeGreaterThan(0);
    expect(byB.size, 'replicas stored by the second worker host').toBeGreaterThan(0);
    const byReplica = new Map([...byA, ...byB]);
    expect(byReplica.size).toBe(acks.submitted.length);
    for (const [replicaId, backend] of byReplica) expect(backend, replicaId).toBe(replicaId.endsWith('_replica_0') ? 'aws_s3' : 'azure_blob');

    // The hosts do not share the test process's loopback: the Redis there is not there for them.
    const direct = await reader.cli(['stats', '--config', await deployment.configFor(reader)], { ...deployment.envFor(reader), REDIS_URL: redis!.url() }).exited();
    expect(direct.code).toBe(1);
    expect(direct.stderr).toMatch(/no Redis answers at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ /);
    expect(direct.stderr).not.toContain(redis!.password);

    // A host that took no part serves every chunk back (its API, on its own address).
    const token = randomBytes(16).toString('hex');
    const { server, origin } = await startServer(reader, await deployment.configFor(reader), deployment.envFor(reader), token);
    for (const chunk of workload.chunks) {
      const answer = await fetch(`${origin}/v1/chunks/${chunk.chunkId}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
      expect(answer.status, `GET ${chunk.chunkId} from ${reader.name}`).toBe(200);
      expect(Buffer.from(await answer.arrayBuffer()).equals(workload.bytesOf(chunk.chunkId)), `${chunk.chunkId} read back on ${reader.name}`).toBe(true);
    }
    await server.stop();
    await queuesDrained(vault);
    await Promise.all(workers.map((worker) => worker.stop()));
    expect(await stagedObjects(vault)).toEqual([]);
    const report = await checkInvariants(vault, workload, { acks, faultsInjected: 0 });
    console.log(`[hosts] producer, two workers, reader; seed ${seed}: ${Date.now() - started} ms, replicas stored by the worker hosts ${byA.size} + ${byB.size}, ${JSON.stringify(report.counts)}`);
    expectInvariants(report, reproduce(seed, 'two worker hosts'));
    expect(report.counts.storedReplicas).toBe(workload.chunks.length * 2);
    expect(report.counts.stagedOrphansSwept).toBe(0);
  });
});

describe('a worker host whose local directory is another disk', () => {
  const seed = scenarioSeed(17_0402);
  it(`refuses to start (exit 2), naming the marker of the host that first used the local backend; that host goes on storing (seed ${seed})`, async () => {
    const { hosts, deployment } = await setUp(2, { staging: 'azure_blob', localStorage: true });
    const [first, second] = hosts.all as [Host, Host];
    const started = Date.now();
    const worker = await startWorker(first, await deployment.configFor(first), deployment.envFor(first));
    const firstDisk = path.join(first.dir, 'data');
    const marker = JSON.parse(await readFile(path.join(firstDisk, ...STORAGE_IDENTITY_KEY.split('/')), 'utf8')) as StorageMarker;

    // The same deployment (Redis, buckets), a disk of its own: refused before it writes anything.
    const otherDisk = path.join(second.dir, 'data');
    const refused = await second.cli(['worker', '--config', await deployment.configFor(second)], deployment.envFor(second, { LOG_LEVEL: 'info' })).exited();
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`backend local at ${otherDisk} is not the storage this deployment knows`);
    expect(refused.stderr).toContain(`expected marker ${marker.id} (created `);
    expect(refused.stderr).toContain(`at ${firstDisk})`);
    expect(refused.stderr).toContain('found no marker');
    expect(refused.stderr).not.toContain('worker pool started');
    // The buckets it shares are the deployment's: only the disk is refused.
    expect(refused.stderr).not.toMatch(/backend (aws_s3|azure_blob|staging-\S+) at/);
    expect(await readdir(otherDisk)).toEqual([]);

    // The first host's worker still stores replicas on its disk and in the bucket.
    const workload = new Workload({ seed, chunks: 12, prefix: 'hd', maxBytes: 64 * 1024 });
    const acks = await produce(first, await deployment.configFor(first), deployment.envFor(first), workload, ['node-a:local', 'node-b:aws']);
    expect(acks.failed.map((r) => `${r.replicaId}: ${r.error}`)).toEqual([]);
    expect(acks.acknowledgedChunks.size).toBe(workload.chunks.length);
    expect(await readdir(otherDisk)).toEqual([]);

    // The test process looks at the first host's disk, as that host would.
    const vault = await deployment.openVault(hosts.dir, { 'storage.backends.local.base_path': firstDisk });
    await queuesDrained(vault);
    await worker.stop();
    const report = await checkInvariants(vault, workload, { acks, faultsInjected: 1 });
    console.log(`[hosts] another disk; seed ${seed}: ${Date.now() - started} ms, ${JSON.stringify(report.counts)}`);
    expectInvariants(report, reproduce(seed, 'another disk'));
    expect(report.counts.storedReplicas).toBe(workload.chunks.length * 2);
  });
});

describe('one worker host per cloud, with a replica queue per backend', () => {
  const seed = scenarioSeed(17_0403);
  it(`each host writes exactly its backend's replicas; while one is not up, only its backend's replicas wait (seed ${seed})`, async () => {
    const { hosts, deployment } = await setUp(3, { staging: 'aws_s3', settings: { 'chunkvault.routing.queue_per_backend': true } });
    const [producer, nearS3, nearAzure] = hosts.all as [Host, Host, Host];
    const vault = await deployment.openVault(hosts.dir);
    const started = Date.now();
    const workload = new Workload({ seed, chunks: 16, prefix: 'hq', maxBytes: 128 * 1024 });
    const debug = { LOG_LEVEL: 'debug' };
    const s3Worker = await startWorker(nearS3, await deployment.configFor(nearS3), deployment.envFor(nearS3, debug), ['--backends', 'aws_s3']);

    const put = await startPut(producer, await deployment.configFor(producer), deployment.envFor(producer), workload, BOTH_CLOUDS);
    await waitFor('the S3 replicas to be stored', async () => (await statusesByBackend(vault, workload)).aws?.filter((s) => s === 'stored').length === workload.chunks.length, 60_000, 50);
    // No host serves Azure yet: its replicas wait on their own queue, untouched.
    expect((await statusesByBackend(vault, workload)).azure).toEqual(Array(workload.chunks.length).fill('queued'));
    expect(await vault.queue('replicas-azure_blob').getWaitingCount()).toBe(workload.chunks.length);

    const azureWorker = await startWorker(nearAzure, await deployment.configFor(nearAzure), deployment.envFor(nearAzure, debug), ['--backends', 'azure_blob']);
    const acks = await acknowledgementsOf(put);
    expect(acks.failed.map((r) => `${r.replicaId}: ${r.error}`)).toEqual([]);
    expect(acks.acknowledgedChunks.size).toBe(workload.chunks.length);

    // Each host wrote every replica of its backend and none of the other's.
    const [byS3Host, byAzureHost] = [s3Worker, azureWorker].map(replicasStoredBy) as [Map<string, string>, Map<string, string>];
    expect([...byS3Host.values()]).toEqual(Array(workload.chunks.length).fill('aws_s3'));
    expect([...byAzureHost.values()]).toEqual(Array(workload.chunks.length).fill('azure_blob'));
    for (const queue of ['replicas-aws_s3', 'replicas-azure_blob']) {
      await waitFor(`every job on ${queue} completed`, async () => (await vault.queue(queue).getJobCounts('completed')).completed === workload.chunks.length);
    }
    expect(await vault.queue('replicas').getJobCounts('completed', 'failed')).toEqual({ completed: 0, failed: 0 });

    await queuesDrained(vault);
    await Promise.all([s3Worker.stop(), azureWorker.stop()]);
    const report = await checkInvariants(vault, workload, { acks, faultsInjected: 0 });
    console.log(`[hosts] per-backend queues; seed ${seed}: ${Date.now() - started} ms, ${JSON.stringify(report.counts)}`);
    expectInvariants(report, reproduce(seed, 'per cloud'));
    expect(report.counts.stagedOrphansSwept).toBe(0);
  });
});

describe('a worker host cut off mid-run', () => {
  const seed = scenarioSeed(17_0404);
  it(`has its active jobs taken over once their locks expire; its late writes after the link heals change nothing (seed ${seed})`, async () => {
    const { hosts, deployment } = await setUp(3, { staging: 'azure_blob' });
    const [producer, cutOff, rescuer] = hosts.all as [Host, Host, Host];
    const vault = await deployment.openVault(hosts.dir);
    const started = Date.now();
    const workload = new Workload({ seed, chunks: 12, prefix: 'hx', maxBytes: 64 * 1024 });
    const debug = { LOG_LEVEL: 'debug' };
    const concurrency = 4;
    const first = await startWorker(cutOff, await deployment.configFor(cutOff, { 'storage.performance.max_concurrent_writes': concurrency, 'chunkvault.worker.concurrency': concurrency }), deployment.envFor(cutOff, debug));

    // Its S3 requests are held from now on: its writes stay in flight, its job locks renewed.
    const s3 = cutOff.forwarder('s3');
    s3.hold();
    const put = await startPut(producer, await deployment.configFor(producer), deployment.envFor(producer), workload, ['node-a:aws']);
    const replicas = vault.queue('replicas');
    await waitFor(`${concurrency} writes in flight on ${cutOff.name}`, async () => (await replicas.getActiveCount()) === concurrency, 30_000, 50);
    const inFlight = await replicas.getJobs(['active']);
    const inFlightReplicas = inFlight.map((job) => String((job.data as { replicaId: string }).replicaId)).sort();

    await hosts.cut(cutOff.index);
    const cutAt = Date.now();
    const second = await startWorker(rescuer, await deployment.configFor(rescuer), deployment.envFor(rescuer, debug));
    const acks = await acknowledgementsOf(put);
    const takenOverAfterMs = Date.now() - cutAt;
    expect(acks.failed.map((r) => `${r.replicaId}: ${r.error}`)).toEqual([]);
    expect(acks.acknowledgedChunks.size).toBe(workload.chunks.length);
    // The host that stayed wrote the jobs the cut-off host held, after BullMQ found them stalled.
    const byRescuer = replicasStoredBy(second);
    for (const replicaId of inFlightReplicas) expect(byRescuer.get(replicaId), `${replicaId} written by ${rescuer.name}`).toBe('aws_s3');
    for (const job of inFlight) {
      const after = await replicas.getJob(job.id!);
      expect(after?.stalledCounter, `job ${job.id} of ${String((job.data as { replicaId: string }).replicaId)} found stalled`).toBeGreaterThanOrEqual(1);
      expect(await after?.getState()).toBe('completed');
    }
    await queuesDrained(vault);
    const before = await recordsOf(vault, workload);

    // The link comes back and the held writes go through: late, to replicas already stored.
    await hosts.heal(cutOff.index);
    s3.release();
    await waitFor(`the late writes of ${cutOff.name} to end`, () => inFlightReplicas.every((id) => first.logLines().some((line) => line.replicaId === id && /^replica (stored|already stored|write failed)/.test(String(line.msg)))), 60_000, 100);
    const late = first.logLines().filter((line) => inFlightReplicas.includes(String(line.replicaId)) && String(line.msg).startsWith('replica '));
    expect(await recordsOf(vault, workload)).toEqual(before);
    // Nor the metadata on the backend: a late write records none for a replica stored already
    // (before, each rewrote its sidecar with its own storedAt, which disagreed with the catalog's).
    const sidecarsRewritten = await sidecarsDisagreeingOnStoredAt(vault, 'aws_s3', before.filter((r) => inFlightReplicas.includes(r.replicaId)));
    expect(sidecarsRewritten, 'sidecars the late writes rewrote').toBe(0);

    await queuesDrained(vault);
    await Promise.all([first.stop(), second.stop()]);
    expect(await recordsOf(vault, workload)).toEqual(before);
    const report = await checkInvariants(vault, workload, { acks, faultsInjected: 1 });
    console.log(`[hosts] cut off; seed ${seed}: ${Date.now() - started} ms, in flight when cut ${inFlightReplicas.length}, taken over and all stored ${takenOverAfterMs} ms after the cut, late outcomes ${JSON.stringify(late.map((l) => [l.msg, (l.err as { message?: string } | undefined)?.message]))}, sidecars whose storedAt the late writes changed ${sidecarsRewritten}, ${JSON.stringify(report.counts)}`);
    expectInvariants(report, reproduce(seed, 'cut off'));
    expect(report.counts.storedReplicas).toBe(workload.chunks.length);
  });
});

/** Every replica record of the workload's chunks, in a fixed order. */
async function recordsOf(vault: Chunkvault, workload: Workload): Promise<ReplicaRecord[]> {
  const out: ReplicaRecord[] = [];
  for (const chunk of workload.chunks) out.push(...(await vault.catalog.listReplicas(chunk.chunkId)).sort((a, b) => a.replicaId.localeCompare(b.replicaId)));
  return out;
}

/** How many of `records` have a sidecar on `backendName` whose storedAt is not the record's. */
async function sidecarsDisagreeingOnStoredAt(vault: Chunkvault, backendName: string, records: readonly ReplicaRecord[]): Promise<number> {
  const backend = vault.backends.byName(backendName)!;
  const keys: string[] = [];
  for await (const object of backend.list('')) keys.push(object.key);
  let disagreeing = 0;
  for await (const entry of vault.metadata.of(backend).current(keys)) {
    if ('problem' in entry) continue;
    const record = records.find((r) => r.chunkId === entry.sidecar.chunkId && r.replicaId === entry.sidecar.replicaId);
    if (record && record.storedAt !== entry.sidecar.storedAt) disagreeing += 1;
  }
  return disagreeing;
}
