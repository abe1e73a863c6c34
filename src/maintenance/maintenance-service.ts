/**
 * Maintenance: passes of the tasks in maintenance-tasks.ts (retention, compression, scrub),
 * run by a BullMQ job scheduler on `cleanup_schedule` (UTC) or on demand. The scheduler is
 * upserted, so restarting or adding workers never duplicates it; a Redis lock lets one pass
 * run at a time across processes. Each pass's report is kept in Redis for `chunkvault stats`.
 */
import type { Queue } from 'bullmq';
import { cronPatternOf } from '../config/config.schema.js';
import { RedisLock } from '../redis/redis-lock.js';
import type { CompactionResult } from '../catalog/metadata-journal.js';
import type { MaintenanceTask, PassContext, TaskDeps } from './maintenance-task.js';
import { MAINTENANCE_TASKS, type MaintenanceTaskName } from '../domain/types.js';
import { MAINTENANCE_TASK_LIST, type TaskResults } from './maintenance-tasks.js';

export const MAINTENANCE_SCHEDULER_ID = 'chunkvault-maintenance';

export { MAINTENANCE_TASKS, type MaintenanceTaskName };

/** Items of a task's lists kept in a stored report (the job result and the CLI get them all). */
const REPORTED_ITEMS = 100;

/** A pass's report: when it ran, and each task's result under the task's name. */
export interface MaintenanceReport extends Partial<TaskResults> {
  startedAt: string;
  finishedAt: string;
  /** Set when the pass did not run (another pass held the lock). */
  skipped?: string;
  /** Metadata journals compacted after the tasks that change stored data (local backends). */
  metadata?: CompactionResult;
  error?: string;
}

/** The tasks a report holds results of, in the list's order, each with its result. */
export function taskResultsOf(report: MaintenanceReport | null | undefined): Array<{ task: MaintenanceTask<MaintenanceTaskName>; result: unknown }> {
  if (!report) return [];
  return MAINTENANCE_TASK_LIST.flatMap((task) => {
    const result = report[task.name];
    return result === undefined ? [] : [{ task, result }];
  });
}

export interface PassOptions {
  /** Default: every task whose runsByDefault says so (compression only with compress_old_data). */
  tasks?: readonly MaintenanceTaskName[];
  dryRun?: boolean;
  /** The pass's notion of now (ms); injectable so tests can age data without sleeping. */
  now?: () => number;
  /** Progress of the task running: items looked at of those it picked. */
  onProgress?: PassContext['onProgress'];
}

export interface MaintenanceDeps extends TaskDeps {
  /** The maintenance queue the job scheduler lives on. */
  queue: Queue;
}

/** A task with its runner, made once per service. */
interface ReadyTask {
  task: MaintenanceTask<MaintenanceTaskName>;
  run: (pass: PassContext) => Promise<unknown>;
}

export class MaintenanceService {
  readonly #deps: MaintenanceDeps;
  readonly #lock: RedisLock;
  readonly #tasks: ReadyTask[];

  constructor(deps: MaintenanceDeps) {
    this.#deps = deps;
    this.#tasks = MAINTENANCE_TASK_LIST.map((task) => ({ task, run: task.create(deps) }));
    this.#lock = new RedisLock(deps.redis, `${deps.keyPrefix}:maintenance:lock`, 30_000);
  }

  /** Creates or updates the job scheduler from the config, or removes it when enable_auto_cleanup is off. */
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
   * One maintenance pass of `options.tasks` (default: those that run by default): the tasks
   * that change stored data, then the metadata compaction they call for, then the others.
   * Returns a skipped report at once when another pass holds the lock. Errors stop the pass
   * and are rethrown after the report is saved.
   */
  async runPass(options: PassOptions = {}): Promise<MaintenanceReport> {
    const { config, logger } = this.#deps;
    const pass: PassContext = { now: options.now ?? Date.now, dryRun: options.dryRun ?? false, onProgress: options.onProgress };
    const asked = options.tasks;
    const chosen = this.#tasks.filter(({ task }) => (asked ? asked.includes(task.name) : task.runsByDefault(config)));
    const report: MaintenanceReport = { startedAt: new Date().toISOString(), finishedAt: '' };
    const results = new Map<MaintenanceTask<MaintenanceTaskName>, unknown>();
    const token = await this.#lock.acquire();
    if (!token) {
      report.skipped = 'another maintenance pass is running';
      report.finishedAt = new Date().toISOString();
      return report;
    }
    await this.#lock.holding(token, async () => {
      const runAll = async (ready: ReadyTask[]): Promise<void> => {
        for (const { task, run } of ready) {
          if (pass.dryRun && task.dryRun === 'skip') continue;
          const result = await run(pass);
          results.set(task, result);
          Object.assign(report, { [task.name]: result });
        }
      };
      try {
        const changing = chosen.filter(({ task }) => task.changesStoredData);
        await runAll(changing);
        if (changing.length > 0 && !pass.dryRun) report.metadata = await this.#compactMetadata();
        await runAll(chosen.filter(({ task }) => !task.changesStoredData));
      } catch (error) {
        report.error = (error as Error).message;
        throw error;
      } finally {
        report.finishedAt = new Date().toISOString();
        if (!pass.dryRun) await this.#save(report, results);
      }
    }, (error) => logger.warn({ err: error }, 'could not renew the maintenance lock'));
    const briefs = Object.fromEntries([...results].map(([task, result]) => [task.name, task.brief(result)]));
    logger.info({ ...briefs, metadata: report.metadata }, 'maintenance pass done');
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

  async #save(report: MaintenanceReport, results: ReadonlyMap<MaintenanceTask<MaintenanceTaskName>, unknown>): Promise<void> {
    const stored = { ...report, ...Object.fromEntries([...results].map(([task, result]) => [task.name, task.forReport(result, REPORTED_ITEMS)])) };
    await this.#deps.redis.set(`${this.#deps.keyPrefix}:maintenance:last`, JSON.stringify(stored));
  }
}
