/**
 * What staging chunk bytes in a bucket costs per replica, against staging them in a local
 * directory: chunkvault end to end both ways, replicas on the local disk both ways, so the only
 * difference is where the bytes wait between the producer and the workers. The bucket is the
 * S3 server of `.ci/cloud-servers start` (Ceph radosgw on loopback, on the same cores).
 *
 *   node --import tsx bench/staging.ts [--workload=W2|W3|all] [--runs=3] [--workers=<cores>]
 *                                      [--replicas=2] [--algorithm=sha256] [--build=false]
 *
 * Runs alternate which configuration goes first; figures are the median (min–max) of the
 * runs, ratios are per pair. CPU is the producer (this process) and the worker processes;
 * the S3 server's (radosgw, ceph-osd, ceph-mon) is read from /proc over the same stretch,
 * for both configurations, since it is work the bucket adds on this machine. The bench makes
 * its own bucket, and removes its objects, the bucket and its Redis keys at the end.
 */
import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { markdownTable, median, parseFlags, ROOT, runChunkvault, summary, WORKLOADS, type Sample } from './chunkvault-run.js';
import { assertAnswers, cloudServers, exportCredentials, s3TestClient } from '../test/support/cloud-servers.js';
import { RESERVED_KEY_PREFIX } from '../src/storage/storage-layout.js';

const flags = parseFlags(process.argv.slice(2));
const runs = Number(flags.runs ?? 3);
const replicas = Number(flags.replicas ?? 2);
const algorithm = (flags.algorithm ?? 'sha256') as 'md5' | 'sha256';
// As deployed: one worker process per core.
const workers = Number(flags.workers ?? cpus().length);
const selected = !flags.workload || flags.workload === 'all' ? ['W2', 'W3'] : [flags.workload];
const STAGING_KEY_PREFIX = `${RESERVED_KEY_PREFIX}staging/`;
/** The processes of the loopback S3 server: the gateway, and the OSD and monitor behind it. */
const S3_SERVER_PROCESSES = ['radosgw', 'ceph-osd', 'ceph-mon'];
const CLOCK_TICKS_PER_S = Number(execSync('getconf CLK_TCK').toString().trim());

/** CPU seconds (user + system) the S3 server's processes have used so far; undefined when none runs here. */
function s3ServerCpuS(): number | undefined {
  let ticks = 0;
  let found = false;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (!S3_SERVER_PROCESSES.includes(readFileSync(`/proc/${pid}/comm`, 'utf8').trim())) continue;
      // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      found = true;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return found ? ticks / CLOCK_TICKS_PER_S : undefined;
}

const servers = cloudServers();
exportCredentials(servers); // the worker processes inherit them
await assertAnswers('S3 (radosgw)', servers.s3.endpoint);
const sdk = await import('@aws-sdk/client-s3');
const s3 = s3TestClient(sdk, servers);
const bucket = `cv-bench-staging-${randomBytes(4).toString('hex')}`;

/** Every key in the bucket under `prefix`. */
async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((object) => object.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

async function removeBucket(): Promise<void> {
  const keys = await keysUnder('');
  for (let first = 0; first < keys.length; first += 1000) {
    await s3.send(new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(first, first + 1000).map((Key) => ({ Key })) } }));
  }
  await s3.send(new sdk.DeleteBucketCommand({ Bucket: bucket }));
}

type Staging = 'local' | 'aws_s3';
/** Staged objects a bucket run left behind (not the staging store's storage marker), summed over its runs. */
let stagedLeft = 0;

async function runOnce(staging: Staging, count: number, size: number): Promise<Sample> {
  const common = { count, size, workers, replicas, algorithm, concurrency: 20, storeMetadata: true, outsideCpuS: s3ServerCpuS };
  if (staging === 'local') return runChunkvault(common);
  // Each run under a prefix of its own; cloud storage stays disabled, so every replica goes to the local disk.
  const keyPrefix = `run-${randomBytes(4).toString('hex')}/`;
  const sample = await runChunkvault({
    ...common,
    cloud: { enabled: false, aws_s3: { bucket, region: servers.s3.region, endpoint: servers.s3.endpoint, force_path_style: true, key_prefix: keyPrefix } },
    staging: { backend: 'aws_s3' },
  });
  const stagingPrefix = keyPrefix + STAGING_KEY_PREFIX;
  stagedLeft += (await keysUnder(stagingPrefix)).filter((key) => !key.slice(stagingPrefix.length).startsWith(RESERVED_KEY_PREFIX)).length;
  return sample;
}

