/**
 * What waiting for a Redis replica (WAIT, `chunkvault.redis.min_replicas_acked`) adds per chunk
 * replica: chunkvault end to end on one Sentinel topology (a master, one Redis replica and three
 * sentinels on loopback, test/support/redis-topologies.ts), `min_replicas_acked: 1` against `0`
 * and nothing else different. The Redis replica replicates in both; only the waiting differs.
 *
 *   node --import tsx bench/redis-wait.ts [--workload=W1,W3|all] [--runs=3] [--workers=<cores>]
 *                                         [--replicas=2] [--algorithm=sha256] [--build=false]
 *
 * Runs alternate which setting goes first; figures are the median (min–max) of the runs, ratios
 * and differences are per pair. Per run it also reads the master's count of WAIT commands
 * (INFO commandstats, before and after the run, workers' start and exit included), which says
 * how many replicas one WAIT serves, and the CPU of the master and the Redis replica (from
 * /proc, over the stretch runChunkvault times its outside CPU). Before the runs it times one
 * WAIT at a time on the idle topology: what a WAIT's round trip is here. The topology keeps
 * nothing on disk; it is stopped, and each run's keys removed, however the bench ends.
 */
import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { cpuSecondsOf, markdownTable, median, parseFlags, percentile, ROOT, runChunkvault, summary, WORKLOADS, type Sample } from './chunkvault-run.js';
import { startSentinelTopology, type HostPort, type SentinelTopology } from '../test/support/redis-topologies.js';

const flags = parseFlags(process.argv.slice(2));
const runs = Number(flags.runs ?? 3);
const replicas = Number(flags.replicas ?? 2);
const algorithm = (flags.algorithm ?? 'sha256') as 'md5' | 'sha256';
// As deployed: one worker process per core.
const workers = Number(flags.workers ?? cpus().length);
// W1's 4 KiB replicas cost the least each, so a fixed cost per replica shows most there; W3 for 1 MiB.
const selected = !flags.workload || flags.workload === 'all' ? ['W1', 'W3'] : flags.workload.split(',');
for (const name of selected) if (!WORKLOADS[name]) throw new Error(`no workload ${name} (there are ${Object.keys(WORKLOADS).join(', ')})`);

type Acked = 0 | 1;
interface Measured {
  sample: Sample;
  /** WAIT commands the master ran during the run. */
  waits: number;
}

async function processIdOf(client: Redis): Promise<number> {
  return Number(/^process_id:(\d+)/m.exec(await client.info('server'))?.[1]);
}

/** The calls so far of WAIT on `client`'s server. */
async function waitCallsOn(client: Redis): Promise<number> {
  return Number(/^cmdstat_wait:calls=(\d+)/m.exec(await client.info('commandstats'))?.[1] ?? 0);
}

/** The master and its one Redis replica, asked directly (not through the Sentinels), and their processes. */
interface DataNodes {
  master: HostPort;
  masterClient: Redis;
  pids: number[];
}

async function dataNodesOf(topology: SentinelTopology): Promise<DataNodes> {
  const master = await topology.master();
  const masterClient = new Redis(master);
  const port = Number(/^slave0:.*port=(\d+)/m.exec(await masterClient.info('replication'))?.[1]);
  const replicaClient = new Redis({ host: master.host, port });
  try {
    return { master, masterClient, pids: [await processIdOf(masterClient), await processIdOf(replicaClient)] };
  } finally {
    replicaClient.disconnect();
  }
}

/**
 * What one WAIT for one Redis replica takes on the idle topology, one at a time: the median and
 * p99 µs of `INCR; WAIT 1` against `INCR` alone, each in one round trip (as the barrier sends
 * it), alternating after a warm-up so that the two meet the same machine.
 */
async function waitRoundTrip(masterClient: Redis, times = 1000, warmUp = 200): Promise<string> {
  const key = `cvbench-wait-probe-${randomBytes(4).toString('hex')}`;
  const took: Record<'alone' | 'waited', number[]> = { alone: [], waited: [] };
  try {
    for (let i = 0; i < warmUp + 2 * times; i++) {
      const withWait = i % 2 === 1;
      const pipeline = masterClient.pipeline().incr(key);
      if (withWait) pipeline.wait(1, 2000);
      const t0 = process.hrtime.bigint();
      const replies = (await pipeline.exec()) ?? [];
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      if (withWait && replies[1]?.[1] !== 1) throw new Error(`WAIT 1 answered ${String(replies[1]?.[1])}: the Redis replica did not acknowledge`);
      if (i >= warmUp) took[withWait ? 'waited' : 'alone'].push(us);
    }
  } finally {
    await masterClient.del(key);
  }
  const figures = (values: number[]) => `median ${median(values).toFixed(0)} µs, p99 ${percentile(values, 99).toFixed(0)} µs`;
  return `One at a time on the idle topology (${times} each, alternating): INCR + WAIT 1 ${figures(took.waited)}; INCR alone ${figures(took.alone)}`;
}

/** Keys a run left on the master (each run removes its own: should stay 0). */
let keysLeft = 0;

async function runOnce(topology: SentinelTopology, nodes: DataNodes, acked: Acked, count: number, size: number): Promise<Measured> {
  const before = await waitCallsOn(nodes.masterClient);
  const sample = await runChunkvault({
    count, size, workers, replicas, algorithm, concurrency: 20, storeMetadata: true,
    redis: { ...topology.config, min_replicas_acked: acked },
    redisUrl: `redis://${nodes.master.host}:${nodes.master.port}`,
    outsideCpuS: () => cpuSecondsOf(nodes.pids),
    redisCpu: false,
  });
  const waits = (await waitCallsOn(nodes.masterClient)) - before;
  // A failover in a run would measure it, not WAIT (and the counters above would be another node's).
  const master = await topology.master();
  if (master.port !== nodes.master.port) throw new Error(`the Sentinels failed the master over to ${master.host}:${master.port} during a run: its figures mean nothing`);
  keysLeft += await nodes.masterClient.dbsize();
  return { sample, waits };
}

