/**
 * The producer: what a coordinator calls to have chunks stored. Per chunk it validates the
 * task, computes the checksum (of a large chunk: as its staged file reads back), records the
 * chunk and its replicas in the catalog, stages the bytes once and queues one `replica.write`
 * job per replica. The catalog then knows when the
 * chunk has ended (no replica of it queued), so the job that ends it frees the staged bytes:
 * no parent job per chunk (a BullMQ flow's parent and its dependency set were a third of
 * the Redis memory per queued replica). Replicas already stored are not queued again; job
 * ids are deterministic, so queuing the same replica twice stores it once.
 */
import { hash } from 'node:crypto';
import type { JobsOptions } from 'bullmq';
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import { SEGMENT_BYTES, SEGMENT_CHUNKS, SEGMENT_CHUNK_MAX_BYTES, type StagingArea } from '../staging/staging-area.js';
import type { HashedTempFile } from '../backends/durable-file-writer.js';
import type { Logger } from '../logging/logger.js';
import type { DistributionTask, ReplicaPlacement, StoredChunk, ChecksumAlgorithm } from '../domain/types.js';
import { describeError } from '../errors.js';
import { checksumOf } from '../integrity/checksum.js';
import { replicaJobId } from '../jobs/job-table.js';
import type { ReplicaWriteData } from '../jobs/job-data.js';
import type { ReplicaJob, ReplicaQueues } from '../jobs/replica-queues.js';
import { retryAcrossReconnects } from '../redis/redis-connection.js';
import { distributionTaskSchema } from './task-schema.js';
import { StoreHandle, type ReplicaRef } from './store-handle.js';

export interface ChunkProducerDeps {
  config: Config;
  catalog: Catalog;
  backends: BackendRegistry;
  staging: StagingArea;
  /** Where replica jobs go (one queue, or one per backend). */
  replicaQueues: ReplicaQueues;
  logger: Logger;
}

/** Replica jobs sent to Redis per round trip. */
const JOB_BATCH = 400;
/** Chunks hashed and staged at once at most (their fsyncs share directory commits: see directory-sync). */
const PREPARE_CONCURRENCY = 32;
/** Bytes being hashed and staged at once, so big chunks finish (and reach the workers) one by one rather than all together. */
const PREPARE_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

function prepareLanes(tasks: readonly DistributionTask[]): number {
  const bytes = tasks.reduce((sum, task) => sum + (task.chunkData?.byteLength ?? 0), 0);
  const average = tasks.length ? bytes / tasks.length : 0;
  return Math.max(2, Math.min(PREPARE_CONCURRENCY, Math.floor(PREPARE_BYTES_IN_FLIGHT / Math.max(1, average))));
}

export class ChunkProducer {
  readonly #deps: ChunkProducerDeps;

  constructor(deps: ChunkProducerDeps) {
    this.#deps = deps;
  }

