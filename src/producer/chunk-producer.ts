/**
 * The producer: what a coordinator calls to have chunks stored. Per chunk it validates the
 * task, computes the checksum, records the chunk in the catalog, stages the bytes once and
 * queues one flow: a `chunk.finalize` parent with one `replica.write` child per replica.
 * Replicas already stored are not queued again; job ids are deterministic, so queuing the
 * same replica twice stores it once.
 */
import { createHash } from 'node:crypto';
import type { FlowJob, FlowProducer } from 'bullmq';
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { StagingArea } from '../staging/staging-area.js';
import type { Logger } from '../logging/logger.js';
import type { DistributionTask, ReplicaPlacement, StoredChunk } from '../domain/types.js';
import { describeError } from '../errors.js';
import { checksumOf } from '../integrity/checksum.js';
import { JOBS, replicaJobId } from '../jobs/job-table.js';
import type { ChunkFinalizeData, ReplicaWriteData } from '../jobs/job-data.js';
import { distributionTaskSchema } from './task-schema.js';
import { StoreHandle, type ReplicaRef } from './store-handle.js';

export interface ChunkProducerDeps {
  config: Config;
  catalog: Catalog;
  backends: BackendRegistry;
  staging: StagingArea;
  flows: FlowProducer;
  logger: Logger;
}

/** Flows sent to Redis per round trip. */
const FLOW_BATCH = 200;
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
    // Prepared concurrently, reported in the order given. Flows go to Redis as soon as they
    // are ready, one addBulk at a time: whatever is ready when the previous one returns goes
    // next, so workers start on the first chunks while later ones are still being staged.
    const outcomes: Array<Awaited<ReturnType<ChunkProducer['prepare']>>> = new Array(eligible.length);
    const ready: FlowJob[] = [];
    let sending: Promise<void> | undefined;
    let sendFailure: unknown;
    let flowCount = 0;
    const pump = (): void => {
      if (sending || ready.length === 0 || sendFailure !== undefined) return;
      const batch = ready.splice(0, FLOW_BATCH);
      flowCount += batch.length;
      sending = this.#deps.flows.addBulk(batch).then(
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
    let next = 0;
    const prepareNext = async (): Promise<void> => {
      while (next < eligible.length) {
        const index = next++;
        const outcome = await this.prepare(eligible[index]!);
        outcomes[index] = outcome;
        if (outcome.flow) {
          ready.push(outcome.flow);
          pump();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(prepareLanes(eligible), eligible.length) }, prepareNext));
    pump();
    while (sending) await sending;
    if (sendFailure !== undefined) throw sendFailure;

    const tracked: ReplicaRef[] = [];
    const rejected: StoredChunk[] = [];
    for (const outcome of outcomes) {
      rejected.push(...outcome.rejected);
      tracked.push(...outcome.tracked);
    }

    this.#deps.logger.info({ tasks: tasks.length, replicas: tracked.length, rejected: rejected.length, flows: flowCount }, 'chunks queued');
    return new StoreHandle(this.#deps.catalog, tracked, rejected);
  }

  private async prepare(task: DistributionTask): Promise<{ tracked: ReplicaRef[]; rejected: StoredChunk[]; flow?: FlowJob }> {
    const completed = (Array.isArray(task.replicas) ? task.replicas : []).filter((r) => r?.status === 'completed');
    if (completed.length === 0) return { tracked: [], rejected: [] };
    const parsed = distributionTaskSchema.safeParse({ ...task, replicas: completed });
    if (!parsed.success) {
      const reason = `invalid task ${textOf(task.taskId)}: ${parsed.error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ')}`;
      return { tracked: [], rejected: completed.map((r) => rejectedResult(task, r, reason)) };
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
    if (replicas.length === 0) return { tracked: [], rejected: unroutable };
    const algorithm = config.storage.integrity.checksum_algorithm;
    const bytes = task.chunkData;
    let registered: Array<{ replicaId: string; backend: string }> = [];
    try {
      const checksum = await checksumOf(bytes, algorithm);
      const registration = await catalog.registerChunk({
        chunkId: task.chunkId, checksum, algorithm, sizeBytes: bytes.byteLength, createdAtMs: Date.now(),
        replicas: replicas.map((r) => ({
          replicaId: r.replicaId, backend: r.backend,
          targetNode: r.targetNode, cloudProvider: r.cloudProvider, taskId: task.taskId,
        })),
      });
      const tracked = replicas.map((r) => ({ chunkId: task.chunkId, replicaId: r.replicaId }));
      const toWrite = registration.replicas.filter((r) => r.action === 'enqueue');
      if (toWrite.length === 0) return { tracked, rejected: unroutable };
      registered = toWrite.map((r) => ({ replicaId: r.replicaId, backend: byIdOf(replicas, r.replicaId).backend }));

      const jobIds = toWrite.map((r) => replicaJobId(task.chunkId, r.replicaId, r.generation));
      const flowTag = createHash('sha256').update(`${checksum}\0${jobIds.join('\0')}`).digest('hex').slice(0, 16);
      const stagedKey = `${task.chunkId}@${flowTag}`;
      await staging.stage(stagedKey, bytes, checksum, algorithm);

      const keep = config.chunkvault.jobs;
      const finalizeData: ChunkFinalizeData = { chunkId: task.chunkId, stagedKey, replicas: toWrite.map((r) => ({ replicaId: r.replicaId, generation: r.generation })) };
      const flow: FlowJob = {
        name: 'chunk.finalize',
        queueName: JOBS['chunk.finalize'].queue,
        data: finalizeData,
        opts: {
          jobId: `chunk@${task.chunkId}#${flowTag}`,
          attempts: config.chunkvault.retry.attempts,
          backoff: { type: 'exponential', delay: config.chunkvault.retry.backoff_ms },
          removeOnComplete: { age: keep.keep_completed_seconds },
          removeOnFail: { age: keep.keep_failed_seconds },
        },
        children: toWrite.map((r, i) => {
          const placement = byIdOf(replicas, r.replicaId);
          const data: ReplicaWriteData = {
            chunkId: task.chunkId, replicaId: r.replicaId, taskId: task.taskId, targetNode: placement.targetNode,
            cloudProvider: placement.cloudProvider, checksum, algorithm, sizeBytes: bytes.byteLength, stagedKey,
            createdAtMs: registration.createdAtMs,
          };
          return {
            name: 'replica.write',
            queueName: JOBS['replica.write'].queue,
            data,
            opts: {
              jobId: jobIds[i],
              attempts: config.chunkvault.retry.attempts,
              backoff: { type: 'exponential', delay: config.chunkvault.retry.backoff_ms },
              ignoreDependencyOnFailure: true,
              removeOnComplete: { age: keep.keep_completed_seconds },
              removeOnFail: { age: keep.keep_failed_seconds },
            },
          };
        }),
      };
      return { tracked, rejected: unroutable, flow };
    } catch (error) {
      const reason = describeError(error);
      // Registered but not queued: mark those failed so no one waits on them (queuing them again retries).
      for (const r of registered) await catalog.recordFailed(task.chunkId, r.replicaId, r.backend, reason, 0).catch(() => undefined);
      return { tracked: [], rejected: [...unroutable, ...replicas.map((r) => rejectedResult(task, r, reason))] };
    }
  }
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