function spread(values: number[], digits: number): string {
  return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
}

/** Per chunk replica, in µs, so the workloads compare. */
function perReplica(m: Measured, total: number) {
  return {
    wallUs: 1e6 / m.sample.replicasPerS,
    cvCpuUs: (m.sample.cpuS * 1e6) / total,
    redisCpuUs: ((m.sample.outsideCpuS ?? 0) * 1e6) / total,
    waits: m.waits / total,
  };
}

async function benchWorkload(topology: SentinelTopology, nodes: DataNodes, name: string): Promise<Array<Record<string, string>>> {
  const { count, size } = WORKLOADS[name]!;
  const measured: Record<Acked, Measured[]> = { 1: [], 0: [] };
  for (let r = 0; r < runs; r++) {
    // Alternate which goes first, so drift of the disk and the machine hits both alike.
    for (const acked of (r % 2 ? [0, 1] : [1, 0]) as Acked[]) {
      const m = await runOnce(topology, nodes, acked, count, size);
      measured[acked].push(m);
      console.log(JSON.stringify({ workload: name, run: r, min_replicas_acked: acked, replicasPerS: m.sample.replicasPerS, cpuS: m.sample.cpuS, redisCpuS: m.sample.outsideCpuS, waits: m.waits }));
    }
  }
  const total = count * replicas;
  const label = `${name} ${count}x${size >= 1048576 ? `${size / 1048576}MiB` : `${size / 1024}KiB`} x${replicas} ${algorithm} w${workers}`;
  const per = (acked: Acked) => measured[acked].map((m) => perReplica(m, total));
  const row = (acked: Acked): Record<string, string> => {
    const samples = measured[acked].map((m) => m.sample);
    return {
      workload: label,
      min_replicas_acked: String(acked),
      'replicas/s': summary(samples, 'replicasPerS'),
      'p50/p99 ms': `${median(samples.map((s) => s.p50Ms)).toFixed(0)}/${median(samples.map((s) => s.p99Ms)).toFixed(0)}`,
      'wall µs/replica': spread(per(acked).map((p) => p.wallUs), 0),
      'chunkvault CPU µs/replica': spread(per(acked).map((p) => p.cvCpuUs), 0),
      'Redis CPU µs/replica': spread(per(acked).map((p) => p.redisCpuUs), 0),
      'WAITs/replica': spread(per(acked).map((p) => p.waits), 3),
    };
  };
  const pairs = (pick: (p: ReturnType<typeof perReplica>) => number, combine: (with1: number, with0: number) => number, digits: number) =>
    spread(per(1).map((p, i) => combine(pick(p), pick(per(0)[i]!))), digits);
  const ratio = (pick: (p: ReturnType<typeof perReplica>) => number) => pairs(pick, (a, b) => a / b, 3);
  const difference = (pick: (p: ReturnType<typeof perReplica>) => number) => pairs(pick, (a, b) => a - b, 0);
  const ratios: Record<string, string> = {
    workload: label,
    min_replicas_acked: '1/0 (per pair)',
    // Throughput's ratio is the inverse of wall time's.
    'replicas/s': ratio((p) => 1 / p.wallUs),
    'p50/p99 ms': '',
    'wall µs/replica': ratio((p) => p.wallUs),
    'chunkvault CPU µs/replica': ratio((p) => p.cvCpuUs),
    'Redis CPU µs/replica': ratio((p) => p.redisCpuUs),
    'WAITs/replica': '',
  };
  const differences: Record<string, string> = {
    workload: label,
    min_replicas_acked: '1 − 0 (per pair)',
    'replicas/s': '',
    'p50/p99 ms': '',
    'wall µs/replica': difference((p) => p.wallUs),
    'chunkvault CPU µs/replica': difference((p) => p.cvCpuUs),
    'Redis CPU µs/replica': difference((p) => p.redisCpuUs),
    'WAITs/replica': '',
  };
  const rows = [row(1), row(0), ratios, differences];
  for (const r of rows) console.log(JSON.stringify(r));
  return rows;
}

if (flags.build !== 'false') execSync('npm run build', { cwd: ROOT, stdio: 'ignore' });
// Sentinels that ask every second (fastSentinelTimers); a master slow under the benchmark's load
// for a second or two must not be failed over, so it is down only after 30 s without an answer.
const topology = await startSentinelTopology({ fastSentinelTimers: true, downAfterMs: 30_000 });
let nodes: DataNodes | undefined;
const rows: Array<Record<string, string>> = [];
const notes: string[] = [];
try {
  nodes = await dataNodesOf(topology);
  notes.push(await waitRoundTrip(nodes.masterClient));
  console.log(notes.at(-1));
  for (const name of selected) rows.push(...(await benchWorkload(topology, nodes, name)));
} finally {
  nodes?.masterClient.disconnect();
  await topology.stop().catch((error: unknown) => console.error(`could not stop the Sentinel topology in ${topology.dir}`, error));
}
const table = markdownTable(rows);
notes.push(`Keys left on the master after the runs (should be 0): ${keysLeft}`);
const note = notes.join('\n\n');
console.log(`\n${table}\n\n${note}`);
await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
await writeFile(path.join(ROOT, 'bench/results/redis-wait-latest.md'), `${new Date().toISOString()} node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model})\n\`node --import tsx bench/redis-wait.ts ${process.argv.slice(2).join(' ')}\`\n\n${table}\n\n${note}\n`);
process.exit(0);
