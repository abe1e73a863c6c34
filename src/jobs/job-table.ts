/**
 * Every job chunkvault runs, in one table: name -> queue -> payload schema. The worker pool
 * refuses to start unless each job here has exactly one handler.
 *
 * chunkvault's producer queues one `replica.write` job per replica on the `replicas` queue
 * after registering the chunk in the catalog; the job whose outcome ends the chunk frees its
 * staged bytes. A producer that cannot register chunks (another language, its own BullMQ
 * client) queues a BullMQ flow instead: a `chunk.finalize` parent on the `chunks` queue with
 * the replica writes as children, which runs once every child has ended and does the same.
 * `replica.repair` rewrites a replica a read found bad, from a good one. `maintenance.run`
 * (queue `maintenance`, put there by the job scheduler or `chunkvault scrub`) runs a pass.
 */
import type { Job } from 'bullmq';
import type { z } from 'zod';
import { chunkFinalizeDataSchema, maintenanceRunDataSchema, replicaRepairDataSchema, replicaWriteDataSchema } from './job-data.js';

export const QUEUE_NAMES = { replicas: 'replicas', chunks: 'chunks', maintenance: 'maintenance' } as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

/**
 * The worker pool validates each job's data against its schema before its handler runs, and
 * hands the handler the typed payload; data that does not fit fails the job without retries
 * ("invalid <what> job data: ...").
 */
export const JOBS = {
  'replica.write': { queue: QUEUE_NAMES.replicas, schema: replicaWriteDataSchema, what: 'replica' },
  'chunk.finalize': { queue: QUEUE_NAMES.chunks, schema: chunkFinalizeDataSchema, what: 'chunk' },
  'replica.repair': { queue: QUEUE_NAMES.replicas, schema: replicaRepairDataSchema, what: 'repair' },
  'maintenance.run': { queue: QUEUE_NAMES.maintenance, schema: maintenanceRunDataSchema, what: 'maintenance' },
} as const satisfies Record<string, { queue: QueueName; schema: z.ZodType; what: string }>;

export type JobName = keyof typeof JOBS;

/** The payload of job `name`, as its schema parses it. */
export type JobData<name extends JobName> = z.infer<(typeof JOBS)[name]['schema']>;

/** One handler per job: given the job and its validated payload. */
export type JobHandlers = { [name in JobName]: (job: Job, data: JobData<name>) => Promise<unknown> };

/**
 * How often `job` was started and not finished before this run: its worker died or stalled.
 * BullMQ counts every start (attemptsStarted) and every failed attempt (attemptsMade).
 */
export function stallsOf(job: Job): number {
  return Math.max(0, job.attemptsStarted - job.attemptsMade - 1);
}

/** BullMQ job id of a replica write: readable, unique per (chunk, replica, generation), no ':'. */
export function replicaJobId(chunkId: string, replicaId: string, generation: number): string {
  return generation > 0 ? `${replicaId}@${chunkId}#${generation}` : `${replicaId}@${chunkId}`;
}

/** BullMQ job id of the repair of one corruption of a replica (a later corruption gets a new one). */
export function repairJobId(chunkId: string, replicaId: string, corruption: number): string {
  return `${replicaId}@${chunkId}#repair-${corruption}`;
}

/**
 * BullMQ job id of the `chunk.finalize` job that frees the staged bytes under `stagedKey` when a
 * flow queued them: a flow names its staged bytes `<chunkId>@<flowTag>` and its parent `chunk@<chunkId>#<flowTag>`.
 */
export function finalizeJobIdOfStagedKey(stagedKey: string): string {
  const at = stagedKey.lastIndexOf('@');
  return `chunk@${stagedKey.slice(0, at)}#${stagedKey.slice(at + 1)}`;
}