  /**
   * Takes the completed tasks' completed replicas for storage. Resolves once they are
   * queued (not stored): await `handle.results()` for the outcome. Invalid tasks do not
   * throw; their replicas come back failed with the reason, and nothing of them is stored.
   */
  async store(tasks: readonly DistributionTask[]): Promise<StoreHandle> {
    if (!Array.isArray(tasks)) throw new TypeError('store() takes an array of distribution tasks');
    const eligible = tasks.filter((task) => task?.status === 'completed');
    // Prepared concurrently, reported in the order given. Small chunks wait for the next
    // staging segment: one is written whenever none is being written, with every chunk that
    // waits (up to SEGMENT_BYTES). Jobs go to Redis as soon as their bytes are staged, one
    // addBulk at a time, so workers start on the first chunks while later ones are prepared.
    const outcomes: Prepared[] = new Array(eligible.length);
    const ready: QueuedJob[] = [];
    let sending: Promise<void> | undefined;
    let sendFailure: unknown;
    let jobCount = 0;
    const pump = (): void => {
      if (sending || ready.length === 0 || sendFailure !== undefined) return;
      const batch = ready.splice(0, JOB_BATCH);
      jobCount += batch.length;
      // Job ids are fixed, so sending a batch again after a Redis restart adds each job once.
      sending = retryAcrossReconnects(() => this.#deps.replicaQueues.addBulk(batch), 'queuing replica jobs').then(
        () => {
          sending = undefined;
          pump();
        },
        (error: unknown) => {
          sendFailure = error;
          sending = undefined;
        },
      );
    };
    const waiting: Array<{ index: number; chunk: PendingChunk }> = [];
    let flushing: Promise<void> | undefined;
    const flush = (): void => {
      if (flushing || waiting.length === 0) return;
      let bytes = 0;
      let take = 0;
      while (take < waiting.length && take < SEGMENT_CHUNKS && (take === 0 || bytes + waiting[take]!.chunk.bytes.byteLength <= SEGMENT_BYTES)) {
        bytes += waiting[take]!.chunk.bytes.byteLength;
        take += 1;
      }
      flushing = this.#stageSegment(waiting.splice(0, take), outcomes)
        .then(
          (jobs) => {
            ready.push(...jobs);
            pump();
          },
          (error: unknown) => {
            sendFailure ??= error;
          },
        )
        .finally(() => {
          flushing = undefined;
          flush();
        });
    };
    let next = 0;
    const prepareNext = async (): Promise<void> => {
      while (next < eligible.length) {
        const index = next++;
        const outcome = await this.prepare(eligible[index]!);
        outcomes[index] = outcome;
        if (outcome.pending) {
          waiting.push({ index, chunk: outcome.pending });
          flush();
        } else if (outcome.jobs.length) {
          ready.push(...outcome.jobs);
          pump();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(prepareLanes(eligible), eligible.length) }, prepareNext));
    while (flushing || waiting.length) {
      flush();
      await flushing;
    }
    pump();
    while (sending) await sending;
    if (sendFailure !== undefined) throw sendFailure;

    const tracked: ReplicaRef[] = [];
    const rejected: StoredChunk[] = [];
    for (const outcome of outcomes) {
      rejected.push(...outcome.rejected);
      tracked.push(...outcome.tracked);
    }

    this.#deps.logger.info({ tasks: tasks.length, replicas: tracked.length, rejected: rejected.length, jobs: jobCount }, 'chunks queued');
    return new StoreHandle(this.#deps.catalog, tracked, rejected);
  }

  /**
   * Stages small chunks in one segment and returns their jobs. Should the segment fail (a
   * caller's buffer changed since its checksum, a full disk), each chunk is staged in a file
   * of its own instead, so a failure is reported for the chunk it belongs to.
   */
  async #stageSegment(batch: ReadonlyArray<{ index: number; chunk: PendingChunk }>, outcomes: Prepared[]): Promise<QueuedJob[]> {
    const { staging, catalog, logger } = this.#deps;
    try {
      const { segment, offsets } = await staging.stageSegment(batch.map(({ chunk }) => chunk));
      await retryAcrossReconnects(() => catalog.trackSegment(segment, batch.map(({ chunk }) => chunk.chunkId)), 'tracking a staging segment');
      return batch.flatMap(({ chunk }, i) => chunk.jobsAt(segment, offsets[i]));
    } catch (error) {
      if (batch.length > 1) logger.warn({ err: error, chunks: batch.length }, 'could not stage chunks together; staging each in a file of its own');
      const jobs: QueuedJob[] = [];
      for (const { index, chunk } of batch) {
        try {
          const stagedKey = chunk.ownFileKey;
          await staging.stage(stagedKey, chunk.bytes, chunk.checksum, chunk.algorithm);
          jobs.push(...chunk.jobsAt(stagedKey));
        } catch (chunkError) {
          outcomes[index] = { tracked: [], rejected: [...outcomes[index]!.rejected, ...(await chunk.fail(chunkError))], jobs: [] };
        }
      }
      return jobs;
    }
  }