/** Figures per replica, so the workloads compare. */
function perReplica(s: Sample, total: number) {
  return {
    cvCpuMs: (s.cpuS * 1000) / total,
    allCpuMs: ((s.cpuS + (s.outsideCpuS ?? 0)) * 1000) / total,
    wallMs: 1000 / s.replicasPerS,
  };
}

function spread(values: number[], digits: number): string {
  return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
}

async function benchWorkload(name: string, count: number, size: number): Promise<Array<Record<string, string>>> {
  const samples: Record<Staging, Sample[]> = { local: [], aws_s3: [] };
  for (let r = 0; r < runs; r++) {
    // Alternate which goes first, so drift of the disk and the server hits both alike.
    for (const staging of (r % 2 ? ['aws_s3', 'local'] : ['local', 'aws_s3']) as Staging[]) {
      samples[staging].push(await runOnce(staging, count, size));
    }
  }
  const total = count * replicas;
  const label = `${name} ${count}x${size >= 1048576 ? `${size / 1048576}MiB` : `${size / 1024}KiB`} x${replicas} ${algorithm} w${workers}`;
  const row = (staging: Staging): Record<string, string> => {
    const per = samples[staging].map((s) => perReplica(s, total));
    return {
      workload: label,
      staging,
      'replicas/s': summary(samples[staging], 'replicasPerS'),
      'MB/s': summary(samples[staging], 'mbPerS'),
      'p50/p99 ms': `${median(samples[staging].map((s) => s.p50Ms)).toFixed(0)}/${median(samples[staging].map((s) => s.p99Ms)).toFixed(0)}`,
      'chunkvault CPU s': summary(samples[staging], 'cpuS'),
      'S3 server CPU s': summary(samples[staging], 'outsideCpuS'),
      'chunkvault CPU ms/replica': spread(per.map((p) => p.cvCpuMs), 2),
      'CPU ms/replica incl. S3 server': spread(per.map((p) => p.allCpuMs), 2),
      'wall ms/replica': spread(per.map((p) => p.wallMs), 3),
    };
  };
  const ratio = (pick: (s: Sample) => number, digits = 2) => spread(samples.aws_s3.map((s, i) => pick(s) / pick(samples.local[i]!)), digits);
  const ratios: Record<string, string> = {
    workload: label,
    staging: 'bucket/local (per pair)',
    'replicas/s': ratio((s) => s.replicasPerS),
    'MB/s': ratio((s) => s.mbPerS),
    'p50/p99 ms': '',
    'chunkvault CPU s': ratio((s) => s.cpuS),
    'S3 server CPU s': '',
    'chunkvault CPU ms/replica': ratio((s) => perReplica(s, total).cvCpuMs),
    'CPU ms/replica incl. S3 server': ratio((s) => perReplica(s, total).allCpuMs),
    'wall ms/replica': ratio((s) => perReplica(s, total).wallMs),
  };
  const rows = [row('local'), row('aws_s3'), ratios];
  for (const r of rows) console.log(JSON.stringify(r));
  return rows;
}

if (flags.build !== 'false') execSync('npm run build', { cwd: ROOT, stdio: 'ignore' });
await s3.send(new sdk.CreateBucketCommand({ Bucket: bucket }));
const rows: Array<Record<string, string>> = [];
try {
  for (const name of selected) rows.push(...(await benchWorkload(name, WORKLOADS[name]!.count, WORKLOADS[name]!.size)));
} finally {
  await removeBucket().catch((error: unknown) => console.error(`could not remove bucket ${bucket}`, error));
  s3.destroy();
}
const table = markdownTable(rows);
const note = `Staged objects left in the bucket after the bucket runs (should be 0): ${stagedLeft}`;
console.log(`\n${table}\n\n${note}`);
await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
await writeFile(path.join(ROOT, 'bench/results/staging-latest.md'), `${new Date().toISOString()} node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model})\n\`node --import tsx bench/staging.ts ${process.argv.slice(2).join(' ')}\`\n\n${table}\n\n${note}\n`);
process.exit(0);
