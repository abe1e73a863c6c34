/**
 * The composition root: builds Redis connections, logger, backends, catalog, staging,
 * producer and handlers, and hands them to constructors. Nothing else creates them.
 * `close()` releases everything in reverse order.
 */
import { Queue } from 'bullmq';
import type { Config } from './config/config.schema.js';
import { ConfigError } from './errors.js';
import { unimplementedSettings } from './config/load-config.js';
import { createLogger, type Logger } from './logging/logger.js';
import { keyRoot } from './redis/redis-connection.js';
import { RedisEndpoint, type RedisClient } from './redis/redis-endpoint.js';
import { BackendRegistry } from './backends/backend-registry.js';
import { Catalog } from './catalog/catalog.js';
import { ReplicaMetadata } from './catalog/replica-metadata.js';
import { StagingArea, stagingStoreOf } from './staging/staging-area.js';
import { StagedOrphans } from './staging/staged-orphans.js';
import { ChunkProducer } from './producer/chunk-producer.js';
import { ReplicaWriter } from './jobs/replica-write.job.js';
import { ByteBudget } from './jobs/byte-budget.js';
import { ChunkFinalizer } from './jobs/chunk-finalize.job.js';
import { ReplicaRepairer } from './jobs/replica-repair.job.js';
import { QUEUE_NAMES, type QueueName } from './jobs/job-table.js';
import { ReplicaQueues, replicaQueueName } from './jobs/replica-queues.js';
import { CheckpointIndex } from './catalog/checkpoint-index.js';
import { CheckpointService } from './checkpoints/checkpoint-service.js';
import { ChunkReader, type ChunkRead, type ChunkRecords } from './reads/chunk-reader.js';
import { RepairScheduler } from './reads/repair-scheduler.js';
import { MaintenanceService } from './maintenance/maintenance-service.js';
import { WorkerPool } from './worker/worker-pool.js';
import { startHashThreads } from './integrity/hash-threads.js';
import { MaintenanceRunner } from './jobs/maintenance-run.job.js';
import { ProcessMetrics } from './metrics/process-metrics.js';
import { collectStatistics, type StorageStatistics } from './stats/statistics.js';
import { reindex, type ReindexOptions, type ReindexReport } from './reindex/reindex.js';
import { CatalogKeys } from './catalog/catalog-keys.js';
import { verifyStorageIdentity } from './storage/storage-identity.js';

export interface OpenOptions {
  logger?: Logger;
  /** Log the configured-but-unimplemented settings at warn level (default) rather than debug. */
  announceUnimplemented?: boolean;
}

export class Chunkvault {
  readonly producer: ChunkProducer;
  readonly checkpoints: CheckpointService;
  readonly maintenance: MaintenanceService;
  /** What this process observes (latencies, bytes, retries, mismatches), in its own registry. */
  readonly metrics = new ProcessMetrics();
  readonly #reader: ChunkReader;
  readonly #repairs: RepairScheduler;
  readonly #redis: RedisClient;
  readonly #catalogRedis: RedisClient;
  readonly #queues: Record<string, Queue>;
  readonly #replicaQueues: ReplicaQueues;
  readonly #stagedOrphans: StagedOrphans;
  readonly #pools: WorkerPool[] = [];
  #closed = false;

