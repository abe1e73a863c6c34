/**
 * Redis memory per replica (issue bars: under 2 KiB per queued replica, bytes never in job
 * data; issue 20: per stored replica, a packed replica's record holding pack and offset).
 *
 *   npm run bench:redis-memory -- --count=10000 --size=4096 --replicas=2
 *   npm run bench:redis-memory -- --count=2000 --size=65536 --packing=default   (one setting only)
 *
 * For each packing setting (`--packing=both`, the default: chunkvault.packing.max_chunk_bytes at
 * the schema's default, then 0, a file per replica), on a prefix and directory of its own:
 *
 * 1. queued: the producer queues the chunks with no worker running, so every job waits;
 * 2. stored: a worker pool in this process stores them all (as a worker process would);
 *    completed jobs are then still kept, as they are for chunkvault.jobs.keep_completed_seconds;
 * 3. settled: the completed jobs removed, as they are once that time has passed: what a stored
 *    replica keeps in Redis for as long as it is stored.
 *
 * Each stage is measured twice. `used_memory` before and after is what the server grew by,
 * allocator overhead included, but the Redis is shared: other clients' keys count too. The sum
 * of MEMORY USAGE (all samples) of the run's own keys is exact for them and blind to the rest;
 * it is also broken down by key shape (ids replaced by <chunk>, <n>, <id>), so the makeup of a
 * stored replica is visible. One replica record is printed whole: its `path` is the packed key
 * `<pack>#<offset>=<length>` with packing on, the file's key with it off.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { dump } from 'js-yaml';
import { Redis } from 'ioredis';
import { markdownTable, parseFlags } from './chunkvault-run.js';
import { deleteKeys } from './redis-keys.js';
import { loadConfig } from '../src/config/load-config.js';
import { openChunkvault } from '../src/app.js';
import { QUEUE_NAMES } from '../src/jobs/job-table.js';
import { createLogger } from '../src/logging/logger.js';
import type { DistributionTask } from '../src/domain/types.js';

const flags = parseFlags(process.argv.slice(2));
const count = Number(flags.count ?? 2000);
const size = Number(flags.size ?? 4096);
const replicas = Number(flags.replicas ?? 2);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SETTINGS: Record<string, number | undefined> = { 'packing on (default)': undefined, 'packing off (0)': 0 };
const settings = flags.packing === 'default' ? ['packing on (default)'] : flags.packing === '0' ? ['packing off (0)'] : Object.keys(SETTINGS);

interface Stage {
  /** used_memory's growth per replica since before the run (shared server: others' keys count too). */
  usedMemoryPerReplica: number;
  /** MEMORY USAGE of the run's own keys, summed, per replica. */
  keysPerReplica: number;
  /** Bytes, count and Redis encodings (OBJECT ENCODING: count) of the run's keys by shape. */
  shapes: Map<string, { keys: number; bytes: number; encodings: Record<string, number> }>;
}

/** A key with its ids replaced, so that the keys of every chunk, replica and job fall together. */
function shapeOf(key: string, root: string): string {
  return key
    .slice(root.length)
    .replace(/m-\d+/g, '<chunk>')
    .replace(/[0-9a-f]{8,}(-[0-9a-f]{4,})*/g, '<id>')
    .replace(/(^|[:_r])\d+(?=$|[:@])/g, '$1<n>');
}

