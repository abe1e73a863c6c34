/**
 * `npm run bench`: chunkvault end to end against the limit of this machine, same disk,
 * alternating paired runs (small-file fsync rates here swing by up to 15x run to run).
 *
 *   npm run bench -- --workload=W2 --runs=3 --algorithm=sha256 --workers=1
 *   npm run bench -- --count=500 --size=65536 --replicas=2
 *   npm run bench -- --workload=W1 --concurrency=20 --jobs=100   (max_concurrent_writes, and the jobs a
 *                                        worker process holds: chunkvault.worker.concurrency and the
 *                                        queued limit's concurrency; by default the config's)
 *   npm run bench -- --scale            (1 vs 2 worker processes)
 *   npm run bench -- --workload=W1 --metadata=false   (store_metadata off: what recording metadata costs)
 *   npm run bench -- --workload=W1 --queued   (adds the queued limit: the limit's write as the
 *                                        processor of a BullMQ worker process, one job per replica)
 *   npm run bench -- --workload=W1 --packing=262144   (chunkvault.packing.max_chunk_bytes for chunkvault's runs)
 *   npm run bench -- --workload=W1 --queued --packed   (the queued limit appending to pack files
 *                                        with group commit instead of a file per replica)
 *   npm run bench -- --workload=W1 --restic=false   (leaves out restic, which runs as a peer when it is on PATH)
 *   npm run bench -- --workload=W1 --restic-mode=sequential   (restic's backups into its repositories one
 *                                        after the other instead of at once; see bench/restic-peer.ts)
 *   npm run bench -- --workload=W2 --runs=1 --cpu-prof   (workers write V8 CPU profiles to
 *                                        bench/results/profiles; summarise with bench/profile-summary.ts)
 *
 * chunkvault: producer in this process, worker pool in its own process(es) built from
 * dist/ as deployed; from the producer call until every replica is durable, verified and
 * catalogued. The limit: bench/limit-writer.ts, one process per core, at the best of a few
 * concurrencies tried first on the same workload. CPU is counted alike for both, from the
 * moment a process is ready to work: chunkvault's producer, workers and Redis (Sample.cpuS);
 * what the worker processes spent starting is a column of its own. restic (bench/restic-peer.ts):
 * `restic backup` of the same number of files of the same size into one repository per replica.
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { deleteKeys } from './redis-keys.js';
import { configSchema } from '../src/config/config.schema.js';
import { findRestic, RESTIC_MODES, runRestic, type ResticMode, type ResticSample } from './restic-peer.js';
import { lines, markdownTable, median, parseFlags, percentile, REDIS_URL, ROOT, runChunkvault as runOne, startMachineWatch, summary, WORKLOADS, type Sample } from './chunkvault-run.js';

const flags = parseFlags(process.argv.slice(2));
const runs = Number(flags.runs ?? 3);
const replicas = Number(flags.replicas ?? 2);
const algorithm = (flags.algorithm ?? 'sha256') as 'md5' | 'sha256';
const concurrencyFlag = flags.concurrency ? Number(flags.concurrency) : 20;
/** Jobs a worker process holds at once: chunkvault.worker.concurrency (never under max_concurrent_writes), and the queued limit's concurrency. */
const jobsFlag = Math.max(concurrencyFlag, flags.jobs ? Number(flags.jobs) : configSchema.parse({}).chunkvault.worker.concurrency);
const packedFlag = flags.packed === 'true';
const queuedName = packedFlag ? 'queued packed limit' : 'queued limit';
const resticMode = (flags['restic-mode'] ?? 'concurrent') as ResticMode;
if (!RESTIC_MODES.includes(resticMode)) throw new Error(`--restic-mode must be one of ${RESTIC_MODES.join(', ')}`);
const restic = flags.restic === 'false' ? undefined : findRestic();

