/**
 * One timed chunkvault run, shared by bench/run.ts (against the limit), bench/staging.ts
 * (local against bucket staging) and bench/redis-wait.ts (with and without Redis WAIT): the
 * producer in this process, worker processes from dist/ as deployed, timed from the producer
 * call until every replica is durable, verified and catalogued. Each run has its own Redis
 * prefix and temp directory and removes both.
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { dump } from 'js-yaml';
import { deleteKeys } from './redis-keys.js';
import { loadConfig } from '../src/config/load-config.js';
import { openChunkvault, type Chunkvault } from '../src/app.js';
import { createLogger } from '../src/logging/logger.js';
import type { DistributionTask } from '../src/domain/types.js';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const WORKLOADS: Record<string, { count: number; size: number }> = {
  W1: { count: 10_000, size: 4 * 1024 },
  W2: { count: 2_000, size: 64 * 1024 },
  W3: { count: 200, size: 1024 * 1024 },
  W4: { count: 50, size: 16 * 1024 * 1024 },
};

export interface Sample {
  replicasPerS: number;
  mbPerS: number;
  p50Ms: number;
  p99Ms: number;
  /**
   * CPU of all chunkvault's processes during the run, measured as the limit's is (from the
   * moment it is ready to work): the producer (this process, from its store() call), every
   * worker process from the moment its pool started, and the Redis server of the run (INFO's
   * used_cpu, unless `redisCpu` is false). What the workers spent starting is workerStartCpuS.
   */
  cpuS: number;
  /** chunkvault's runs only: the parts of cpuS, and the workers' start. */
  producerCpuS?: number;
  workerCpuS?: number;
  redisCpuS?: number;
  /** What the worker processes spent before their pools started (loading, connecting, probing): paid once per process, not per workload. */
  workerStartCpuS?: number;
  peakRssMiB: number[];
  loopStallMs?: number;
  /**
   * The longest event-loop stall of a process that does nothing but wait, run beside
   * chunkvault's during the run: what the machine itself imposes (a stall chunkvault's
   * workers share with it is the machine's, not theirs).
   */
  canaryStallMs?: number;
  /** The host's steal time during the run, all CPUs together (see startMachineWatch). */
  hostStealMs?: number;
  /** CPU of the processes `outsideCpuS` reads (e.g. the S3 server), from the start of the run until the workers exited. */
  outsideCpuS?: number;
}

export interface ChunkvaultRun {
  count: number;
  size: number;
  workers: number;
  replicas: number;
  algorithm: 'md5' | 'sha256';
  /** chunkvault.worker.concurrency (the config's default when unset). */
  jobs?: number;
  /** storage.performance.max_concurrent_writes. */
  concurrency: number;
  storeMetadata: boolean;
  /** Workers write V8 CPU profiles here. */
  cpuProfileDir?: string;
  /** Merged into the config's `storage.backends.cloud` (e.g. the aws_s3 block bucket staging names). */
  cloud?: Record<string, unknown>;
  /** Merged into `chunkvault.staging` (its `dir` is the run's temp directory). */
  staging?: Record<string, unknown>;
  /** `chunkvault.packing.max_chunk_bytes` (replicas up to it go into pack files); the schema's default when unset. */
  packingMaxChunkBytes?: number;
  /** Merged into `chunkvault.redis` (e.g. a Sentinel topology's mode, nodes and master name). */
  redis?: Record<string, unknown>;
  /** The Redis the run's keys are removed from at the end (e.g. a Sentinel topology's master); REDIS_URL when unset. */
  redisUrl?: string;
  /** CPU seconds so far of processes outside chunkvault that work for it; read before and after the run. */
  outsideCpuS?: () => number | undefined;
  /** Whether cpuS counts the CPU of the Redis at `redisUrl` (default true; false where outsideCpuS reads the Redis servers). */
  redisCpu?: boolean;
}

/** `--name=value` arguments as { name: value }; a bare `--name` is 'true'. */
export function parseFlags(args: string[]): Record<string, string> {
  return Object.fromEntries(args.map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'];
  }));
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** `median (min–max)` of one figure over the runs (the largest element of an array-valued one). */
export function summary<S extends object>(samples: S[], key: keyof S): string {
  const values = samples.map((s) => (Array.isArray(s[key]) ? Math.max(...(s[key] as number[])) : (s[key] as number)));
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
  return `${fmt(median(values))} (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})`;
}