async function measure(redis: Redis, root: string, before: number): Promise<Stage> {
  const usedMemory = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const shapes: Stage['shapes'] = new Map();
  let total = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${root}*`, 'COUNT', 1000);
    cursor = next;
    const pipeline = redis.pipeline();
    for (const key of keys) pipeline.call('MEMORY', 'USAGE', key, 'SAMPLES', '0').object('ENCODING', key);
    const replies = (await pipeline.exec()) ?? [];
    keys.forEach((key, i) => {
      const bytes = Number(replies[2 * i]?.[1] ?? 0);
      const encoding = String(replies[2 * i + 1]?.[1]);
      const shape = shapeOf(key, root);
      const entry = shapes.get(shape) ?? { keys: 0, bytes: 0, encodings: {} };
      entry.encodings[encoding] = (entry.encodings[encoding] ?? 0) + 1;
      shapes.set(shape, { keys: entry.keys + 1, bytes: entry.bytes + bytes, encodings: entry.encodings });
      total += bytes;
    });
  } while (cursor !== '0');
  const all = count * replicas;
  return { usedMemoryPerReplica: Math.round((usedMemory - before) / all), keysPerReplica: Math.round(total / all), shapes };
}

async function run(setting: string): Promise<{ queued: Stage; stored: Stage; settled: Stage; record: Record<string, string> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cv-redis-mem-'));
  const prefix = `cvmem-${randomBytes(4).toString('hex')}`;
  const root = `{${prefix}}`;
  const packing = SETTINGS[setting];
  const configPath = path.join(dir, 'config.yml');
  await writeFile(configPath, dump({
    storage: { backends: { local: { base_path: path.join(dir, 'data'), max_size_gb: 0 } }, cleanup: { enable_auto_cleanup: false } },
    chunkvault: {
      redis: { url: REDIS_URL, prefix }, staging: { dir: path.join(dir, 'staging') }, log_level: 'warn',
      ...(packing === undefined ? {} : { packing: { max_chunk_bytes: packing } }),
    },
  }));
  const { config } = loadConfig({ configPath, env: {} });
  const redis = new Redis(REDIS_URL);
  const vault = await openChunkvault(config, { logger: createLogger('warn'), announceUnimplemented: false });
  const queues = Object.values(QUEUE_NAMES).map((name) => new Queue(name, { connection: redis, prefix: root }));
  try {
    const before = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
    const tasks: DistributionTask[] = Array.from({ length: count }, (_, i) => ({
      taskId: `t${i}`, chunkId: `m-${i}`, chunkData: randomBytes(size), status: 'completed',
      replicas: Array.from({ length: replicas }, (_, j) => ({ replicaId: `m-${i}_r${j}`, chunkId: `m-${i}`, targetNode: `node-${j}`, cloudProvider: j % 2 ? 'gcp' : 'aws', status: 'completed' })),
    }));
    const handle = await vault.producer.store(tasks);
    const queued = await measure(redis, root, before);
    const pool = await vault.startWorkers();
    const results = await handle.results({ pollIntervalMs: 50 });
    const failed = results.filter((r) => r.status !== 'stored');
    if (failed.length) throw new Error(`${failed.length} replicas failed: ${failed[0]!.error}`);
    await pool.close(config.chunkvault.worker.shutdown_timeout_ms);
    const stored = await measure(redis, root, before);
    for (const queue of queues) await queue.clean(0, 0, 'completed');
    const settled = await measure(redis, root, before);
    const record = await redis.hgetall(`${root}:catalog:r:m-0:m-0_r0`);
    return { queued, stored, settled, record };
  } finally {
    for (const queue of queues) await queue.close();
    await vault.close();
    await deleteKeys(REDIS_URL, `${root}*`);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const setting of settings) results.push({ setting, ...(await run(setting)) });
const perReplica = (s: Stage) => `${s.keysPerReplica} (${s.usedMemoryPerReplica})`;
console.log(`\n${count} chunks x ${size} B x ${replicas} replicas; Redis bytes per replica: sum of the run's keys' MEMORY USAGE (used_memory growth, shared server)\n`);
console.log(markdownTable(results.map((r) => ({
  setting: r.setting, queued: perReplica(r.queued), 'stored, completed jobs kept': perReplica(r.stored), 'stored, completed jobs removed': perReplica(r.settled),
}))));
for (const r of results) {
  const shapes = [...r.settled.shapes.entries()].sort((a, b) => b[1].bytes - a[1].bytes);
  console.log(`\n${r.setting}, stored and settled: the run's keys by shape\n`);
  console.log(markdownTable(shapes.map(([shape, { keys, bytes, encodings }]) => ({
    'key shape': `\`${shape}\``, keys: String(keys), encodings: Object.entries(encodings).map(([name, n]) => `${name} ${n}`).join(', '),
    bytes: String(bytes), 'bytes per replica': (bytes / (count * replicas)).toFixed(1),
  }))));
  console.log(`\none replica record (HGETALL): ${JSON.stringify(r.record)}`);
}
process.exit(0);
