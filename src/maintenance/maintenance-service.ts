/**
 * Maintenance: retention, compression and scrub passes, run by a BullMQ job scheduler on
 * `cleanup_schedule` (UTC) or on demand. The scheduler is upserted, so restarting or adding
 * workers never duplicates it; a Redis lock lets one pass run at a time across processes.
 * Each pass's report is kept in Redis for `chunkvault stats`.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { cronPatternOf, type Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Logger } from '../logging/logger.js';
import type { RepairScheduler } from '../reads/repair-scheduler.js';
import { RedisLock } from '../redis/redis-lock.js';
import { Retention, type RetentionResult } from './retention.js';
import { Scrub, type ScrubResult } from './scrub.js';
import { Compression, type CompressionResult } from './compression.js';
import type { CompactionResult } from '../catalog/metadata-journal.js';

export const MAINTENANCE_SCHEDULER_ID = 'chunkvault-maintenance';
import { MAINTENANCE_TASKS, type MaintenanceTask } from '../domain/types.js';

export { MAINTENANCE_TASKS, type MaintenanceTask };

/** Items of a retention pass kept in a stored report (the job result and the CLI get them all). */
const REPORTED_ITEMS = 100;

export interface MaintenanceReport {
  startedAt: string;
  finishedAt: string;
  /** Set when the pass did not run (another pass held the lock). */
  skipped?: string;
  retention?: RetentionResult;
  compression?: CompressionResult;
  scrub?: ScrubResult;
  /** Metadata journals compacted after retention or compression (local backends). */
  metadata?: CompactionResult;
  error?: string;
}

export interface PassOptions {
  /** Default: retention, compression (when compress_old_data is on), scrub. */
  tasks?: readonly MaintenanceTask[];
  dryRun?: boolean;
  /** The pass's notion of now (ms); injectable so tests can age data without sleeping. */
  now?: () => number;
  /** Scrub progress: replicas looked at of those the pass picked. */
  onScrubProgress?: (done: number, total: number) => void;
}

export interface MaintenanceDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  backends: BackendRegistry;
  repairs: RepairScheduler;
  redis: Redis;
  /** The maintenance queue the job scheduler lives on. */
  queue: Queue;
  keyPrefix: string;
  logger: Logger;
}

export class MaintenanceService {
  readonly retention: Retention;
  readonly scrub: Scrub;
  readonly compression: Compression;
  readonly #deps: MaintenanceDeps;
  readonly #lock: RedisLock;

  constructor(deps: MaintenanceDeps) {
    this.#deps = deps;
    this.retention = new Retention(deps);
    this.scrub = new Scrub(deps);
    this.compression = new Compression(deps);
    this.#lock = new RedisLock(deps.redis, `${deps.keyPrefix}:maintenance:lock`, 30_000);
  }

  /** Creates or updates the job scheduler from the config, or removes it when auto cleanup is off. */
  async ensureSchedule(): Promise<void> {
    const { config, queue, logger } = this.#deps;
    if (!config.storage.cleanup.enable_auto_cleanup) {
      await queue.removeJobScheduler(MAINTENANCE_SCHEDULER_ID);
      logger.info('maintenance schedule removed (enable_auto_cleanup: false)');
      return;
    }
    const pattern = cronPatternOf(config.storage.cleanup.cleanup_schedule);
    await queue.upsertJobScheduler(MAINTENANCE_SCHEDULER_ID, { pattern, tz: 'UTC' }, {
      name: 'maintenance.run',
      data: {},
      opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
    });
    logger.info({ pattern }, 'maintenance scheduled');
  }

  /**
   * One maintenance pass (retention then scrub, or the tasks asked for). Returns a skipped
   * report at once when another pass holds the lock. Errors stop the pass and are rethrown
   * after the report is saved.
   */
  async runPass(options: PassOptions = {}): Promise<MaintenanceReport> {
    const now = options.now ?? Date.now;
    const tasks = options.tasks ?? MAINTENANCE_TASKS.filter((t) => t !== 'compression' || this.#deps.config.storage.cleanup.compress_old_data);
    const report: MaintenanceReport = { startedAt: new Date().toISOString(), finishedAt: '' };
    const token = await this.#lock.acquire();
    if (!token) {
      report.skipped = 'another maintenance pass is running';
      report.finishedAt = new Date().toISOString();
      return report;
    }
    await this.#lock.holding(token, async () => {
      try {
        // Retention first: nothing is compressed that is about to be deleted.
        if (tasks.includes('retention')) report.retention = await this.retention.run(now(), options.dryRun ?? false);
        if (tasks.includes('compression')) report.compression = await this.compression.run(now(), options.dryRun ?? false);
        if ((report.retention || report.compression) && !options.dryRun) report.metadata = await this.#compactMetadata();
        if (tasks.includes('scrub') && !options.dryRun) report.scrub = await this.scrub.run(now, options.onScrubProgress);
      } catch (error) {
        report.error = (error as Error).message;
        throw error;
      } finally {
        report.finishedAt = new Date().toISOString();
        if (!options.dryRun) await this.#save(report);
      }
    }, (error) => this.#deps.logger.warn({ err: error }, 'could not renew the maintenance lock'));
    this.#deps.logger.info({ retention: summary(report.retention), compression: report.compression && { ...report.compression, items: report.compression.items.length }, scrub: report.scrub && { ...report.scrub, problems: report.scrub.problems.length }, metadata: report.metadata }, 'maintenance pass done');
    return report;
  }

  /** Merges closed metadata journals, dropping what retention and compression made obsolete. */
  async #compactMetadata(): Promise<CompactionResult> {
    const total: CompactionResult = { filesMerged: 0, entriesRead: 0, entriesKept: 0 };
    for (const backend of this.#deps.backends.all()) {
      const result = await this.#deps.metadata.of(backend).compact();
      if (!result) continue;
      total.filesMerged += result.filesMerged;
      total.entriesRead += result.entriesRead;
      total.entriesKept += result.entriesKept;
    }
    return total;
  }

  /** The last pass's report, or undefined before the first. */
  async lastReport(): Promise<MaintenanceReport | undefined> {
    const raw = await this.#deps.redis.get(`${this.#deps.keyPrefix}:maintenance:last`);
    return raw ? (JSON.parse(raw) as MaintenanceReport) : undefined;
  }

  async #save(report: MaintenanceReport): Promise<void> {
    const stored: MaintenanceReport = { ...report };
    if (report.retention) stored.retention = { ...report.retention, deleted: report.retention.deleted.slice(0, REPORTED_ITEMS) };
    if (report.compression) stored.compression = { ...report.compression, items: report.compression.items.slice(0, REPORTED_ITEMS) };
    await this.#deps.redis.set(`${this.#deps.keyPrefix}:maintenance:last`, JSON.stringify(stored));
  }
}

function summary(retention: RetentionResult | undefined): object | undefined {
  if (!retention) return undefined;
  const { deleted: _deleted, ...rest } = retention;
  return rest;
}
