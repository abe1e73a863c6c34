/**
 * The limit: the fastest correct durable writer we can think of on this machine, with no
 * queue and no catalog. Per replica: hash, write a temp file, fsync, rename, fsync the
 * directory, read back, hash, compare. One process per core runs a share of the replicas
 * at a chosen concurrency. Protocol with bench/run.ts: generate the data, print "ready",
 * wait for a line on stdin, run, print one JSON line with the result.
 *
 * With --queue=NAME --redis=URL it is the queued limit instead: the same write, run as the
 * processor of a BullMQ Worker (one job per replica, as chunkvault's shape asks) at the given
 * concurrency, until SIGTERM; it prints "ready" once the worker runs, and on SIGTERM one JSON
 * line with its CPU, peak RSS and longest event-loop stall. bench/run.ts queues the jobs.
 * With --packed=true as well, each replica is appended to the process's pack file instead
 * (src/backends/pack: group commit, one fdatasync for the appends that wait together), read
 * back with one pread and hashed: the ceiling of the shape for small replicas in packs.
 */
import { hash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { DurableDirectories } from '../src/backends/durable-directories.js';
import { readPackedReplica } from '../src/backends/pack/pack-read.js';
import { PackWriter } from '../src/backends/pack/pack-writer.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const dir = args.dir!;
const count = Number(args.count);
const size = Number(args.size);
const replicas = Number(args.replicas);
const algorithm = args.algorithm as 'md5' | 'sha256';
const concurrency = Number(args.concurrency);

/** Peak RSS from VmHWM (getrusage's maxrss survives exec and would report the bench's own). */
function peakRssKiB(): number {
  const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS;
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeReplica(bytes: Buffer, file: string): Promise<number> {
  const started = performance.now();
  const expected = hash(algorithm, bytes, 'hex');
  const temp = `${file}.tmp`;
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  await fsyncPath(path.dirname(file));
  const back = await readFile(file);
  if (hash(algorithm, back, 'hex') !== expected) throw new Error(`read-back mismatch: ${file}`);
  return performance.now() - started;
}

/** The packed write: append to this process's pack, then read the record back and compare its hash. */
async function writePacked(packs: PackWriter, bytes: Buffer, chunk: number, replica: number): Promise<void> {
  const expected = hash(algorithm, bytes, 'hex');
  const ids = { chunkId: `c${chunk}`, replicaId: `r${replica}` };
  const at = await packs.append({ kind: 'replica', ...ids, checksum: `${algorithm}:${expected}`, sizeBytes: bytes.byteLength }, bytes);
  const back = await readPackedReplica(path.join(dir, at.pack), { ...ids, offset: at.offset, length: at.length });
  if (hash(algorithm, back, 'hex') !== expected) throw new Error(`read-back mismatch: ${at.pack} at ${at.offset}`);
}

const chunks = Array.from({ length: count }, () => randomBytes(size));
const fileOf = (chunk: number, replica: number) => path.join(dir, `c${chunk}-r${replica}.dat`);

/** The limit: every replica of this process's share, `concurrency` at a time, after "go" on stdin. */
async function runAlone(): Promise<void> {
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    const input = createInterface({ input: process.stdin });
    input.once('line', () => {
      input.close();
      resolve();
    });
  });
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const latencies: number[] = [];
  let next = 0;
  const jobs = count * replicas;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, jobs) }, async () => {
      while (next < jobs) {
        const job = next++;
        latencies.push(await writeReplica(chunks[Math.floor(job / replicas)]!, fileOf(Math.floor(job / replicas), job % replicas)));
      }
    }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  process.stdout.write(`${JSON.stringify({ elapsedMs: performance.now() - started, latencies, cpuMs: (cpu.user + cpu.system) / 1000, maxRssKiB: peakRssKiB() })}\n`);
}

/** The queued limit: the same write as a BullMQ processor, one job { c, r } per replica, until SIGTERM. */
async function serveQueue(queue: string): Promise<void> {
  const connection = new Redis(args.redis!, { maxRetriesPerRequest: null });
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const packs = args.packed === 'true' ? new PackWriter({ dir, dirKey: '', directories: new DurableDirectories(), maxPackBytes: 64 * 1024 * 1024 }) : undefined;
  const worker = new Worker<{ c: number; r: number }>(
    queue,
    async (job) => {
      if (packs) await writePacked(packs, chunks[job.data.c]!, job.data.c, job.data.r);
      else await writeReplica(chunks[job.data.c]!, fileOf(job.data.c, job.data.r));
    },
    { connection, prefix: args.prefix, concurrency, removeOnComplete: { age: 3600 }, autorun: false },
  );
  await worker.waitUntilReady();
  const cpuBefore = process.cpuUsage();
  loopDelay.enable();
  process.once('SIGTERM', () => {
    void worker.close().then(async () => {
      await packs?.close();
      const cpu = process.cpuUsage(cpuBefore);
      process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, maxRssKiB: peakRssKiB(), eventLoopMaxMs: loopDelay.max / 1e6 })}\n`);
      connection.disconnect();
    });
  });
  void worker.run();
  process.stdout.write('ready\n');
}

await mkdir(dir, { recursive: true });
if (args.queue) await serveQueue(args.queue);
else await runAlone();
