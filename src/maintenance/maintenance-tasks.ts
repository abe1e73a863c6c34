/**
 * Every maintenance task, in the order a pass runs them (retention before compression, so
 * nothing is compressed that is about to be deleted). The task names, the report's shape and
 * everything that lists tasks derive from this list.
 */
import { RETENTION_TASK } from './retention.js';
import { COMPRESSION_TASK } from './compression.js';
import { SCRUB_TASK } from './scrub.js';
import type { MaintenanceTask, ResultOf } from './maintenance-task.js';

const TASKS = [RETENTION_TASK, COMPRESSION_TASK, SCRUB_TASK] as const;

type AnyTask = (typeof TASKS)[number];
export type MaintenanceTaskName = AnyTask['name'];

/** The tasks, each read through the one interface. */
export const MAINTENANCE_TASK_LIST: ReadonlyArray<MaintenanceTask<MaintenanceTaskName>> = TASKS;

/** The task names, for schemas (z.enum needs a non-empty tuple, which `map` does not type). */
export const MAINTENANCE_TASKS = MAINTENANCE_TASK_LIST.map((task) => task.name) as [MaintenanceTaskName, ...MaintenanceTaskName[]];

/** Each task's result, by task name: the task parts of a maintenance report. */
export type TaskResults = { [Task in AnyTask as Task['name']]: ResultOf<Task> };
