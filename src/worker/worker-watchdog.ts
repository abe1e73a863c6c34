/**
 * Finds BullMQ workers that stopped taking jobs for good, so the pool can replace them.
 *
 * BullMQ's users report workers that stop processing, silently, after a Sentinel or Cluster
 * failover (taskforcesh/bullmq issues 3088, 4378, 648): a blocking fetch left waiting on a
 * master that hangs or was demoted, a connection ioredis gave up on, a fetch loop that ended.
 * Every `intervalMs` the watchdog asks each worker:
 * - did its Redis connection end (ioredis will not reconnect it)?
 * - did its fetch loop stop while the pool runs?
 * - have jobs waited on its queue, with a slot of its free, through `stuckAfterMs` in which it
 *   fetched none?
 * and names the first reason that holds. Queue lengths are read on a connection of the
 * watchdog's own, made again when it does not answer in time (it may hang on the same master).
 */
import { Queue } from 'bullmq';
import type { Logger } from '../logging/logger.js';
import type { RedisClient } from '../redis/redis-endpoint.js';

/** What the watchdog reads of one worker of the pool. */
export interface WatchedWorker {
  readonly queue: string;
  /** Jobs it may hold now (lowered while its writes wait for a slot: see WorkerPoolOptions.fetchGate). */
  readonly concurrency: number;
  /** Jobs its processor is running now. */
  running(): number;
  /** When it last started a job, or was started itself (ms). */
  lastFetchAt(): number;
  connectionEnded(): boolean;
  fetchLoopStopped(): boolean;
}

export interface WorkerWatchdogOptions {
  prefix: string;
  /** Makes the watchdog's own connection (again, when it stopped answering). */
  connect: (name: string) => RedisClient;
  intervalMs: number;
  stuckAfterMs: number;
  logger: Logger;
  workers: () => readonly WatchedWorker[];
  /** Replaces the worker of `queue`, saying why. */
  restart: (queue: string, reason: string) => Promise<void>;
}

export class WorkerWatchdog {
  readonly #options: WorkerWatchdogOptions;
  /** Since when jobs have waited on each queue without a break (ms). */
  readonly #waitingSince = new Map<string, number>();
  #connection: RedisClient | undefined;
  #queues = new Map<string, Queue>();
  #timer: NodeJS.Timeout | undefined;
  #checking = false;

  constructor(options: WorkerWatchdogOptions) {
    this.#options = options;
  }

  start(): void {
    this.#timer = setInterval(() => void this.#tick(), this.#options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#dropConnection();
  }

  async #tick(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      for (const worker of this.#options.workers()) {
        const reason = await this.#reasonToRestart(worker);
        if (reason === undefined) continue;
        this.#waitingSince.delete(worker.queue);
        await this.#options.restart(worker.queue, reason);
      }
    } catch (error) {
      this.#options.logger.warn({ err: error }, 'worker watchdog check failed; will check again');
    } finally {
      this.#checking = false;
    }
  }

  /** Why `worker` must be replaced, or undefined when it is working (or its state cannot be told now). */
  async #reasonToRestart(worker: WatchedWorker): Promise<string | undefined> {
    if (worker.connectionEnded()) return 'its Redis connection ended and will not reconnect';
    if (worker.fetchLoopStopped()) return 'its fetch loop stopped';
    const waiting = await this.#waiting(worker.queue);
    const now = Date.now();
    if (waiting === undefined) return undefined;
    if (waiting === 0 || worker.running() >= worker.concurrency) {
      this.#waitingSince.delete(worker.queue);
      return undefined;
    }
    const since = this.#waitingSince.get(worker.queue) ?? now;
    this.#waitingSince.set(worker.queue, since);
    const idleSince = Math.max(since, worker.lastFetchAt());
    if (now - idleSince < this.#options.stuckAfterMs) return undefined;
    return `${waiting} job(s) waited on its queue for ${((now - idleSince) / 1000).toFixed(1)} s while it fetched none with ${worker.concurrency - worker.running()} slot(s) free`;
  }

  /** Jobs ready to run on `queue` (0 while it is paused), or undefined when Redis did not answer in time. */
  async #waiting(name: string): Promise<number | undefined> {
    const queue = this.#queue(name);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(1000, this.#options.intervalMs));
    });
    const count = (async () => {
      if (await queue.isPaused()) return 0;
      const counts = await queue.getJobCounts('wait', 'prioritized');
      return (counts.wait ?? 0) + (counts.prioritized ?? 0);
    })();
    count.catch(() => undefined);
    try {
      const waiting = await Promise.race([count, timeout]);
      // No answer: this connection may hang on a master that is gone; the next check makes another.
      if (waiting === undefined) await this.#dropConnection();
      return waiting;
    } catch (error) {
      this.#options.logger.debug({ err: error, queue: name }, 'worker watchdog could not count waiting jobs');
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  #queue(name: string): Queue {
    this.#connection ??= this.#connectQuietly();
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.#connection, prefix: this.#options.prefix });
      queue.on('error', () => undefined);
      this.#queues.set(name, queue);
    }
    return queue;
  }

  #connectQuietly(): RedisClient {
    const connection = this.#options.connect('chunkvault-worker-watchdog');
    connection.on('error', (error: Error) => this.#options.logger.debug({ err: error }, 'worker watchdog connection error'));
    return connection;
  }

  async #dropConnection(): Promise<void> {
    const queues = [...this.#queues.values()];
    const connection = this.#connection;
    this.#queues = new Map();
    this.#connection = undefined;
    connection?.disconnect();
    await Promise.all(queues.map((queue) => queue.close().catch(() => undefined)));
  }
}
