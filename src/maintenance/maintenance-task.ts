/**
 * The one interface every maintenance task (retention, compression, scrub, ...) implements:
 * how it runs in a pass, and how its result is reported, measured, shown and printed. The
 * maintenance service, the job schema, the CLI, the dashboard, `chunkvault stats` and the
 * metrics all read tasks through it, from the list in maintenance-tasks.ts; none of them
 * names a task. Adding a task is one new file implementing this and one line in that list.
 */
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Logger } from '../logging/logger.js';
import type { RepairScheduler } from '../reads/repair-scheduler.js';
import type { MaintenanceTaskName } from '../domain/types.js';

/** What a task may use; handed to `create` once per maintenance service. */
export interface TaskDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  backends: BackendRegistry;
  repairs: RepairScheduler;
  logger: Logger;
  /** The connection for what the catalog has no method for: walking every record (catalog/replica-scan.ts). */
  redis: RedisClient;
  /** The catalog's key prefix (CatalogKeys), e.g. "{chunkvault}:catalog". */
  keyPrefix: string;
}

/** One pass as a task sees it. */
export interface PassContext {
  /** The pass's notion of now (ms); injectable so tests can age data without sleeping. */
  now: () => number;
  /** Change nothing; report what a real pass would do (tasks with `dryRun: 'plan'` only run then). */
  dryRun: boolean;
  /** Items done of those the task picked, as it goes. */
  onProgress?: (done: number, total: number) => void;
}

/** A figure for the metrics: the `result` label and its value. */
export type PassFigure = readonly [result: string, value: number];

/** A piece of a task's one-line summary; `alarm` marks what an operator must look at. */
export interface SummaryPart {
  text: string;
  alarm?: boolean;
}

/** How the CLI offers a task as a command of its own. */
export interface TaskCommand<Result> {
  /** The command's name (`cleanup` is the seed's word for a retention pass). */
  readonly command: string;
  readonly description: string;
  /**
   * 'inline': the pass runs in the CLI's process. 'queued': the command puts a pass on the
   * maintenance queue for a worker, and runs it in the CLI's process only with `--now`.
   */
  readonly runs: 'inline' | 'queued';
  /** Help text of `--dry-run` (offered when the task plans in a dry run). */
  readonly dryRunHelp?: string;
  /** Help text of `--now` (offered when the command queues). */
  readonly nowHelp?: string;
  /** Label of the progress bar shown while it runs in the CLI's process, if any. */
  readonly progressLabel?: string;
  /** What the command prints without `--json`. */
  print(result: Result): string;
  /** The shape `--json` prints after a pass that ran: the result as is, spelled out for --help. */
  readonly jsonShape: string;
  /** The command's exit code after a pass that ran (0 when absent). */
  exitCode?(result: Result): number;
  /** When exitCode answers 1, for --help (e.g. "the scrub found a bad replica"). */
  readonly exitCodeHelp?: string;
}

export interface MaintenanceTask<Name extends MaintenanceTaskName = MaintenanceTaskName, Result = unknown> {
  /** The task's name in job data (`{"tasks": [...]}`), reports and metric labels. */
  readonly name: Name;
  /** Its heading on the dashboard and in `chunkvault stats`. */
  readonly title: string;
  /** What a dry run does with it: 'plan' runs it changing nothing, 'skip' leaves it out. */
  readonly dryRun: 'plan' | 'skip';
  /**
   * It deletes or rewrites stored objects: such tasks run first in a pass, and the metadata
   * journals are compacted after them (their records made older entries obsolete).
   */
  readonly changesStoredData: boolean;
  /** Whether a pass that names no tasks (the scheduled one) runs it. */
  runsByDefault(config: Config): boolean;
  /** The task's runner (no I/O until called). It throws to stop the pass: fail closed. */
  create(deps: TaskDeps): (pass: PassContext) => Promise<Result>;
  /** The result as kept in the stored report, its lists cut to `maxItems` (the job result and the CLI keep them whole). */
  forReport(result: Result, maxItems: number): Result;
  /** The result small enough for a log line. */
  brief(result: Result): object;
  /** Replica counts and bytes for chunkvault_maintenance_last_pass_{replicas,bytes}. */
  figures(result: Result): { replicas: PassFigure[]; bytes: PassFigure[] };
  /** One line for the dashboard and `chunkvault stats`; `bytes` formats a byte count. */
  summary(result: Result, bytes: (count: number) => string): SummaryPart[];
  readonly cli: TaskCommand<Result>;
}

/** A task's result type. */
export type ResultOf<Task> = Task extends MaintenanceTask<MaintenanceTaskName, infer Result> ? Result : never;

/** Text for a list of aged replicas a task acted on, one line each. */
export function itemLines(verb: string, items: ReadonlyArray<{ backend: string; path: string; chunkId: string; replicaId: string; sizeBytes: number; storedAt: string }>): string {
  return items.map((item) => `${verb} ${item.backend}:${item.path} (chunk ${item.chunkId}, replica ${item.replicaId}, ${item.sizeBytes} bytes, stored ${item.storedAt})\n`).join('');
}
