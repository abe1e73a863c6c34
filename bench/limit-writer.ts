/**
 * The limit: the fastest correct durable writer we can think of on this machine, with no
 * queue and no catalog. Per replica: hash, write a temp file, fsync, rename, fsync the
 * directory, read back, hash, compare. One process per core runs a share of the replicas
 * at a chosen concurrency. Protocol with bench/run.ts: generate the data, print "ready",
 * wait for a line on stdin, run, print one JSON line with the result.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';

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
  const expected = createHash(algorithm).update(bytes).digest('hex');
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
  if (createHash(algorithm).update(back).digest('hex') !== expected) throw new Error(`read-back mismatch: ${file}`);
  return performance.now() - started;
}

const chunks = Array.from({ length: count }, () => randomBytes(size));
await mkdir(dir, { recursive: true });
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
      const chunk = Math.floor(job / replicas);
      latencies.push(await writeReplica(chunks[chunk]!, path.join(dir, `c${chunk}-r${job % replicas}.dat`)));
    }
  }),
);
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(`${JSON.stringify({ elapsedMs: performance.now() - started, latencies, cpuMs: (cpu.user + cpu.system) / 1000, maxRssKiB: peakRssKiB() })}\n`);
