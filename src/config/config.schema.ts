/**
 * The one schema of chunkvault's configuration file.
 *
 * The `storage:` block and `use_local_storage` are the seed design's file, accepted exactly
 * as written there; chunkvault's own settings live under `chunkvault:`. Every default lives
 * here and nowhere else. Keys stay snake_case because they are the user's YAML.
 */
import { z } from 'zod';
import { CronExpressionParser } from 'cron-parser';
import { CHECKSUM_ALGORITHMS, CODECS } from '../domain/types.js';
import { CLOUD_BACKEND_KINDS, STAGING_BACKENDS } from '../backends/cloud-backends.js';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
/** A filesystem path: no NUL byte, which no file name can hold (every fs call would throw). */
const pathSchema = z.string().min(1).regex(/^[^\0]*$/, 'must not contain a NUL byte');

export const REDIS_MODES = ['standalone', 'sentinel', 'cluster'] as const;
/** `host:port`, the host a name, an IPv4 address or a bracketed IPv6 address. */
const hostPort = z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/, 'must be host:port (an IPv6 host in brackets)');

export const PARTITION_STRATEGIES = ['date', 'cloud', 'node', 'chunk_size', 'flat'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** cleanup_schedule words and the cron patterns (UTC) they stand for; anything else must be a cron expression. */
export const SCHEDULE_ALIASES: Readonly<Record<string, string>> = { hourly: '0 * * * *', daily: '0 3 * * *', weekly: '0 3 * * 0' };

/** The cron pattern of a cleanup_schedule value (validated by the schema). */
export function cronPatternOf(schedule: string): string {
  return SCHEDULE_ALIASES[schedule] ?? schedule;
}

const scheduleSchema = z.string().min(1).superRefine((value, ctx) => {
  try {
    CronExpressionParser.parse(cronPatternOf(value), { tz: 'UTC' });
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `must be hourly, daily, weekly or a cron expression (${(error as Error).message})` });
  }
});

const localBackendSchema = z
  .object({
    enabled: z.boolean().default(true),
    base_path: pathSchema.default('./storage/data'),
    /** Upper bound on replica bytes chunkvault keeps on this backend; 0 disables the limit. */
    max_size_gb: z.number().nonnegative().default(100),
  })
  .strict();

/** Each cloud backend's block, optional, under its kind's name (backends/cloud-backends.ts). */
type CloudBlocks = { [Kind in (typeof CLOUD_BACKEND_KINDS)[number] as Kind['name']]: z.ZodOptional<Kind['configSchema']> };
const cloudBlocks = Object.fromEntries(CLOUD_BACKEND_KINDS.map((kind) => [kind.name, kind.configSchema.optional()])) as CloudBlocks;

const cloudSchema = z
  .object({
    enabled: z.boolean().default(false),
    ...cloudBlocks,
  })
  .strict();