  private async prepare(task: DistributionTask): Promise<Prepared> {
    const completed = (Array.isArray(task.replicas) ? task.replicas : []).filter((r) => r?.status === 'completed');
    if (completed.length === 0) return { tracked: [], rejected: [], jobs: [] };
    const parsed = distributionTaskSchema.safeParse({ ...task, replicas: completed });
    if (!parsed.success) {
      const reason = `invalid task ${textOf(task.taskId)}: ${parsed.error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ')}`;
      return { tracked: [], rejected: completed.map((r) => rejectedResult(task, r, reason)), jobs: [] };
    }
    const { config, catalog, backends, staging } = this.#deps;
    // A replica whose provider routes to no configured backend is refused alone; the chunk's other replicas go ahead.
    const unroutable: StoredChunk[] = [];
    const replicas: Array<ReplicaPlacement & { backend: string }> = [];
    for (const r of completed) {
      const route = backends.routeOf(r.cloudProvider);
      if ('problem' in route) unroutable.push(rejectedResult(task, r, `replica ${r.replicaId} of chunk ${task.chunkId}: ${route.problem}`));
      else replicas.push({ ...r, backend: route.backend.name });
    }
    if (replicas.length === 0) return { tracked: [], rejected: unroutable, jobs: [] };
    const algorithm = config.storage.integrity.checksum_algorithm;
    const bytes = task.chunkData;
    let registered: Array<{ replicaId: string; backend: string }> = [];
    // Registered but not queued: mark those failed so no one waits on them (queuing them again retries).
    const fail = async (error: unknown): Promise<StoredChunk[]> => {
      const reason = describeError(error);
      for (const r of registered) await catalog.recordFailed(task.chunkId, r.replicaId, r.backend, reason, 0).catch(() => undefined);
      return [...unroutable, ...replicas.map((r) => rejectedResult(task, r, reason))];
    };
    // A large chunk staged in a local directory is hashed once, as it reads back from its staged
    // file on a hashing thread (StagingArea.stageHashed); any other chunk here, from its buffer.
    let staged: HashedTempFile | undefined;
    try {
      if (bytes.byteLength > SEGMENT_CHUNK_MAX_BYTES) staged = await staging.stageHashed(bytes, algorithm, task.chunkId);
      const checksum = staged?.checksum ?? (await checksumOf(bytes, algorithm));
      // Registering again is harmless: a replica still queued keeps its generation.
      const registration = await retryAcrossReconnects(() => catalog.registerChunk({
        chunkId: task.chunkId, checksum, algorithm, sizeBytes: bytes.byteLength, createdAtMs: Date.now(),
        replicas: replicas.map((r) => ({
          replicaId: r.replicaId, backend: r.backend,
          targetNode: r.targetNode, cloudProvider: r.cloudProvider, taskId: task.taskId,
        })),
      }), `registering chunk ${task.chunkId}`);
      const tracked = replicas.map((r) => ({ chunkId: task.chunkId, replicaId: r.replicaId }));
      const toWrite = registration.replicas.filter((r) => r.action === 'enqueue');
      if (toWrite.length === 0) return { tracked, rejected: unroutable, jobs: [] };
      registered = toWrite.map((r) => ({ replicaId: r.replicaId, backend: byIdOf(replicas, r.replicaId).backend }));

      const jobIds = toWrite.map((r) => replicaJobId(task.chunkId, r.replicaId, r.generation));
      // A file of its own is named once per (bytes, set of jobs): the same call repeated stages to the same name.
      const stageTag = hash('sha256', `${checksum}\0${jobIds.join('\0')}`, 'hex').slice(0, 16);
      const { retry } = config.chunkvault;
      // At most one replica may be the staged file itself (a hard link): two would share one file.
      const linker = toWrite.find((r) => backends.byName(byIdOf(replicas, r.replicaId).backend)?.putFile !== undefined)?.replicaId;
      const chunk: PendingChunk = {
        chunkId: task.chunkId, bytes, checksum, algorithm, ownFileKey: `${task.chunkId}@${stageTag}`, fail,
        jobsAt: (stagedKey, stagedOffset) => toWrite.map((r, i): QueuedJob => {
          const placement = byIdOf(replicas, r.replicaId);
          const data: ReplicaWriteData = {
            chunkId: task.chunkId, replicaId: r.replicaId, taskId: task.taskId, targetNode: placement.targetNode,
            cloudProvider: placement.cloudProvider, checksum, algorithm, sizeBytes: bytes.byteLength, stagedKey,
            ...(stagedOffset === undefined ? {} : { stagedOffset }), createdAtMs: registration.createdAtMs,
            ...(stagedOffset === undefined && r.replicaId === linker ? { linkStaged: true as const } : {}),
          };
          // How long finished jobs are kept is the workers' setting (chunkvault.jobs), not stored in every job.
          const opts: JobsOptions = { jobId: jobIds[i], attempts: retry.attempts, backoff: { type: 'exponential', delay: retry.backoff_ms } };
          return { backend: placement.backend, name: 'replica.write', data, opts };
        }),
      };
      if (bytes.byteLength <= SEGMENT_CHUNK_MAX_BYTES) return { tracked, rejected: unroutable, jobs: [], pending: chunk };
      if (staged) {
        const placing = staged;
        staged = undefined;
        await placing.place(chunk.ownFileKey);
      } else {
        await staging.stage(chunk.ownFileKey, bytes, checksum, algorithm);
      }
      return { tracked, rejected: unroutable, jobs: chunk.jobsAt(chunk.ownFileKey) };
    } catch (error) {
      return { tracked: [], rejected: await fail(error), jobs: [] };
    } finally {
      // Not placed (nothing to write, or a failure): it was never made durable.
      await staged?.discard();
    }
  }
}

