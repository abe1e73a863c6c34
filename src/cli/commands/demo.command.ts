/**
 * The main job on embedded defaults: a worker pool in this process, a seed-like workload
 * (1,000 chunks of 64 KiB, 2 replicas each on aws/gcp nodes), progress, a summary (text or JSON).
 *
 * The demo is a deployment of its own per data directory: its Redis keys go under
 * `<prefix>-demo-<8 hex of the base path>`. Demos run from several checkouts against one Redis
 * would otherwise be one deployment over several directories, which the storage identity
 * check refuses (storage/storage-identity.ts). A data directory that is gone (removed to start
 * over) takes its demo deployment with it: the demo's keys are cleared before it starts.
 */
import { hash, randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { openChunkvault } from '../../app.js';
import type { Config } from '../../config/config.schema.js';
import type { DistributionTask } from '../../domain/types.js';
import { ChunkvaultError } from '../../errors.js';
import { redactUrl } from '../../logging/logger.js';
import { existsSync } from 'node:fs';
import { keyRoot } from '../../redis/redis-connection.js';
import { RedisEndpoint, mastersOf } from '../../redis/redis-endpoint.js';
import { onPath, startPrivateRedis, type PrivateRedis } from '../../redis/private-redis.js';
import { configFor, positiveInteger, runCommand } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';
import { startProgress } from '../progress.js';

interface DemoOptions {
  chunks: number;
  size: number;
  replicas: number;
  json?: boolean;
}

const PLACEMENTS = [
  { targetNode: 'aws-node-1', cloudProvider: 'aws' },
  { targetNode: 'gcp-node-1', cloudProvider: 'gcp' },
  { targetNode: 'aws-node-2', cloudProvider: 'aws' },
] as const;

export function registerDemo(program: Command): void {
  const command = program
    .command('demo')
    .description('store a seed-like workload end to end with an in-process worker pool, then summarise')
    .option('--chunks <n>', 'number of chunks', positiveInteger('--chunks'), 1000)
    .option('--size <bytes>', 'bytes per chunk', positiveInteger('--size'), 64 * 1024)
    .option('--replicas <n>', 'replicas per chunk (1-3)', positiveInteger('--replicas'), 2);
  declareContract(command, {
    json: '{chunks, chunk_bytes, replicas_per_chunk, replicas_stored, chunks_stored, replicas_failed, failures: [{chunkId, replicaId, error}], bytes, elapsed_seconds, replicas_per_second, mib_per_second, base_path, redis_prefix}',
    exitCodes: { failed: 'a replica failed, or no Redis answered and no redis-server is on PATH to start a private one' },
  });
  command.action((options: DemoOptions, self: Command) =>
    runCommand(async () => {
      let { config } = configFor(self);
      let privateRedis: PrivateRedis | undefined;
      try {
        await new RedisEndpoint(config.chunkvault.redis).assertReachable();
      } catch (error) {
        // A private server stands in for a missing standalone Redis only: a configured Sentinel or cluster is meant.
        if (config.chunkvault.redis.mode !== 'standalone') throw error;
        if (!(await onPath('redis-server'))) {
          throw new ChunkvaultError('E_REDIS_UNAVAILABLE', `${(error as Error).message}\nThe demo can also start a private Redis itself when a redis-server binary is on PATH (Debian: apt-get install redis-server).`);
        }
        privateRedis = await startPrivateRedis();
        process.stderr.write(`No Redis answered at ${redactUrl(config.chunkvault.redis.url)}; started a private redis-server at ${privateRedis.url} for this run (stopped at the end).\n`);
        config = withRedisUrl(config, privateRedis.url);
      }
      try {
        return await runDemo(ownDeployment(config), { ...options, replicas: Math.min(options.replicas, PLACEMENTS.length) });
      } finally {
        await privateRedis?.stop();
      }
    }),
  );
}

async function runDemo(config: Config, options: DemoOptions): Promise<number> {
  if (!existsSync(config.storage.backends.local.base_path)) await forgetDeployment(config);
  const vault = await openChunkvault(config);
  try {
    await vault.startWorkers();
    const runId = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
    const tasks: DistributionTask[] = Array.from({ length: options.chunks }, (_, i) => {
      const chunkId = `demo-${runId}-${String(i).padStart(5, '0')}`;
      return {
        taskId: `dist_task_${i}`,
        chunkId,
        chunkData: randomBytes(options.size),
        status: 'completed',
        replicas: PLACEMENTS.slice(0, options.replicas).map((p, j) => ({ replicaId: `${chunkId}_replica_${j}`, chunkId, ...p, status: 'completed' })),
      };
    });
    if (!options.json) process.stdout.write(`chunkvault demo: ${options.chunks} chunks x ${options.size} bytes, ${options.replicas} replicas each -> ${config.storage.backends.local.base_path}\n`);
    const started = process.hrtime.bigint();
    const handle = await vault.producer.store(tasks);
    const progress = startProgress('storing: replicas', handle.total);
    const results = await handle.results({ pollIntervalMs: 100, onProgress: (ended) => progress.update(ended) }).finally(() => progress.stop());
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // The last chunks' jobs seal checkpoints in the background: let that finish (and log) before the summary.
    await vault.checkpoints.settled();
    const stored = results.filter((r) => r.status === 'stored');
    const failed = results.filter((r) => r.status === 'failed');
    const bytes = stored.reduce((sum, r) => sum + r.sizeBytes, 0);
    if (options.json) {
      const summary = {
        chunks: options.chunks, chunk_bytes: options.size, replicas_per_chunk: options.replicas,
        replicas_stored: stored.length, chunks_stored: new Set(stored.map((r) => r.chunkId)).size, replicas_failed: failed.length,
        failures: failed.map((r) => ({ chunkId: r.chunkId, replicaId: r.replicaId, error: r.error })),
        bytes, elapsed_seconds: seconds, replicas_per_second: stored.length / seconds, mib_per_second: bytes / 1024 ** 2 / seconds,
        base_path: config.storage.backends.local.base_path,
        redis_prefix: config.chunkvault.redis.prefix,
      };
      printJson(summary);
      return failed.length ? 1 : 0;
    }
    const lines = [
      `stored:     ${stored.length} replicas of ${new Set(stored.map((r) => r.chunkId)).size} chunks`,
      `failed:     ${failed.length}${failed.length ? ` (first: ${failed[0]!.replicaId}: ${failed[0]!.error})` : ''}`,
      `bytes:      ${bytes} (${(bytes / 1024 ** 2).toFixed(1)} MiB)`,
      `elapsed:    ${seconds.toFixed(2)} s`,
      `throughput: ${(stored.length / seconds).toFixed(0)} replicas/s, ${(bytes / 1024 ** 2 / seconds).toFixed(1)} MiB/s`,
      `catalog:    CHUNKVAULT_REDIS_PREFIX=${config.chunkvault.redis.prefix} npx chunkvault stats --json   (data under ${config.storage.backends.local.base_path})`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return failed.length ? 1 : 0;
  } finally {
    await vault.close();
  }
}

/** Deletes every key of the demo's deployment (its prefix is the demo's own: see ownDeployment). */
async function forgetDeployment(config: Config): Promise<void> {
  const redis = new RedisEndpoint(config.chunkvault.redis).connect('chunkvault-demo');
  try {
    for (const node of await mastersOf(redis)) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${keyRoot(config.chunkvault.redis.prefix)}*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await node.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}

/** `config` with the demo's own Redis prefix for its data directory (see the top of this file). */
function ownDeployment(config: Config): Config {
  const copy = structuredClone(config) as Config;
  const directory = hash('sha256', config.storage.backends.local.base_path, 'hex').slice(0, 8);
  copy.chunkvault.redis.prefix = `${config.chunkvault.redis.prefix.slice(0, 50)}-demo-${directory}`;
  return copy;
}

function withRedisUrl(config: Config, url: string): Config {
  const copy = structuredClone(config) as Config;
  copy.chunkvault.redis.url = url;
  return copy;
}
