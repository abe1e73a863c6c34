/**
 * The worker pool: one BullMQ Worker per queue, dispatching each job by name to the one
 * handler registered for it in the job table. A watchdog (worker-watchdog.ts) replaces a
 * Worker that stops taking jobs, as after a Redis failover. `close()` stops taking jobs, lets
 * active ones finish within a time bound, and then closes regardless (unfinished jobs are
 * picked up again as stalled: every job is idempotent).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UnrecoverableError, Worker, type Job, type Processor } from 'bullmq';
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { Config } from '../config/config.schema.js';
import type { Logger } from '../logging/logger.js';
import { JOBS, QUEUE_NAMES, type JobHandlers, type JobName, type QueueName } from '../jobs/job-table.js';
import { describeIssues } from '../jobs/job-data.js';
import { startTimer, type ProcessMetrics } from '../metrics/process-metrics.js';
import { WorkerWatchdog, type WatchedWorker } from './worker-watchdog.js';
import type { ByteBudget } from '../jobs/byte-budget.js';

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
  /**
   * The write slots replica jobs take turns for (storage.performance.max_concurrent_writes of
   * them). A replica worker starts holding that many jobs and takes one more each time a job
   * ends while no job waits for a slot, up to chunkvault.worker.concurrency; while jobs wait
   * for one, it fetches no more. So small replicas appended to packs (which take no slot) get
   * many jobs in flight, and jobs that would only wait for a slot stay on the queue, where a
   * worker on another host may take them, instead of being held here. (BullMQ fetches as many
   * jobs as the concurrency allows before it starts any, so the limit must be low to begin with.)
   */
  fetchGate?: Pick<ByteBudget, 'limitBytes' | 'waiting' | 'watch'>;
}

/** One served queue's Worker, its connection, and what the watchdog reads of it. */
interface Slot extends WatchedWorker {
  readonly family: QueueName;
  readonly worker: Worker;
  readonly connection: RedisClient;
  /** Stops following the fetch gate (a retired worker). */
  readonly unwatch: () => void;
}