const storageSchema = z
  .object({
    backends: z
      .object({
        local: localBackendSchema.prefault({}),
        cloud: cloudSchema.prefault({}),
      })
      .strict()
      .prefault({}),
    organization: z
      .object({
        partition_by: z.enum(PARTITION_STRATEGIES).default('date'),
        create_checkpoints: z.boolean().default(true),
        checkpoint_interval_chunks: positiveInt.default(1000),
      })
      .strict()
      .prefault({}),
    integrity: z
      .object({
        verify_on_write: z.boolean().default(true),
        verify_on_read: z.boolean().default(true),
        checksum_algorithm: z.enum(CHECKSUM_ALGORITHMS).default('md5'),
        store_metadata: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    cleanup: z
      .object({
        enable_auto_cleanup: z.boolean().default(true),
        retention_days: nonNegativeInt.default(30),
        cleanup_schedule: scheduleSchema.default('daily'),
        compress_old_data: z.boolean().default(true),
        compression_age_days: nonNegativeInt.default(7),
      })
      .strict()
      .prefault({}),
    performance: z
      .object({
        write_buffer_size_mb: z.number().positive().default(10),
        max_concurrent_writes: positiveInt.max(1000).default(20),
        enable_write_cache: z.boolean().default(true),
        cache_size_mb: z.number().nonnegative().default(100),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const chunkvaultSchema = z
  .object({
    redis: z
      .object({
        /**
         * How Redis is reached: one server at `url` (standalone), the master a set of Sentinels
         * names (sentinel), or a Redis Cluster (cluster). Credentials come from the environment
         * only (REDIS_URL's user and password; REDIS_USERNAME / REDIS_PASSWORD, and
         * REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD for the Sentinels).
         */
        mode: z.enum(REDIS_MODES).default('standalone'),
        url: z.string().url().default('redis://127.0.0.1:6379'),
        /** sentinel: the Sentinels; cluster: some of the cluster's nodes. `host:port` each. */
        nodes: z.array(hostPort).default([]),
        /** sentinel: the name the Sentinels monitor the master under. */
        sentinel_master: z.string().min(1).optional(),
        /** TLS to every Redis node (and Sentinel); a `rediss://` url turns it on too. */
        tls: z
          .object({
            enabled: z.boolean().default(false),
            /** PEM file of the CA that signed the servers' certificates (default: the system's CAs). */
            ca_file: pathSchema.optional(),
            /** Client certificate and key (PEM), for servers that ask for one. */
            cert_file: pathSchema.optional(),
            key_file: pathSchema.optional(),
            /** The name the servers' certificates are checked against, when it is not the host connected to. */
            server_name: z.string().min(1).optional(),
          })
          .strict()
          .prefault({}),
        /**
         * Replicas that must hold a replica's catalog record (Redis WAIT) before its job
         * completes; default 1 in sentinel and cluster modes, 0 standalone.
         */
        min_replicas_acked: nonNegativeInt.max(16).optional(),
        /** How long a job waits for those replicas before its attempt fails (and is retried). */
        replica_ack_timeout_ms: positiveInt.max(60_000).default(2000),
        /** Every Redis key chunkvault writes starts with `{prefix}`: one hash slot on a Redis Cluster. */
        prefix: z
          .string()
          .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." and "-" only (1-64 characters)')
          .default('chunkvault'),
      })
      .strict()
      .prefault({}),
    retry: z
      .object({
        /** Total tries of a replica write, the first included. */
        attempts: positiveInt.max(100).default(5),
        /** First retry delay; each next one doubles (BullMQ exponential backoff). */
        backoff_ms: nonNegativeInt.default(1000),
      })
      .strict()
      .prefault({}),
    routing: z
      .object({
        /**
         * One replica queue per backend (`replicas-<backend>`) for writes and repairs, so a worker
         * started with `--backends` serves only the backends near it (no cross-cloud egress for
         * the write). Off: every replica job is on the one `replicas` queue.
         */
        queue_per_backend: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    packing: z
      .object({
        /**
         * Replicas up to this many bytes on the local backend are appended to pack files
         * (src/backends/pack/: one open pack per worker process and partition, appends that
         * wait together share one fdatasync) instead of a file each; 0: every replica a file.
         */
        max_chunk_bytes: nonNegativeInt.max(16 * 1024 * 1024).default(256 * 1024),
        /**
         * The maintenance pass's compaction rewrites a pack whose live records (those the
         * catalog points at) take less than this share of its bytes, then removes it.
         */
        compact_below: z.number().min(0).max(1).default(0.5),
      })
      .strict()
      .prefault({}),
    staging: z
      .object({
        /**
         * Where producers stage chunk bytes once per chunk for the workers to read: `local`, the
         * directory `dir` (shared by every host that produces or writes), or the bucket of a
         * cloud backend's block, under `key_prefix` (hosts then share only Redis and buckets).
         */
        backend: z.enum(STAGING_BACKENDS).default('local'),
        dir: pathSchema.default('./storage/staging'),
        /** In a bucket: staged objects' prefix, inside the block's key_prefix; a folder of chunkvault's reserved namespace whose name starts with `_chunkvault/staging`. */
        key_prefix: z.string().default('_chunkvault/staging/'),
      })
      .strict()
      .prefault({}),
    worker: z
      .object({
        /**
         * Replica jobs a worker process holds at once. Of them, at most
         * storage.performance.max_concurrent_writes write an object of their own (a file, a
         * cloud object, a repair) at once; replicas appended to pack files share the pack's
         * commits instead, so many at once cost fewer commits each (docs/BENCHMARKS.md).
         * Never fewer than max_concurrent_writes.
         */
        concurrency: positiveInt.max(1000).default(100),
        /** How long a job's lock lives without renewal before BullMQ treats the job as stalled. */
        lock_duration_ms: positiveInt.default(30_000),
        stalled_interval_ms: positiveInt.default(30_000),
        /** On SIGTERM/SIGINT, how long active jobs may run on before the worker closes anyway. */
        shutdown_timeout_ms: positiveInt.default(30_000),
        /** Temp files of a dead writer on another host are swept once older than this. */
        stale_temp_after_ms: positiveInt.default(3_600_000),
        /**
         * How often each worker looks for checkpoint intervals a dead sealer left due, and
         * (every stale_temp_after_ms) for staged bytes no job needs.
         */
        housekeeping_interval_ms: positiveInt.default(15_000),
        /** How often each worker process checks that its BullMQ workers still take jobs (worker/worker-watchdog.ts). */
        watchdog_interval_ms: positiveInt.min(100).default(5_000),
        /** A worker that fetched no job while jobs waited and it had room, this long, is replaced. */
        stuck_after_ms: positiveInt.min(500).default(15_000),
      })
      .strict()
      .prefault({}),
    jobs: z
      .object({
        /** Finished jobs kept for inspection (Bull Board); the catalog is the lasting record. */
        keep_completed_seconds: nonNegativeInt.default(3600),
        keep_failed_seconds: nonNegativeInt.default(7 * 24 * 3600),
      })
      .strict()
      .prefault({}),
    maintenance: z
      .object({
        /** Objects one retention pass deletes at most; the rest wait for the next pass. */
        max_deletes_per_pass: positiveInt.default(10_000),
        /** Read rate of a scrub, so it never starves ingest of disk bandwidth. */
        scrub_bytes_per_second: positiveInt.default(50 * 1024 * 1024),
        /** Replicas one scrub pass re-reads at most (least recently verified first). */
        scrub_replicas_per_pass: positiveInt.default(10_000),
        /**
         * Every stored replica should be read back intact at least this often; /metrics shows it
         * (chunkvault_scrub_max_age_seconds) and the ChunkvaultScrubBehind alert compares the
         * oldest unverified replica with it. 0: no bound (the metric is left out).
         */
        scrub_max_age_days: z.number().nonnegative().default(30),
        /** Codec for compress_old_data (docs/BENCHMARKS.md compares them on training data). */
        compression_codec: z.enum(CODECS).default('zstd'),
        /**
         * The codec's level: gzip 1-9 (default 6), brotli 0-11 (5), zstd 1-19 (3). Omitted: the
         * codec's default; replicas already compressed keep the level they were written with.
         */
        compression_level: z.number().int().optional(),
        /** Replicas one compression pass re-encodes at most. */
        compress_replicas_per_pass: positiveInt.default(1000),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        /**
         * Where `chunkvault serve` listens (HTTP API, dashboard, /metrics). Loopback by default;
         * any other address requires CHUNKVAULT_HTTP_TOKEN or CHUNKVAULT_HTTP_USER/_PASSWORD.
         */
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65_535).default(8080),
        /** Dashboard without retry/clean/promote/remove, and no POST /v1/chunks. */
        read_only: z.boolean().default(false),
        /** Largest chunk body POST /v1/chunks accepts (413 beyond). */
        max_body_mb: z.number().positive().max(4096).default(256),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        /** A worker process serves its own /metrics (latencies, bytes, retries) on this port; 0: off. */
        worker_port: z.number().int().min(0).max(65_535).default(0),
        worker_host: z.string().min(1).default('127.0.0.1'),
      })
      .strict()
      .prefault({}),
    log_level: z.enum(LOG_LEVELS).default('info'),
    /** json: one JSON object per line (for collectors); pretty: readable lines for a person. */
    log_format: z.enum(['json', 'pretty']).default('json'),
  })
  .strict();

export const configSchema = z
  .object({
    storage: storageSchema.prefault({}),
    use_local_storage: z.boolean().default(true),
    chunkvault: chunkvaultSchema.prefault({}),
  })
  .strict();

/** The parsed, defaulted configuration; frozen by the loader. */
export type Config = z.output<typeof configSchema>;
export type PartitionStrategy = (typeof PARTITION_STRATEGIES)[number];