type QueuedJob = ReplicaJob & { name: 'replica.write'; data: ReplicaWriteData };

/** A registered small chunk waiting for a staging segment. */
interface PendingChunk {
  chunkId: string;
  bytes: Uint8Array;
  checksum: string;
  algorithm: ChecksumAlgorithm;
  /** Its staged key should it be staged in a file of its own. */
  ownFileKey: string;
  /** Its replica jobs, once its bytes are staged under `stagedKey` (at `stagedOffset` in a segment). */
  jobsAt: (stagedKey: string, stagedOffset?: number) => QueuedJob[];
  /** Records its registered replicas failed with `error`'s reason; returns their results. */
  fail: (error: unknown) => Promise<StoredChunk[]>;
}

/** One task, prepared: its replicas to track or refuse, and its jobs (or its chunk, waiting for a segment). */
interface Prepared {
  tracked: ReplicaRef[];
  rejected: StoredChunk[];
  jobs: QueuedJob[];
  pending?: PendingChunk;
}

function byIdOf<R extends ReplicaPlacement>(replicas: readonly R[], replicaId: string): R {
  return replicas.find((r) => r.replicaId === replicaId)!;
}

function rejectedResult(task: DistributionTask, replica: ReplicaPlacement, reason: string): StoredChunk {
  return {
    chunkId: textOf(task.chunkId), replicaId: textOf(replica.replicaId), status: 'failed', storagePath: '', backend: '',
    checksum: '', algorithm: 'md5', sizeBytes: 0, storedAt: new Date().toISOString(), nodeId: textOf(replica.targetNode),
    cloudProvider: textOf(replica.cloudProvider), taskId: textOf(task.taskId), error: reason,
  };
}

/** A field of an invalid task as text for its report; String() throws for some values (an object without a prototype). */
function textOf(value: unknown): string {
  try {
    return String(value);
  } catch {
    return `(${typeof value})`;
  }
}
