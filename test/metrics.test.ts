/**
 * Prometheus metrics, scraped over real HTTP after a real workload: cluster-wide figures
 * from `chunkvault serve` (read from Redis, so right whichever process answers), the
 * per-process figures a worker observes, and a worker process's own /metrics port.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask } from '../src/domain/types.js';
import { buildHttpServer } from '../src/http/server.js';
import { startMetricsServer, type MetricsServer } from '../src/metrics/metrics-server.js';
import { createLogger } from '../src/logging/logger.js';
import { ConfigError } from '../src/errors.js';
import { makeTestEnv, openVault, spawnCli, startWorkerProcess, waitFor, type TestEnv } from './support/harness.js';
import { freeLoopbackPort } from '../src/redis/private-redis.js';
import { mountFullDisk } from './support/full-disk.js';

let env: TestEnv;
const vaults: Chunkvault[] = [];
const closers: Array<() => Promise<unknown>> = [];
const unmounts: Array<() => void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  for (const vault of vaults.splice(0)) await vault.close();
  for (const unmount of unmounts.splice(0)) unmount();
  await env?.cleanup();
});

async function open(): Promise<Chunkvault> {
  const vault = await openVault(env);
  vaults.push(vault);
  return vault;
}

/** Makes `<base>/<node>` a full disk: every replica placed on that node fails (ENOSPC, retryable). */
async function fullDisk(node: string): Promise<void> {
  unmounts.push(await mountFullDisk(path.join(env.basePath, node)));
}

/** Chunk i has replica r0 on aws-node-1 and r1 on gcp-node-1 (every third chunk, from `failEvery`) or aws-node-2. */
function tasks(ids: number[], failEvery = 3): DistributionTask[] {
  return ids.map((i) => ({
    taskId: `t${i}`, chunkId: `c${i}`, chunkData: Buffer.alloc(10_000 + i * 1000, i), status: 'completed',
    replicas: [
      { replicaId: `c${i}_r0`, chunkId: `c${i}`, targetNode: 'aws-node-1', cloudProvider: 'aws', status: 'completed' },
      i % failEvery === 0
        ? { replicaId: `c${i}_r1`, chunkId: `c${i}`, targetNode: 'gcp-node-1', cloudProvider: 'gcp', status: 'completed' }
        : { replicaId: `c${i}_r1`, chunkId: `c${i}`, targetNode: 'aws-node-2', cloudProvider: 'aws', status: 'completed' },
    ],
  }));
}

const sizeOf = (i: number) => 10_000 + i * 1000;

interface Scrape {
  text: string;
  /** The sample's value, or undefined when there is no such sample. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  type(name: string): string | undefined;
  /** Every sample of a metric name, as [labels, value]. */
  samples(name: string): Array<[Record<string, string>, number]>;
}

/** A small parser of the Prometheus text format (0.0.4): samples and TYPE lines. */
function parse(text: string): Scrape {
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const typeLine = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (typeLine) types.set(typeLine[1]!, typeLine[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, raw] of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = raw!.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
    }
    const value = sample[3] === '+Inf' ? Infinity : sample[3] === '-Inf' ? -Infinity : Number(sample[3]);
    samples.push({ name: sample[1]!, labels, value });
  }
  const same = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  return {
    text,
    value: (name, labels = {}) => samples.find((s) => s.name === name && same(s.labels, labels))?.value,
    type: (name) => types.get(name),
    samples: (name) => samples.filter((s) => s.name === name).map((s) => [s.labels, s.value]),
  };
}

async function scrape(url: string, headers: Record<string, string> = {}): Promise<Scrape> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await response.text());
}

async function serve(vault: Chunkvault): Promise<string> {
  const app: FastifyInstance = await buildHttpServer(vault, { host: '127.0.0.1', port: 0, auth: undefined });
  closers.push(() => app.close());
  return app.listen({ host: '127.0.0.1', port: 0 });
}

/** GET with a chosen Host header (fetch does not let one set it). */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpGet(url, { headers: { host } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('error', reject);
  });
}