function runChunkvault(count: number, size: number, workers: number): Promise<Sample> {
  return runOne({
    count, size, workers, replicas, algorithm, concurrency: concurrencyFlag, jobs: jobsFlag, storeMetadata: flags.metadata !== 'false',
    ...(flags.packing === undefined ? {} : { packingMaxChunkBytes: Number(flags.packing) }),
    ...(flags['cpu-prof'] ? { cpuProfileDir: path.join(ROOT, 'bench/results/profiles') } : {}),
  });
}

/** Starts bench/limit-writer.ts: `ready` once it has its data, `done` with its last line (JSON) when it exits 0. */
function startLimitWriter<Result>(args: string[]): { child: ChildProcess; ready: Promise<void>; done: Promise<Result> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/limit-writer.ts'), ...args, `--replicas=${replicas}`, `--algorithm=${algorithm}`], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const out: string[] = [];
  const ready = new Promise<void>((resolve) => lines(child, 'stdout', (line) => (line === 'ready' ? resolve() : out.push(line))));
  const done = new Promise<Result>((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.at(-1)!) as Result) : reject(new Error(`limit writer exited with ${code}`)))));
  return { child, ready, done };
}

async function runLimit(count: number, size: number, concurrency: number): Promise<Sample> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cv-limit-'));
  const shards = cpus().length;
  const perShard = Array.from({ length: shards }, (_, i) => Math.floor(count / shards) + (i < count % shards ? 1 : 0));
  try {
    const children = await Promise.all(perShard.map(async (n, i) => {
      await mkdir(path.join(dir, `s${i}`), { recursive: true });
      const { child, ready, done } = startLimitWriter<{ elapsedMs: number; latencies: number[]; cpuMs: number; maxRssKiB: number }>(
        [`--dir=${path.join(dir, `s${i}`)}`, `--count=${n}`, `--size=${size}`, `--concurrency=${concurrency}`]);
      await ready;
      return { child, done };
    }));
    const watch = startMachineWatch();
    const t0 = performance.now();
    for (const { child } of children) child.stdin!.end('go\n');
    const results = await Promise.all(children.map((c) => c.done));
    const elapsedS = (performance.now() - t0) / 1000;
    const machine = await watch.stop();
    const total = count * replicas;
    const latencies = results.flatMap((r) => r.latencies);
    return {
      replicasPerS: total / elapsedS,
      mbPerS: (total * size) / 1e6 / elapsedS,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      cpuS: results.reduce((s, r) => s + r.cpuMs / 1000, 0),
      peakRssMiB: results.map((r) => r.maxRssKiB / 1024),
      ...machine,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The queued limit: the limit's write behind BullMQ, as chunkvault's shape has it (the producer
 * here queues one job per replica with addBulk; `workers` worker processes run the write at
 * chunkvault's concurrency) but with no staging, catalog or checkpoints. The fastest any
 * implementation of that shape could go on this machine.
 */
async function runQueuedLimit(count: number, size: number, workers: number): Promise<Sample> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cv-qlimit-'));
  const prefix = `cvbench-${randomBytes(4).toString('hex')}`;
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('replica-write', { connection, prefix });
  const children: ChildProcess[] = [];
  try {
    const stats = await Promise.all(Array.from({ length: workers }, async (_, w) => {
      const { child, ready, done } = startLimitWriter<{ cpuMs: number; maxRssKiB: number; eventLoopMaxMs: number }>(
        [`--dir=${path.join(dir, `w${w}`)}`, `--count=${count}`, `--size=${size}`, `--concurrency=${jobsFlag}`, '--queue=replica-write', `--redis=${REDIS_URL}`, `--prefix=${prefix}`, ...(packedFlag ? ['--packed=true'] : [])]);
      children.push(child);
      await ready;
      return { child, done };
    }));
    const total = count * replicas;
    const cpuBefore = process.cpuUsage();
    const t0 = Date.now();
    for (let first = 0; first < total; first += 1000) {
      await queue.addBulk(Array.from({ length: Math.min(1000, total - first) }, (_, k) => {
        const job = first + k;
        return { name: 'replica.write', data: { c: Math.floor(job / replicas), r: job % replicas }, opts: { attempts: 3, backoff: { type: 'exponential', delay: 1000 } } };
      }));
    }
    while ((await queue.getCompletedCount()) < total) await new Promise((resolve) => setTimeout(resolve, 20));
    const elapsedS = (Date.now() - t0) / 1000;
    const producerCpu = process.cpuUsage(cpuBefore);
    const latencies = (await queue.getJobs(['completed'], 0, -1)).map((j) => j.finishedOn! - t0);
    for (const { child } of stats) child.kill('SIGTERM');
    const results = await Promise.all(stats.map((s) => s.done));
    return {
      replicasPerS: total / elapsedS,
      mbPerS: (total * size) / 1e6 / elapsedS,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      cpuS: results.reduce((s, r) => s + r.cpuMs / 1000, 0) + (producerCpu.user + producerCpu.system) / 1e6,
      peakRssMiB: results.map((r) => r.maxRssKiB / 1024),
      loopStallMs: Math.max(...results.map((r) => r.eventLoopMaxMs)),
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await queue.close();
    connection.disconnect();
    await deleteKeys(REDIS_URL, `${prefix}:*`);
    await rm(dir, { recursive: true, force: true });
  }
}

function queuedColumns(queued: Sample[], limit: Sample[], ratioKey: 'mbPerS' | 'replicasPerS'): Record<string, string> {
  const ratios = queued.map((s, i) => s[ratioKey] / limit[i]![ratioKey]);
  return {
    [`${queuedName} replicas/s`]: summary(queued, 'replicasPerS'),
    [`${queuedName} MB/s`]: summary(queued, 'mbPerS'),
    [`${queuedName} ratio`]: `${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`,
    [`${queuedName} CPU s`]: summary(queued, 'cpuS'),
    [`${queuedName} max loop stall ms`]: summary(queued, 'loopStallMs'),
  };
}

function resticColumns(peer: ResticSample[], cv: Sample[]): Record<string, string> {
  const ratios = cv.map((s, i) => s.replicasPerS / peer[i]!.copiesPerS);
  return {
    [`restic (${resticMode}) copies/s`]: summary(peer, 'copiesPerS'),
    'cv / restic (replicas/s)': `${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`,
    'restic CPU s': summary(peer, 'cpuS'),
    'restic repository open s (each backup pays it)': summary(peer, 'openS'),
  };
}

async function benchWorkload(name: string, count: number, size: number, workers: number): Promise<Record<string, string>> {
  // The limit's best concurrency, tried on the whole workload: on a quarter of W4 (12 chunks)
  // 64 looked best, and then ran the whole at half the MB/s of 4 with 1.3 GiB per process.
  let best = { concurrency: 1, rate: 0 };
  for (const concurrency of [1, 4, 16, 64]) {
    const s = await runLimit(count, size, concurrency);
    if (s.replicasPerS > best.rate) best = { concurrency, rate: s.replicasPerS };
  }
  const cv: Sample[] = [];
  const limit: Sample[] = [];
  const queued: Sample[] = [];
  const peer: ResticSample[] = [];
  const contenders = [
    async () => cv.push(await runChunkvault(count, size, workers)),
    async () => limit.push(await runLimit(count, size, best.concurrency)),
    ...(flags.queued ? [async () => queued.push(await runQueuedLimit(count, size, workers))] : []),
    ...(restic ? [async () => peer.push(await runRestic({ count, size, replicas, mode: resticMode }))] : []),
  ];
  for (let r = 0; r < runs; r++) {
    // Rotate which goes first, so drift of the disk hits all alike.
    for (let k = 0; k < contenders.length; k++) await contenders[(r + k) % contenders.length]!();
  }
  const ratioKey: 'mbPerS' | 'replicasPerS' = size >= 1024 * 1024 ? 'mbPerS' : 'replicasPerS';
  const ratios = cv.map((s, i) => (s[ratioKey] as number) / (limit[i]![ratioKey] as number));
  const cpuRatios = cv.map((s, i) => s.cpuS / limit[i]!.cpuS);
  const row = {
    workload: `${name} ${count}x${size >= 1048576 ? `${size / 1048576}MiB` : `${size / 1024}KiB`} x${replicas} ${algorithm} w${workers}`,
    'cv replicas/s': summary(cv, 'replicasPerS'),
    'limit replicas/s': summary(limit, 'replicasPerS'),
    'cv MB/s': summary(cv, 'mbPerS'),
    'limit MB/s': summary(limit, 'mbPerS'),
    [`ratio (${ratioKey === 'mbPerS' ? 'MB/s' : 'replicas/s'})`]: `${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`,
    'cv p50/p99 ms': `${median(cv.map((s) => s.p50Ms)).toFixed(0)}/${median(cv.map((s) => s.p99Ms)).toFixed(0)}`,
    'limit p50/p99 ms': `${median(limit.map((s) => s.p50Ms)).toFixed(1)}/${median(limit.map((s) => s.p99Ms)).toFixed(1)}`,
    'cv CPU s': summary(cv, 'cpuS'),
    'limit CPU s': summary(limit, 'cpuS'),
    'cv CPU s: producer / workers / Redis': `${summary(cv, 'producerCpuS')} / ${summary(cv, 'workerCpuS')} / ${summary(cv, 'redisCpuS')}`,
    'CPU cv / limit': `${median(cpuRatios).toFixed(2)} (${Math.min(...cpuRatios).toFixed(2)}–${Math.max(...cpuRatios).toFixed(2)})`,
    'cv workers\' start CPU s': summary(cv, 'workerStartCpuS'),
    'CPU cv with workers\' start / limit': median(cv.map((s, i) => (s.cpuS + s.workerStartCpuS!) / limit[i]!.cpuS)).toFixed(2),
    'cv worker peak RSS MiB': summary(cv, 'peakRssMiB'),
    'limit peak RSS MiB': summary(limit, 'peakRssMiB'),
    'cv worker max loop stall ms': summary(cv, 'loopStallMs'),
    'idle canary max loop stall ms: cv / limit': `${summary(cv, 'canaryStallMs')} / ${summary(limit, 'canaryStallMs')}`,
    'host steal ms: cv / limit': `${summary(cv, 'hostStealMs')} / ${summary(limit, 'hostStealMs')}`,
    'limit concurrency': String(best.concurrency),
    'cv jobs per worker (queued limit: the same)': String(jobsFlag),
    ...(queued.length ? queuedColumns(queued, limit, ratioKey) : {}),
    ...(peer.length ? resticColumns(peer, cv) : {}),
  };
  console.log(JSON.stringify(row));
  return row;
}

if (flags.build !== 'false') execSync('npm run build', { cwd: ROOT, stdio: 'ignore' });
const selected = flags.count
  ? { custom: { count: Number(flags.count), size: Number(flags.size ?? 65536) } }
  : flags.workload && flags.workload !== 'all'
    ? { [flags.workload]: WORKLOADS[flags.workload]! }
    : WORKLOADS;
const rows: Array<Record<string, string>> = [];
for (const [name, w] of Object.entries(selected)) {
  for (const workers of flags.scale ? [1, 2] : [Number(flags.workers ?? 1)]) rows.push(await benchWorkload(name, w.count, w.size, workers));
}
const table = markdownTable(rows);
console.log(`\n${table}`);
await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
await writeFile(path.join(ROOT, 'bench/results/latest.md'), `${new Date().toISOString()} node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model})\n\`npm run bench -- ${process.argv.slice(2).join(' ')}\`\n\n${table}\n`);
process.exit(0);
