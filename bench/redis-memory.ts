/**
 * Redis memory per queued replica (issue bar: under 2 KiB; bytes never in job data).
 * Queues chunks with no worker running, so every job stays waiting, and reads Redis's
 * used_memory before and after; also MEMORY USAGE of one replica job's hash.
 *
 *   npm run bench:redis-memory -- --count=2000 --size=4096 --replicas=2
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dump } from 'js-yaml';
import { Redis } from 'ioredis';
import { deleteKeys } from './redis-keys.js';
import { loadConfig } from '../src/config/load-config.js';
import { openChunkvault } from '../src/app.js';
import { createLogger } from '../src/logging/logger.js';
import type { DistributionTask } from '../src/domain/types.js';

const flags = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const count = Number(flags.count ?? 2000);
const size = Number(flags.size ?? 4096);
const replicas = Number(flags.replicas ?? 2);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const dir = await mkdtemp(path.join(tmpdir(), 'cv-redis-mem-'));
const prefix = `cvmem-${randomBytes(4).toString('hex')}`;
const configPath = path.join(dir, 'config.yml');
await writeFile(configPath, dump({
  storage: { backends: { local: { base_path: path.join(dir, 'data'), max_size_gb: 0 } }, cleanup: { enable_auto_cleanup: false } },
  chunkvault: { redis: { url: REDIS_URL, prefix }, staging: { dir: path.join(dir, 'staging') }, log_level: 'warn' },
}));
const { config } = loadConfig({ configPath, env: {} });
const redis = new Redis(REDIS_URL);
const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
const vault = await openChunkvault(config, { logger: createLogger('warn'), announceUnimplemented: false });
try {
  const before = await usedMemory();
  const tasks: DistributionTask[] = Array.from({ length: count }, (_, i) => ({
    taskId: `t${i}`, chunkId: `m-${i}`, chunkData: randomBytes(size), status: 'completed',
    replicas: Array.from({ length: replicas }, (_, j) => ({ replicaId: `m-${i}_r${j}`, chunkId: `m-${i}`, targetNode: `node-${j}`, cloudProvider: j % 2 ? 'gcp' : 'aws', status: 'completed' })),
  }));
  await vault.producer.store(tasks);
  const after = await usedMemory();
  const jobKey = `{${prefix}}:replicas:m-0_r0@m-0`;
  const jobBytes = await redis.memory('USAGE', jobKey);
  const total = count * replicas;
  console.log(JSON.stringify({
    chunks: count, replicas: total, chunkBytes: size,
    redisBytesPerQueuedReplica: Math.round((after - before) / total),
    oneReplicaJobHashBytes: jobBytes,
    note: 'includes the catalog records and queue indexes, spread per replica',
  }));
} finally {
  await vault.close();
  await deleteKeys(REDIS_URL, `{${prefix}}*`);
  redis.disconnect();
  await rm(dir, { recursive: true, force: true });
}