describe('GET /metrics of chunkvault serve', () => {
  it('reports the cluster exactly after writes with retries and failures, a corrupt read and its repair, a scrub, and queued work', async () => {
    env = await makeTestEnv({
      storage: { organization: { partition_by: 'node', checkpoint_interval_chunks: 3 } },
      chunkvault: { retry: { attempts: 2, backoff_ms: 10 } },
    });
    await fullDisk('gcp-node-1');
    // A worker process and a serve process, as deployed (here both in the test's process).
    const workers = await open();
    const served = await open();
    const pool = await workers.startWorkers();

    const first = tasks([0, 1, 2, 3, 4, 5]);
    const results = await (await workers.producer.store(first)).results({ timeoutMs: 30_000 });
    expect(results.filter((r) => r.status === 'failed').map((r) => r.replicaId).sort()).toEqual(['c0_r1', 'c3_r1']);
    const storedBytes = [0, 1, 2, 3, 4, 5].reduce((sum, i) => sum + sizeOf(i) * (i % 3 === 0 ? 1 : 2), 0);

    // Flip a byte of c1_r0; the serve process reads c1 (mismatch on r0, good from r1) and queues the repair.
    const victim = path.join(env.basePath, results.find((r) => r.replicaId === 'c1_r0')!.storagePath);
    const bytes = await readFile(victim);
    bytes[10]! ^= 0x01;
    await writeFile(victim, bytes);
    expect((await served.getChunk('c1')).equals(first[1]!.chunkData as Buffer)).toBe(true);
    await waitFor('the repair', async () => (await workers.catalog.getReplica('c1', 'c1_r0'))?.status === 'stored');
    await waitFor('every job ended and both checkpoints sealed', async () => {
      const { replicas } = (await workers.getStatistics()).queues;
      return replicas!.waiting + replicas!.active + replicas!.delayed === 0 && (await workers.checkpoints.count()) === 2;
    });

    // A scrub that records its verifications an hour ago: the oldest-verification age is then known.
    const anHourAgo = Date.now() - 3600_000;
    const report = await workers.maintenance.runPass({ tasks: ['scrub'], now: () => anHourAgo });
    expect(report.scrub).toMatchObject({ replicasChecked: 10, corruptFound: 0 });

    // Work queued while no worker runs: two chunks of two replicas wait.
    await pool.close(10_000);
    await served.producer.store(tasks([6, 7], 100));

    const url = await serve(served);
    const before = Date.now();
    const m = await scrape(`${url}/metrics`);
    const after = Date.now();

    expect(m.value('chunkvault_replicas_stored', { backend: 'local' })).toBe(10);
    expect(m.value('chunkvault_stored_bytes', { backend: 'local' })).toBe(storedBytes);
    expect(m.samples('chunkvault_cloud_replicas_stored')).toEqual([[{ cloud: 'aws' }, 10]]);
    expect(m.value('chunkvault_cloud_stored_bytes', { cloud: 'aws' })).toBe(storedBytes);
    expect(m.value('chunkvault_node_replicas_stored', { node: 'aws-node-1' })).toBe(6);
    expect(m.value('chunkvault_node_replicas_stored', { node: 'aws-node-2' })).toBe(4);
    expect(m.value('chunkvault_replicas_failed')).toBe(2);
    expect(m.value('chunkvault_replicas_corrupt')).toBe(0);
    expect(Object.fromEntries(m.samples('chunkvault_chunks').map(([l, v]) => [l.status, v]))).toEqual({ pending: 2, stored: 4, degraded: 2, failed: 0, expired: 0 });
    expect(m.value('chunkvault_corruptions_found_total')).toBe(1);
    expect(m.value('chunkvault_repairs_done_total')).toBe(1);
    expect(m.value('chunkvault_checkpoints_created_total')).toBe(2);
    expect(m.value('chunkvault_replicas_expired_total')).toBe(0);
    expect(m.type('chunkvault_corruptions_found_total')).toBe('counter');
    expect(m.type('chunkvault_replicas_stored')).toBe('gauge');

    const depth = (queue: string) => Object.fromEntries(m.samples('chunkvault_queue_jobs').filter(([l]) => l.queue === queue).map(([l, v]) => [l.state, v]));
    expect(depth('replicas')).toEqual({ waiting: 4, active: 0, delayed: 0, failed: 2, waiting_children: 0 });
    // No parent job per chunk: chunkvault's own producer queues replica writes alone.
    expect(depth('chunks')).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0, waiting_children: 0 });
    // The maintenance job scheduler keeps its next run as one delayed job.
    expect(depth('maintenance')).toEqual({ waiting: 0, active: 0, delayed: 1, failed: 0, waiting_children: 0 });

    expect(m.value('chunkvault_maintenance_last_pass_timestamp_seconds')).toBe(Date.parse(report.finishedAt) / 1000);
    expect(m.value('chunkvault_maintenance_last_pass_failed')).toBe(0);
    expect(m.samples('chunkvault_maintenance_last_pass_replicas')).toEqual([
      [{ task: 'scrub', result: 'checked' }, 10], [{ task: 'scrub', result: 'corrupt' }, 0], [{ task: 'scrub', result: 'repairs_queued' }, 0],
    ]);
    expect(m.samples('chunkvault_maintenance_last_pass_bytes')).toEqual([[{ task: 'scrub', result: 'read' }, storedBytes]]);
    const age = m.value('chunkvault_oldest_unverified_replica_age_seconds')!;
    expect(age).toBeGreaterThanOrEqual((before - anHourAgo) / 1000);
    expect(age).toBeLessThanOrEqual((after - anHourAgo) / 1000);

    // The serve process's own read path: two replicas read and verified, one mismatch.
    expect(m.value('chunkvault_checksum_mismatches_total', { backend: 'local', trigger: 'read' })).toBe(1);
    expect(m.value('chunkvault_bytes_read_total', { backend: 'local', purpose: 'read' })).toBe(2 * sizeOf(1));
    expect(m.value('chunkvault_replica_verify_duration_seconds_count', { backend: 'local', trigger: 'read' })).toBe(2);
    // It wrote nothing: the workers did.
    expect(m.samples('chunkvault_replica_write_duration_seconds_count')).toEqual([]);
    expect(m.samples('chunkvault_replica_write_attempts_total')).toEqual([]);
    expect(m.value('process_cpu_user_seconds_total')).toBeGreaterThan(0);

    // The worker side of the same process pair, on its own metrics server.
    const workerMetrics = await startMetricsServer({ registry: workers.metrics.registry, host: '127.0.0.1', port: 0, auth: undefined, logger: workers.logger });
    closers.push(() => workerMetrics.close());
    const w = await scrape(`${workerMetrics.url}/metrics`);
    expect(w.samples('chunkvault_replica_write_attempts_total').sort(([a], [b]) => `${a.cloud}${a.outcome}`.localeCompare(`${b.cloud}${b.outcome}`))).toEqual([
      [{ backend: 'local', cloud: 'aws', outcome: 'stored' }, 10],
      [{ backend: 'local', cloud: 'gcp', outcome: 'failed' }, 2],
      [{ backend: 'local', cloud: 'gcp', outcome: 'retried' }, 2],
    ]);
    // Ten replica writes and one repair were put; each was read back (verify_on_write).
    expect(w.value('chunkvault_replica_write_duration_seconds_count', { backend: 'local' })).toBe(11);
    expect(w.value('chunkvault_replica_write_duration_seconds_bucket', { backend: 'local', le: '+Inf' })).toBe(11);
    expect(w.value('chunkvault_bytes_written_total', { backend: 'local' })).toBe(storedBytes + sizeOf(1));
    expect(w.value('chunkvault_bytes_read_total', { backend: 'local', purpose: 'verify' })).toBe(storedBytes + sizeOf(1));
    expect(w.value('chunkvault_bytes_read_total', { backend: 'local', purpose: 'repair' })).toBe(sizeOf(1));
    expect(w.value('chunkvault_replica_verify_duration_seconds_count', { backend: 'local', trigger: 'write' })).toBe(11);
    expect(w.samples('chunkvault_replica_repairs_total')).toEqual([[{ backend: 'local', outcome: 'repaired' }, 1]]);
    expect(w.samples('chunkvault_checksum_mismatches_total')).toEqual([]);
    const jobs = (job: string, outcome: string) => w.value('chunkvault_job_duration_seconds_count', { queue: job === 'chunk.finalize' ? 'chunks' : 'replicas', job, outcome });
    expect(jobs('replica.write', 'completed')).toBe(10);
    expect(jobs('replica.write', 'failed')).toBe(4);
    expect(jobs('replica.repair', 'completed')).toBe(1);
    expect(jobs('chunk.finalize', 'completed')).toBeUndefined();
  });

  it('answers 503 naming the problem when Redis cannot be read', async () => {
    env = await makeTestEnv();
    const vault = await open();
    const url = await serve(vault);
    expect((await scrape(`${url}/metrics`)).value('chunkvault_replicas_failed')).toBe(0);
    // Its Redis connections closed under it: no figures that look like zeros, a clear 503.
    await vault.close();
    const failed = await fetch(`${url}/metrics`);
    expect(failed.status).toBe(503);
    expect(await failed.text()).toMatch(/^metrics unavailable: .*Connection is closed/);
  });
});