export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #slots = new Map<string, Slot>();
  /** Workers replaced by the watchdog, closing in the background. */
  readonly #retiring = new Set<Promise<unknown>>();
  #watchdog: WorkerWatchdog | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(options: WorkerPoolOptions) {
    assertEveryJobHasAHandler(options.handlers);
    this.#options = options;
  }

  /** Starts one Worker per queue served, and the watchdog that replaces any that stops taking jobs. */
  async start(): Promise<void> {
    const { config, logger, prefix, connect, queues } = this.#options;
    for (const { name, family } of queues) {
      const slot = this.#startWorker(name, family);
      this.#slots.set(name, slot);
      await slot.worker.waitUntilReady();
    }
    const periodic = this.#options.periodic;
    if (periodic) {
      this.#timer = setInterval(() => {
        periodic.run().catch((error: unknown) => logger.warn({ err: error }, 'periodic housekeeping failed; will try again'));
      }, periodic.everyMs);
      this.#timer.unref();
    }
    const { watchdog_interval_ms: intervalMs, stuck_after_ms: stuckAfterMs } = config.chunkvault.worker;
    this.#watchdog = new WorkerWatchdog({
      prefix, connect, intervalMs, stuckAfterMs, logger,
      workers: () => [...this.#slots.values()],
      restart: (queue, reason) => this.#restart(queue, reason),
    });
    this.#watchdog.start();
    logger.info({ queues: queues.map((q) => q.name), concurrency: Object.fromEntries([...this.#slots.values()].map((s) => [s.queue, s.concurrency])) }, 'worker pool started');
  }

  #startWorker(queue: string, family: QueueName): Slot {
    const { config, logger, prefix, connect, handlers, metrics } = this.#options;
    const concurrency: Record<QueueName, number> = {
      [QUEUE_NAMES.replicas]: Math.max(config.chunkvault.worker.concurrency, config.storage.performance.max_concurrent_writes),
      [QUEUE_NAMES.chunks]: Math.max(10, config.storage.performance.max_concurrent_writes),
      [QUEUE_NAMES.maintenance]: 1,
    };
    const connection = connect(`chunkvault-worker-${queue}`);
    let running = 0;
    let lastFetchAt = Date.now();
    let loopStopped = false;
    const full = concurrency[family];
    const gate = family === QUEUE_NAMES.replicas ? this.#options.fetchGate : undefined;
    const least = Math.min(full, gate?.limitBytes ?? full);
    /** See WorkerPoolOptions.fetchGate; `grew`: a job ended. */
    const fit = (grew: boolean): void => {
      if (!gate) return;
      worker.concurrency = gate.waiting > 0 ? Math.max(1, running) : Math.min(full, Math.max(worker.concurrency, least) + (grew ? 1 : 0));
    };
    const processor: Processor = async (job) => {
      running += 1;
      lastFetchAt = Date.now();
      const entry = Object.hasOwn(JOBS, job.name) ? JOBS[job.name as JobName] : undefined;
      const elapsed = startTimer();
      try {
        if (!entry || entry.queue !== family) throw new UnrecoverableError(`no handler for job "${job.name}" on queue ${queue}`);
        const handler = handlers[job.name as JobName] as (job: Job, data: unknown) => Promise<unknown>;
        const parsed = entry.schema.safeParse(job.data);
        if (!parsed.success) throw new UnrecoverableError(`invalid ${entry.what} job data: ${describeIssues(parsed.error)}`);
        const result = await handler(job, parsed.data);
        metrics.job(queue, job.name, 'completed', elapsed());
        return result;
      } catch (error) {
        metrics.job(queue, job.name, 'failed', elapsed());
        throw error;
      } finally {
        running -= 1;
        fit(true);
      }
    };
    const worker = new Worker(queue, processor, {
      connection,
      prefix,
      concurrency: least,
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
    const unwatch = gate ? gate.watch(() => fit(false)) : () => undefined;
    worker.on('error', (error) => logger.error({ err: error, queue }, 'worker error'));
    void worker.run().catch((error: unknown) => logger.error({ err: error, queue }, 'worker stopped'))
      .finally(() => {
        loopStopped = true;
      });
    return {
      queue, family, worker, connection, unwatch,
      get concurrency() {
        return worker.concurrency;
      },
      running: () => running,
      lastFetchAt: () => lastFetchAt,
      connectionEnded: () => connection.status === 'end',
      fetchLoopStopped: () => loopStopped && !this.#closing,
    };
  }

  /**
   * Replaces the worker of `queue` with a new one on a new connection, logging why. The old one
   * stops fetching and lets its active jobs finish within shutdown_timeout_ms, in the background;
   * a job it cannot finish (its connection is gone) is re-run once its lock lapses.
   */
  async #restart(queue: string, reason: string): Promise<void> {
    const old = this.#slots.get(queue);
    if (!old || this.#closing) return;
    this.#options.logger.warn({ queue, reason, active: old.running() }, 'worker stopped taking jobs; restarting it on a new connection');
    this.#options.metrics.workerRestarted(queue);
    const fresh = this.#startWorker(queue, old.family);
    this.#slots.set(queue, fresh);
    old.unwatch();
    const retiring = retire([old], this.#options.config.chunkvault.worker.shutdown_timeout_ms, this.#options.logger);
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
    await fresh.worker.waitUntilReady().catch((error: unknown) => this.#options.logger.warn({ err: error, queue }, 'restarted worker not ready yet'));
  }

  /**
   * Stops taking jobs and waits up to `timeoutMs` for active ones; past that, closes without
   * waiting (their locks lapse and another worker re-runs them). Resolves with whether all
   * active jobs finished in time.
   */
  async close(timeoutMs: number): Promise<boolean> {
    this.#closing = true;
    clearInterval(this.#timer);
    await this.#watchdog?.stop();
    for (const slot of this.#slots.values()) slot.unwatch();
    const finished = await retire([...this.#slots.values()], timeoutMs, this.#options.logger);
    await Promise.all(this.#retiring);
    return finished;
  }
}

/**
 * Closes `slots`' workers, letting active jobs finish for up to `timeoutMs`, then forcing them
 * (bounded too), then their connections. Resolves with whether every active job finished.
 */
async function retire(slots: readonly Slot[], timeoutMs: number, logger: Logger): Promise<boolean> {
  const graceful = Promise.all(slots.map((slot) => slot.worker.close())).then(() => true);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const finished = await Promise.race([graceful, timeout]);
  clearTimeout(timer);
  if (!finished) {
    logger.warn({ timeoutMs }, 'active jobs did not finish in time; closing anyway (they will be re-run)');
    // A forced close can itself hang (seen after Redis lost its data under running jobs): bounded too.
    const forced = Promise.all(slots.map((slot) => slot.worker.close(true).catch(() => undefined))).then(() => true);
    if (!(await Promise.race([forced, sleep(FORCED_CLOSE_MS).then(() => false)]))) {
      logger.warn({ timeoutMs: FORCED_CLOSE_MS }, 'workers did not close when forced; dropping their connections');
    }
    for (const slot of slots) slot.connection.disconnect();
    return false;
  }
  await Promise.all(slots.map(({ connection }) => connection.quit().catch(() => connection.disconnect())));
  return true;
}

function assertEveryJobHasAHandler(handlers: JobHandlers): void {
  const missing = (Object.keys(JOBS) as JobName[]).filter((name) => typeof handlers[name] !== 'function');
  const unknown = Object.keys(handlers).filter((name) => !(name in JOBS));
  if (missing.length || unknown.length) {
    throw new Error(`job table and handlers disagree: missing handlers for [${missing.join(', ')}], handlers for unknown jobs [${unknown.join(', ')}]`);
  }
}