/** Rows as a Markdown table, columns in the first row's key order. */
export function markdownTable(rows: Array<Record<string, string>>): string {
  const headers = Object.keys(rows[0]!);
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${headers.map((h) => r[h]).join(' | ')} |`)].join('\n');
}

/**
 * What the machine itself does to every process during a run, told apart from what a
 * contender does: an idle canary (a node process that only waits, measuring its event-loop
 * delay as a worker does, 10 ms resolution) and the host's steal time from /proc/stat (the
 * time the hypervisor did not run this machine's CPUs although they had work). On a virtual
 * machine whose host caps its CPU time, a workload that keeps every core busy has the whole
 * machine stopped for the cap's period: every process then stalls alike, however it is written.
 * `stop` returns the canary's longest stall and the steal summed over all CPUs, in ms.
 */
export function startMachineWatch(): { stop: () => Promise<{ canaryStallMs: number; hostStealMs: number }> } {
  const source = `const h = require('node:perf_hooks').monitorEventLoopDelay({ resolution: 10 }); h.enable();
setInterval(() => {}, 1000);
process.on('SIGTERM', () => { process.stdout.write(String(Math.round(h.max / 1e6))); process.exit(0); });
process.stdout.write('ready\\n');`;
  const child = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
  const stealBefore = hostStealMs();
  let out = '';
  child.stdout!.on('data', (piece: Buffer) => (out += piece.toString()));
  return {
    stop: () => new Promise((resolve) => {
      const hostStealMsDuring = hostStealMs() - stealBefore;
      child.once('exit', () => resolve({ canaryStallMs: Number(out.replace(/^ready\n/, '')), hostStealMs: hostStealMsDuring }));
      child.kill('SIGTERM');
    }),
  };
}

/** Steal time so far of all CPUs together, in ms: the 8th value of /proc/stat's `cpu` line, in clock ticks. */
function hostStealMs(): number {
  const total = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
  return (Number(total[8] ?? 0) * 1000) / CLOCK_TICKS_PER_S;
}

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`). */
export const CLOCK_TICKS_PER_S = Number(execSync('getconf CLK_TCK').toString().trim());

/** CPU seconds so far (user and system) of the processes `pids`, from /proc. */
export function cpuSecondsOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/** CPU seconds so far of the Redis server at `url` (INFO's used_cpu_user + used_cpu_sys). */
export async function redisCpuSecondsOf(url: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true });
  try {
    const info = await redis.info('cpu');
    const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
    return field('used_cpu_user') + field('used_cpu_sys');
  } finally {
    redis.disconnect();
  }
}

export function lines(child: ChildProcess, stream: 'stdout' | 'stderr', onLine: (line: string) => void): void {
  createInterface({ input: child[stream]! }).on('line', onLine);
}

function makeTasks(count: number, size: number, replicas: number, tag: string): DistributionTask[] {
  return Array.from({ length: count }, (_, i) => {
    const chunkId = `b${tag}-${i}`;
    return {
      taskId: `t${i}`, chunkId, chunkData: randomBytes(size), status: 'completed',
      replicas: Array.from({ length: replicas }, (_, j) => ({ replicaId: `${chunkId}_r${j}`, chunkId, targetNode: `node-${j}`, cloudProvider: j % 2 ? 'gcp' : 'aws', status: 'completed' })),
    };
  });
}