describe('a worker metrics server', () => {
  it('asks for the configured credentials; without them it refuses a non-loopback address and answers only requests addressed to loopback', async () => {
    env = await makeTestEnv();
    const vault = await open();
    const logger = createLogger('silent');
    const server: MetricsServer = await startMetricsServer({ registry: vault.metrics.registry, host: '127.0.0.1', port: 0, auth: { kind: 'bearer', token: 's3cret' }, logger });
    closers.push(() => server.close());
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    const ok = await scrape(`${server.url}/metrics`, { authorization: 'Bearer s3cret' });
    expect(ok.type('chunkvault_replica_write_duration_seconds')).toBe('histogram');
    expect((await fetch(`${server.url}/other`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(404);
    await expect(startMetricsServer({ registry: vault.metrics.registry, host: '0.0.0.0', port: 0, auth: undefined, logger })).rejects.toThrow(ConfigError);

    // Without credentials: answered only when addressed to loopback (a DNS-rebound page is not).
    const unauthenticated = await startMetricsServer({ registry: vault.metrics.registry, host: '127.0.0.1', port: 0, auth: undefined, logger });
    closers.push(() => unauthenticated.close());
    expect(await statusWithHost(`${unauthenticated.url}/metrics`, 'attacker.example:80')).toBe(421);
    expect(await statusWithHost(`${unauthenticated.url}/metrics`, 'localhost:9464')).toBe(200);
  });
});

describe('chunkvault worker with chunkvault.metrics.worker_port', () => {
  it('serves what it wrote on its own port, logs per job, refuses a taken port, and stops serving on SIGTERM', async () => {
    const port = await freeLoopbackPort();
    env = await makeTestEnv({ chunkvault: { retry: { attempts: 2, backoff_ms: 10 }, metrics: { worker_port: port } }, storage: { organization: { partition_by: 'node' } } });
    await fullDisk('gcp-node-1');
    const worker = await startWorkerProcess(env);
    closers.push(async () => {
      if (worker.exitCode === null) worker.kill('SIGKILL');
    });
    const vault = await open();
    const results = await (await vault.producer.store(tasks([0, 1, 2, 3], 4))).results({ timeoutMs: 30_000 });
    expect(results.filter((r) => r.status === 'failed').map((r) => r.replicaId)).toEqual(['c0_r1']);
    const stats = await vault.getStatistics();
    expect(stats.successful_stores).toBe(7);

    const m = await scrape(`http://127.0.0.1:${port}/metrics`);
    expect(m.type('chunkvault_replica_write_duration_seconds')).toBe('histogram');
    expect(m.value('chunkvault_replica_write_duration_seconds_count', { backend: 'local' })).toBe(stats.successful_stores);
    expect(m.value('chunkvault_replica_write_duration_seconds_bucket', { backend: 'local', le: '+Inf' })).toBe(stats.successful_stores);
    expect(m.value('chunkvault_replica_verify_duration_seconds_count', { backend: 'local', trigger: 'write' })).toBe(stats.successful_stores);
    expect(m.value('chunkvault_bytes_written_total', { backend: 'local' })).toBe(stats.total_size_bytes);
    expect(m.value('chunkvault_bytes_read_total', { backend: 'local', purpose: 'verify' })).toBe(stats.total_size_bytes);
    expect(m.value('chunkvault_replica_write_attempts_total', { backend: 'local', cloud: 'aws', outcome: 'stored' })).toBe(7);
    expect(m.value('chunkvault_replica_write_attempts_total', { backend: 'local', cloud: 'gcp', outcome: 'retried' })).toBe(1);
    expect(m.value('chunkvault_replica_write_attempts_total', { backend: 'local', cloud: 'gcp', outcome: 'failed' })).toBe(1);
    // Per-process only: cluster figures are served by chunkvault serve, so sums across workers stay right.
    expect(m.value('chunkvault_replicas_stored', { backend: 'local' })).toBeUndefined();
    expect(m.value('process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(m.value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);

    // Every line a job logs carries the job and what it is about.
    const lines = worker.output().stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const retry = lines.find((l) => l.msg === 'replica write failed; will retry');
    expect(retry).toMatchObject({ queue: 'replicas', job: 'replica.write', chunkId: 'c0', replicaId: 'c0_r1', backend: 'local', jobId: expect.any(String) });
    expect(lines.find((l) => l.msg === 'replica write failed for good')).toMatchObject({ queue: 'replicas', jobId: retry!.jobId, chunkId: 'c0', replicaId: 'c0_r1', backend: 'local' });
    expect(lines.find((l) => l.msg === 'serving worker metrics')).toMatchObject({ url: `http://127.0.0.1:${port}/metrics` });

    // A second worker on the same port stops at start with a clear error instead of running unseen.
    const second = await spawnCli(['worker', '--config', env.configPath], { LOG_LEVEL: 'warn' }).done;
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`worker metrics port 127.0.0.1:${port} is in use`);
    // --metrics-port gives it its own.
    const otherPort = await freeLoopbackPort();
    const third = spawnCli(['worker', '--config', env.configPath, '--metrics-port', String(otherPort)], { LOG_LEVEL: 'info' });
    closers.push(async () => {
      if (third.exitCode === null) third.kill('SIGKILL');
    });
    await waitFor('the second worker to start', () => third.output().stderr.includes('worker pool started'), 30_000);
    expect((await scrape(`http://127.0.0.1:${otherPort}/metrics`)).samples('chunkvault_replica_write_attempts_total')).toEqual([]);
    third.kill('SIGTERM');
    expect((await third.done).code).toBe(0);

    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });
});
