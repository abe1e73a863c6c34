/**
 * Every maintenance task, in the order a pass runs them (retention before compression, so
 * nothing is compressed that is about to be deleted; compaction right after retention, which
 * empties packs). The report's shape and everything that
 * lists tasks derive from this list; the names are domain/types.ts's MAINTENANCE_TASKS, each
 * of which must have its task here (the compiler names a missing one).
 */
import { RETENTION_TASK } from './retention.js';
import { COMPACTION_TASK } from './compaction.js';
import { COMPRESSION_TASK } from './compression.js';
import { SCRUB_TASK } from './scrub.js';
import type { MaintenanceTaskName } from '../domain/types.js';
import type { MaintenanceTask, ResultOf } from './maintenance-task.js';

const TASKS = [RETENTION_TASK, COMPACTION_TASK, COMPRESSION_TASK, SCRUB_TASK] as const;

type AnyTask = (typeof TASKS)[number];

/** Compiles only while every name of MAINTENANCE_TASKS has a task in TASKS (else: the missing names). */
type Unlisted = Exclude<MaintenanceTaskName, AnyTask['name']>;
const everyTaskListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyTaskListed;

/** The tasks, each read through the one interface. */
export const MAINTENANCE_TASK_LIST: ReadonlyArray<MaintenanceTask<MaintenanceTaskName>> = TASKS;

/** Each task's result, by task name: the task parts of a maintenance report. */
export type TaskResults = { [Task in AnyTask as Task['name']]: ResultOf<Task> };