  /** Use `openChunkvault`, which connects first; the constructor does no I/O. */
  constructor(
    readonly config: Config,
    readonly logger: Logger,
    readonly redisEndpoint: RedisEndpoint,
    redis: RedisClient,
    catalogRedis: RedisClient,
    readonly catalog: Catalog,
    readonly metadata: ReplicaMetadata,
    readonly backends: BackendRegistry,
    readonly staging: StagingArea,
    readonly checkpointIndex: CheckpointIndex,
  ) {
    this.#redis = redis;
    this.#catalogRedis = catalogRedis;
    const prefix = keyRoot(config.chunkvault.redis.prefix);
    const perBackend = config.chunkvault.routing.queue_per_backend ? backends.all().map((backend) => backend.name) : [];
    const queueNames = [...Object.values(QUEUE_NAMES), ...perBackend.map(replicaQueueName)];
    this.#queues = Object.fromEntries(queueNames.map((name) => [name, new Queue(name, { connection: redis, prefix })]));
    // Queued jobs are as precious as catalog records: addBulk waits until Redis replicas hold them.
    // The catalog's fence covers what the master it reaches applied, whichever connection wrote it;
    // it checks the jobs are there first, since the queues' connection may have reached another node.
    this.#replicaQueues = new ReplicaQueues(this.#queues[QUEUE_NAMES.replicas]!, new Map(perBackend.map((backend) => [backend, this.#queues[replicaQueueName(backend)]!])), (keys) => catalog.confirmHeld(keys));
    // BullMQ re-emits connection errors on each queue and prints them raw to stderr when no one
    // listens; the connection's own listener (openChunkvault) already logs them structured.
    const quiet = (error: Error): void => logger.debug({ err: error }, 'queue connection error');
    for (const queue of Object.values(this.#queues)) queue.on('error', quiet);
    this.producer = new ChunkProducer({ config, catalog, backends, staging, replicaQueues: this.#replicaQueues, logger });
    this.#repairs = new RepairScheduler(config, catalog, this.#replicaQueues, logger);
    this.#stagedOrphans = new StagedOrphans({ catalog, staging, replicaQueues: this.#replicaQueues, chunks: this.#queues[QUEUE_NAMES.chunks]!, logger });
    this.checkpoints = new CheckpointService({ config, catalog, index: checkpointIndex, backends, repairs: this.#repairs, logger });
    this.#reader = new ChunkReader({ config, catalog, backends, repairs: this.#repairs, logger, metrics: this.metrics });
    this.maintenance = new MaintenanceService({
      config, catalog, metadata, backends, repairs: this.#repairs, redis, queue: this.#queues[QUEUE_NAMES.maintenance]!,
      keyPrefix: `${prefix}:catalog`, logger,
    });
  }

  /**
   * The chunk's bytes from its first good replica, verified when verify_on_read is on; bad
   * replicas met on the way are marked and repaired from a good one in the background.
   * Throws NotFoundError (unknown chunk) or ChunkCorruptError (no good replica).
   */
  getChunk(chunkId: string): Promise<Buffer> {
    return this.#reader.getChunk(chunkId);
  }

  /**
   * As getChunk, with the catalog's record of the chunk the bytes were checked against (its
   * checksum and algorithm, for answers that carry them). Throws as getChunk does.
   */
  readChunk(chunkId: string): Promise<ChunkRead> {
    return this.#reader.read(chunkId);
  }

  /**
   * The catalog's records of the chunk and of each of its replicas (whatever their status),
   * without reading a replica; undefined when the catalog does not know the chunk (no
   * NotFoundError). Throws InvalidInputError for an invalid id.
   */
  findChunkRecords(chunkId: string): Promise<ChunkRecords | undefined> {
    return this.#reader.records(chunkId);
  }

  /**
   * Starts a worker pool in this process after removing leftovers of writes that crashed.
   * Closed with the rest by `close()`, or alone with `pool.close(timeoutMs)`. `backends`
   * (with routing.queue_per_backend): serve only these backends' replica queues, besides the
   * shared ones; ConfigError when one is not configured or queues are not per backend.
   */
  async startWorkers(options: { backends?: readonly string[] } = {}): Promise<WorkerPool> {
    const { config, logger, catalog, metadata, backends, staging, metrics } = this;
    const queues = this.#servedQueues(options.backends);
    let swept = await staging.sweepIncompleteWrites();
    for (const backend of backends.all()) {
      // A backend that cannot be swept now (down, refusing) must not keep the others from working.
      swept += await backend.sweepIncompleteWrites().catch((error: unknown) => {
        logger.warn({ err: error, backend: backend.name }, 'could not remove leftovers of crashed writes; will try at the next start');
        return 0;
      });
    }
    if (swept > 0) logger.info({ removed: swept }, 'removed temp files left by crashed writes');
    await this.sweepStagedOrphans();
    let lastSweep = Date.now();
    startHashThreads();
    // The worker holds more jobs than max_concurrent_writes (chunkvault.worker.concurrency); writes of an object each take turns for these,
    // and while some wait, the pool fetches no more (fetchGate).
    const writeSlots = new ByteBudget(config.storage.performance.max_concurrent_writes);
    const writer = new ReplicaWriter({ config, catalog, metadata, backends, staging, logger, metrics, checkpoints: this.checkpoints, writeSlots });
    const finalizer = new ChunkFinalizer({ catalog, staging, checkpoints: this.checkpoints, logger });
    const repairer = new ReplicaRepairer({ config, catalog, metadata, backends, repairs: this.#repairs, logger, metrics, writeSlots });
    const maintenanceRunner = new MaintenanceRunner({ maintenance: this.maintenance, logger });
    const pool = new WorkerPool({
      config,
      logger,
      queues,
      prefix: keyRoot(config.chunkvault.redis.prefix),
      connect: (name) => this.redisEndpoint.connect(name, { role: 'worker' }),
      metrics,
      fetchGate: writeSlots,
      handlers: {
        'replica.write': (job, data) => writer.handle(job, data),
        'chunk.finalize': (job, data) => finalizer.handle(job, data),
        'replica.repair': (job, data) => repairer.handle(job, data),
        'maintenance.run': (job, data) => maintenanceRunner.handle(job, data),
      },
      // A sealer that died leaves due intervals in the ledger; any live worker seals them soon.
      // Staged bytes no job needs any more become sweepable after stale_temp_after_ms.
      periodic: {
        everyMs: config.chunkvault.worker.housekeeping_interval_ms,
        run: async () => {
          await this.checkpoints.sealDue();
          if (Date.now() - lastSweep < config.chunkvault.worker.stale_temp_after_ms) return;
          lastSweep = Date.now();
          await this.sweepStagedOrphans();
        },
      },
    });
    this.#pools.push(pool);
    await pool.start();
    // Catch up on intervals that filled while no worker ran (or whose sealer crashed).
    await this.checkpoints.sealDue();
    await this.maintenance.ensureSchedule();
    return pool;
  }

  /** The queues a worker pool serves: every queue, or the shared ones and those of `only` backends. */
  #servedQueues(only: readonly string[] | undefined): Array<{ name: string; family: QueueName }> {
    const shared = Object.values(QUEUE_NAMES).map((name) => ({ name, family: name }));
    const perBackend = this.#replicaQueues.all().slice(1).map((queue) => ({ name: queue.name, family: QUEUE_NAMES.replicas }));
    if (only === undefined) return [...shared, ...perBackend];
    if (!this.config.chunkvault.routing.queue_per_backend) {
      throw new ConfigError('serving only some backends needs one queue per backend: set chunkvault.routing.queue_per_backend: true');
    }
    const known = this.backends.all().map((backend) => backend.name);
    const unknown = only.filter((name) => !known.includes(name));
    if (unknown.length) throw new ConfigError(`no configured backend named ${unknown.join(', ')} (configured: ${known.join(', ')})`);
    return [...shared, ...only.map((backend) => ({ name: replicaQueueName(backend), family: QUEUE_NAMES.replicas }))];
  }

  /** The queue replica jobs for `backend` go to (`replicas`, or `replicas-<backend>` with routing.queue_per_backend). */
  replicaQueueOf(backend: string): string {
    return this.#replicaQueues.of(backend).name;
  }

  /** Every queue of this deployment: the shared ones, then one per backend with routing.queue_per_backend. */
  queueNames(): string[] {
    return Object.keys(this.#queues);
  }

  /**
   * Frees staged bytes older than `olderThanMs` (stale_temp_after_ms) that no job needs any
   * more (staging/staged-orphans.ts says which). The workers run it at start and then every
   * stale_temp_after_ms. Returns the number of staged files freed.
   */
  async sweepStagedOrphans(olderThanMs = this.config.chunkvault.worker.stale_temp_after_ms): Promise<number> {
    return this.#stagedOrphans.sweep(olderThanMs);
  }

  /** The BullMQ queue named `name` (for adding jobs by hand, e.g. a scrub). */
  queue(name: string): Queue {
    const queue = this.#queues[name];
    if (!queue) throw new Error(`no queue named ${name}`);
    return queue;
  }

  /** Resolves once Redis answers PING (readiness probes); while the connection is down it waits, so bound it. */
  async pingRedis(): Promise<void> {
    await this.#redis.ping();
  }

  /** Storage statistics (the seed's field names and more), from the catalog and the queues. */
  getStatistics(): Promise<StorageStatistics> {
    return collectStatistics(this.catalog, this.checkpoints, this.maintenance, this.backends, this.#queues);
  }

  reindex(options: ReindexOptions = {}): Promise<ReindexReport> {
    return reindex({ backends: this.backends, catalog: this.catalog, metadata: this.metadata, checkpoints: this.checkpointIndex, logger: this.logger }, options);
  }

  /** Closes worker pools (bounded by shutdown_timeout_ms), the producer, Redis and backends. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pool of this.#pools.reverse()) await pool.close(this.config.chunkvault.worker.shutdown_timeout_ms);
    await this.checkpoints.settled();
    for (const queue of Object.values(this.#queues)) await queue.close();
    for (const connection of [this.#redis, this.#catalogRedis]) await connection.quit().catch(() => connection.disconnect());
    await this.metadata.close();
    await this.staging.close();
    await this.backends.close();
  }
}

/**
 * Connects to Redis (failing fast with a clear error when none answers), builds every part,
 * logs the settings this version does not act on, and checks that every backend is the storage
 * the deployment knows (StorageIdentityError, exit 2 in the CLI, when one is not).
 */
export async function openChunkvault(config: Config, options: OpenOptions = {}): Promise<Chunkvault> {
  const logger = options.logger ?? createLogger(config.chunkvault.log_level, 2, config.chunkvault.log_format);
  const endpoint = new RedisEndpoint(config.chunkvault.redis);
  await endpoint.assertReachable();
  const level = options.announceUnimplemented === false ? 'debug' : 'warn';
  for (const note of unimplementedSettings(config)) logger[level]({ setting: note }, 'configured but not implemented in this version');
  const redis = endpoint.connect('chunkvault');
  const catalogRedis = endpoint.connect('chunkvault-catalog', { autoPipelining: true });
  for (const connection of [redis, catalogRedis]) {
    connection.on('error', (error: Error) => logger.error({ err: error, redis: endpoint.describe() }, 'redis connection error'));
  }
  const backends = new BackendRegistry(config);
  const catalogPrefix = `${keyRoot(config.chunkvault.redis.prefix)}:catalog`;
  const catalog = new Catalog(catalogRedis, catalogPrefix, { minReplicas: endpoint.minReplicasAcked, timeoutMs: config.chunkvault.redis.replica_ack_timeout_ms });
  const staging = new StagingArea(stagingStoreOf(config));
  const metadata = new ReplicaMetadata({ staleAfterMs: config.chunkvault.worker.stale_temp_after_ms });
  const vault = new Chunkvault(config, logger, endpoint, redis, catalogRedis, catalog, metadata, backends, staging, new CheckpointIndex(redis, catalogPrefix));
  // Before any replica is written or read: refuse storage that is not the deployment's (another
  // disk, bucket or prefix), which would split the data between hosts (storage/storage-identity.ts).
  try {
    await verifyStorageIdentity(redis, new CatalogKeys(catalogPrefix), [...backends.all(), staging.store], logger);
  } catch (error) {
    await vault.close();
    throw error;
  }
  return vault;
}