export async function runChunkvault(run: ChunkvaultRun): Promise<Sample> {
  const { count, size, workers, replicas, algorithm } = run;
  const redisUrl = run.redisUrl ?? REDIS_URL;
  const dir = await mkdtemp(path.join(tmpdir(), 'cv-bench-'));
  const prefix = `cvbench-${randomBytes(4).toString('hex')}`;
  const configPath = path.join(dir, 'config.yml');
  await writeFile(configPath, dump({
    storage: {
      backends: { local: { base_path: path.join(dir, 'data'), max_size_gb: 0 }, ...(run.cloud ? { cloud: run.cloud } : {}) },
      integrity: { checksum_algorithm: algorithm, verify_on_write: true, store_metadata: run.storeMetadata },
      cleanup: { enable_auto_cleanup: false },
      performance: { max_concurrent_writes: run.concurrency },
    },
    chunkvault: {
      redis: { url: redisUrl, prefix, ...run.redis }, staging: { dir: path.join(dir, 'staging'), ...run.staging }, log_level: 'warn',
      ...(run.jobs === undefined ? {} : { worker: { concurrency: run.jobs } }),
      ...(run.packingMaxChunkBytes === undefined ? {} : { packing: { max_chunk_bytes: run.packingMaxChunkBytes } }),
    },
  }));
  const { config } = loadConfig({ configPath, env: {} });
  const children: ChildProcess[] = [];
  const stats: Array<{ cpuUserMs: number; cpuSystemMs: number; maxRssKiB: number; eventLoopMaxMs: number }> = [];
  const startCpuS: number[] = [];
  let vault: Chunkvault | undefined;
  // Everything from here is cleaned up however it ends: a worker that fails its checks at
  // start (a storage server down) must not leave the run's keys and files behind.
  try {
    for (let w = 0; w < workers; w++) {
      const profile = run.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${run.cpuProfileDir}`] : [];
      const child = spawn(process.execPath, [...profile, path.join(ROOT, 'dist/cli/main.js'), 'worker', '--config', configPath], { env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
        lines(child, 'stderr', (line) => {
          if (line.includes('worker pool started')) {
            startCpuS.push(cpuSecondsOf([child.pid!]));
            resolve();
          }
          if (line.includes('"worker stopped"')) stats.push(JSON.parse(line));
        });
      });
    }
    vault = await openChunkvault(config, { logger: createLogger('warn'), announceUnimplemented: false });
    const tasks = makeTasks(count, size, replicas, randomBytes(3).toString('hex'));
    const outsideBefore = run.outsideCpuS?.();
    const redisBefore = run.redisCpu === false ? undefined : await redisCpuSecondsOf(redisUrl);
    const cpuBefore = process.cpuUsage();
    const watch = startMachineWatch();
    const t0 = Date.now();
    const handle = await vault.producer.store(tasks);
    const results = await handle.results({ pollIntervalMs: 20 });
    const elapsedS = (Date.now() - t0) / 1000;
    const producerCpu = process.cpuUsage(cpuBefore);
    const failed = results.filter((r) => r.status !== 'stored');
    if (failed.length) throw new Error(`${failed.length} replicas failed: ${failed[0]!.error}`);
    const latencies = results.map((r) => Date.parse(r.storedAt) - t0);
    // The workers free staged bytes as chunks end and finish their jobs before they exit.
    await Promise.all(children.map((c) => new Promise((resolve) => { c.once('exit', resolve); c.kill('SIGTERM'); })));
    const { canaryStallMs, hostStealMs } = await watch.stop();
    const outsideAfter = run.outsideCpuS?.();
    const redisCpuS = redisBefore === undefined ? undefined : (await redisCpuSecondsOf(redisUrl)) - redisBefore;
    const workerStartCpuS = startCpuS.reduce((a, b) => a + b, 0);
    const workerCpuS = stats.reduce((s, w) => s + (w.cpuUserMs + w.cpuSystemMs) / 1000, 0) - workerStartCpuS;
    const producerCpuS = (producerCpu.user + producerCpu.system) / 1e6;
    return {
      replicasPerS: results.length / elapsedS,
      mbPerS: (results.length * size) / 1e6 / elapsedS,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      cpuS: producerCpuS + workerCpuS + (redisCpuS ?? 0),
      producerCpuS, workerCpuS, workerStartCpuS,
      ...(redisCpuS === undefined ? {} : { redisCpuS }),
      peakRssMiB: stats.map((w) => w.maxRssKiB / 1024),
      loopStallMs: Math.max(...stats.map((w) => w.eventLoopMaxMs)),
      canaryStallMs, hostStealMs,
      ...(outsideBefore !== undefined && outsideAfter !== undefined ? { outsideCpuS: outsideAfter - outsideBefore } : {}),
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await vault?.close().catch((error: unknown) => console.error('could not close the producer', error));
    await deleteKeys(redisUrl, `{${prefix}}*`);
    await rm(dir, { recursive: true, force: true });
  }
}
