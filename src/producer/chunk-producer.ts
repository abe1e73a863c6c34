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
/** Chunks hashed and staged at once. */
const PREPARE_CONCURRENCY = 8;

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
    // Prepared concurrently, reported in the order given.
    const outcomes: Array<Awaited<ReturnType<ChunkProducer['prepare']>>> = new Array(eligible.length);
    let next = 0;
    const prepareNext = async (): Promise<void> => {
      while (next < eligible.length) {
        const index = next++;
        outcomes[index] = await this.prepare(eligible[index]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PREPARE_CONCURRENCY, eligible.length) }, prepareNext));

    const tracked: ReplicaRef[] = [];
    const rejected: StoredChunk[] = [];
    const flows: FlowJob[] = [];
    for (const outcome of outcomes) {
      if ('rejected' in outcome) rejected.push(...outcome.rejected);
      else {
        tracked.push(...outcome.tracked);
        if (outcome.flow) flows.push(outcome.flow);
      }
    }

    for (let i = 0; i < flows.length; i += FLOW_BATCH) await this.#deps.flows.addBulk(flows.slice(i, i + FLOW_BATCH));
    this.#deps.logger.info({ tasks: tasks.length, replicas: tracked.length, rejected: rejected.length, flows: flows.length }, 'chunks queued');
    return new StoreHandle(this.#deps.catalog, tracked, rejected);
  }

  private async prepare(task: DistributionTask): Promise<{ rejected: StoredChunk[] } | { tracked: ReplicaRef[]; flow?: FlowJob }> {
    const replicas = (Array.isArray(task.replicas) ? task.replicas : []).filter((r) => r?.status === 'completed');
    if (replicas.length === 0) return { tracked: [] };
    const parsed = distributionTaskSchema.safeParse({ ...task, replicas });
    if (!parsed.success) {
      const reason = `invalid task ${String(task.taskId)}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
      return { rejected: replicas.map((r) => rejectedResult(task, r, reason)) };
    }
    const { config, catalog, backends, staging } = this.#deps;
    const algorithm = config.storage.integrity.checksum_algorithm;
    const bytes = task.chunkData;
    let registered: Array<{ replicaId: string; backend: string }> = [];
    try {
      const checksum = await checksumOf(bytes, algorithm);
      const registration = await catalog.registerChunk({
        chunkId: task.chunkId, checksum, algorithm, sizeBytes: bytes.byteLength, createdAtMs: Date.now(),
        replicas: replicas.map((r) => ({
          replicaId: r.replicaId, backend: backends.forReplica(r.cloudProvider).name,
          targetNode: r.targetNode, cloudProvider: r.cloudProvider, taskId: task.taskId,
        })),
      });
      const tracked = replicas.map((r) => ({ chunkId: task.chunkId, replicaId: r.replicaId }));
      const toWrite = registration.replicas.filter((r) => r.action === 'enqueue');
      if (toWrite.length === 0) return { tracked };
      registered = toWrite.map((r) => ({ replicaId: r.replicaId, backend: backends.forReplica(byIdOf(replicas, r.replicaId).cloudProvider).name }));

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
      return { tracked, flow };
    } catch (error) {
      const reason = describeError(error);
      // Registered but not queued: mark those failed so no one waits on them (queuing them again retries).
      for (const r of registered) await catalog.recordFailed(task.chunkId, r.replicaId, r.backend, reason, 0).catch(() => undefined);
      return { rejected: replicas.map((r) => rejectedResult(task, r, reason)) };
    }
  }
}

function byIdOf(replicas: readonly ReplicaPlacement[], replicaId: string): ReplicaPlacement {
  return replicas.find((r) => r.replicaId === replicaId)!;
}

function rejectedResult(task: DistributionTask, replica: ReplicaPlacement, reason: string): StoredChunk {
  return {
    chunkId: String(task.chunkId), replicaId: String(replica.replicaId), status: 'failed', storagePath: '', backend: '',
    checksum: '', algorithm: 'md5', sizeBytes: 0, storedAt: new Date().toISOString(), nodeId: String(replica.targetNode),
    cloudProvider: String(replica.cloudProvider), taskId: String(task.taskId), error: reason,
  };
}
