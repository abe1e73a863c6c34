/**
 * The worker pool: one BullMQ Worker per queue, dispatching each job by name to the one
 * handler registered for it in the job table. `close()` stops taking jobs, lets active ones
 * finish within a time bound, and then closes regardless (unfinished jobs are picked up
 * again as stalled: every job is idempotent).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UnrecoverableError, Worker, type Job, type Processor } from 'bullmq';
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { Config } from '../config/config.schema.js';
import type { Logger } from '../logging/logger.js';
import { JOBS, QUEUE_NAMES, type JobHandlers, type JobName, type QueueName } from '../jobs/job-table.js';
import { describeIssues } from '../jobs/job-data.js';
import { startTimer, type ProcessMetrics } from '../metrics/process-metrics.js';

/** How long a forced close of the workers may take before their connections are dropped. */
const FORCED_CLOSE_MS = 5_000;

export type { JobHandlers };

export interface WorkerPoolOptions {
  config: Config;
  logger: Logger;
  /** BullMQ prefix (the hash-tagged key root). */
  prefix: string;
  /** The queues to serve, each with the family of QUEUE_NAMES whose jobs it holds (the per-backend replica queues: `replicas`). */
  queues: ReadonlyArray<{ name: string; family: QueueName }>;
  /** Makes a fresh connection per Worker (BullMQ blocks on it). */
  connect: (name: string) => RedisClient;
  handlers: JobHandlers;
  /** Where each job's duration and outcome are recorded. */
  metrics: ProcessMetrics;
  /** Housekeeping run every `periodicMs` while the pool runs (e.g. sealing due checkpoints). */
  periodic?: { everyMs: number; run: () => Promise<unknown> };
}

export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #workers: Worker[] = [];
  readonly #connections: RedisClient[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(options: WorkerPoolOptions) {
    assertEveryJobHasAHandler(options.handlers);
    this.#options = options;
  }

  /** Starts one Worker per queue served. */
  async start(): Promise<void> {
    const { config, logger, prefix, connect, handlers, metrics, queues } = this.#options;
    const concurrency: Record<QueueName, number> = {
      [QUEUE_NAMES.replicas]: config.storage.performance.max_concurrent_writes,
      [QUEUE_NAMES.chunks]: Math.max(10, config.storage.performance.max_concurrent_writes),
      [QUEUE_NAMES.maintenance]: 1,
    };
    for (const { name: queue, family } of queues) {
      const connection = connect(`chunkvault-worker-${queue}`);
      this.#connections.push(connection);
      const processor: Processor = async (job) => {
        const entry = Object.hasOwn(JOBS, job.name) ? JOBS[job.name as JobName] : undefined;
        if (!entry || entry.queue !== family) throw new UnrecoverableError(`no handler for job "${job.name}" on queue ${queue}`);
        const handler = handlers[job.name as JobName] as (job: Job, data: unknown) => Promise<unknown>;
        const elapsed = startTimer();
        try {
          const parsed = entry.schema.safeParse(job.data);
          if (!parsed.success) throw new UnrecoverableError(`invalid ${entry.what} job data: ${describeIssues(parsed.error)}`);
          const result = await handler(job, parsed.data);
          metrics.job(queue, job.name, 'completed', elapsed());
          return result;
        } catch (error) {
          metrics.job(queue, job.name, 'failed', elapsed());
          throw error;
        }
      };
      const worker = new Worker(queue, processor, {
        connection,
        prefix,
        concurrency: concurrency[family],
        lockDuration: config.chunkvault.worker.lock_duration_ms,
        stalledInterval: config.chunkvault.worker.stalled_interval_ms,
        // A job stalls when its worker dies (SIGKILL, OOM, a host lost): a transient fault like
        // any other, so it may recur as often as a write may be retried. BullMQ's default (1)
        // failed a replica for good after two worker crashes, leaving its complete object on
        // the backend with a failed record (found by the worker-kill fault scenario, seed 101).
        // One more than a replica write allows (see stallsOf): the write gives up itself first,
        // recording why in the catalog; BullMQ fails a job past this without running it.
        maxStalledCount: config.chunkvault.retry.attempts + 1,
        // Defaults for jobs that do not set their own: a replica write does not carry them, to
        // keep each queued job small in Redis.
        removeOnComplete: { age: config.chunkvault.jobs.keep_completed_seconds },
        removeOnFail: { age: config.chunkvault.jobs.keep_failed_seconds },
        autorun: false,
      });
      worker.on('error', (error) => logger.error({ err: error, queue }, 'worker error'));
      this.#workers.push(worker);
      void worker.run().catch((error: unknown) => logger.error({ err: error, queue }, 'worker stopped'));
      await worker.waitUntilReady();
    }
    const periodic = this.#options.periodic;
    if (periodic) {
      this.#timer = setInterval(() => {
        periodic.run().catch((error: unknown) => logger.warn({ err: error }, 'periodic housekeeping failed; will try again'));
      }, periodic.everyMs);
      this.#timer.unref();
    }
    logger.info({ queues: queues.map((q) => q.name), concurrency }, 'worker pool started');
  }

  /**
   * Stops taking jobs and waits up to `timeoutMs` for active ones; past that, closes without
   * waiting (their locks lapse and another worker re-runs them). Resolves with whether all
   * active jobs finished in time.
   */
  async close(timeoutMs: number): Promise<boolean> {
    clearInterval(this.#timer);
    const graceful = Promise.all(this.#workers.map((w) => w.close())).then(() => true);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const finished = await Promise.race([graceful, timeout]);
    clearTimeout(timer);
    if (!finished) {
      this.#options.logger.warn({ timeoutMs }, 'active jobs did not finish in time; closing anyway (they will be re-run)');
      // A forced close can itself hang (seen after Redis lost its data under running jobs): bounded too.
      const forced = Promise.all(this.#workers.map((w) => w.close(true).catch(() => undefined))).then(() => true);
      if (!(await Promise.race([forced, sleep(FORCED_CLOSE_MS).then(() => false)]))) {
        this.#options.logger.warn({ timeoutMs: FORCED_CLOSE_MS }, 'workers did not close when forced; dropping their connections');
      }
      for (const connection of this.#connections) connection.disconnect();
      return false;
    }
    await Promise.all(this.#connections.map((c) => c.quit().catch(() => c.disconnect())));
    return finished;
  }
}

function assertEveryJobHasAHandler(handlers: JobHandlers): void {
  const missing = (Object.keys(JOBS) as JobName[]).filter((name) => typeof handlers[name] !== 'function');
  const unknown = Object.keys(handlers).filter((name) => !(name in JOBS));
  if (missing.length || unknown.length) {
    throw new Error(`job table and handlers disagree: missing handlers for [${missing.join(', ')}], handlers for unknown jobs [${unknown.join(', ')}]`);
  }
}
