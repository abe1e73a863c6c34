/**
 * replica.write: makes one replica durable on its backend and records it.
 *
 * Idempotent (jobs may run twice, or at once): a replica already recorded as stored whose
 * object is still there is returned as it is, also when a run finds the chunk's staged bytes
 * freed because another run stored it meanwhile; otherwise the same storage key is written
 * again.
 * Order: validate -> reserve quota -> put (checksum checked before it is in place, atomic) ->
 * commitReplica (read back and verify, metadata, catalog). A crash before the catalog step
 * leaves at most a complete object that the retry overwrites with the same bytes.
 *
 * Every way a write ends for good (stored, failed, given up after its worker died too often)
 * is recorded in the catalog by this job, and the catalog's script says whether that ended
 * the chunk (no replica of it left queued). The job that ends the chunk frees its staged
 * bytes and asks for due checkpoints to be sealed. A job queued inside a flow (by a producer
 * that does not register chunks in the catalog, see docs/job-schema.json) leaves both to its
 * `chunk.finalize` parent, since the catalog may not know the chunk's other replicas yet.
 */
import type { Job } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import { UNROUTED_BACKEND, type BackendRegistry } from '../backends/backend-registry.js';
import type { Backend, PutReceipt } from '../backends/backend.js';
import type { StagingArea } from '../staging/staging-area.js';
import type { Logger } from '../logging/logger.js';
import type { ChunkStatus, ReplicaRecord, StoredChunk } from '../domain/types.js';
import type { CheckpointService } from '../checkpoints/checkpoint-service.js';
import { ChecksumMismatchError, ChunkvaultError, InvalidInputError, QuotaExceededError, SizeMismatchError, StagedBytesGoneError, describeError } from '../errors.js';
import { startTimer, type ProcessMetrics } from '../metrics/process-metrics.js';
import { dataKeyOf } from '../storage/storage-layout.js';
import { smallBodyOf } from '../backends/fs-support.js';
import type { ReplicaWriteData } from './job-data.js';
import { replicaJobId, stallsOf } from './job-table.js';
import { commitReplica } from './replica-commit.js';
import { ByteBudget } from './byte-budget.js';
import { jobLogger } from './job-logger.js';

export interface ReplicaWriterDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  backends: BackendRegistry;
  staging: StagingArea;
  logger: Logger;
  metrics: ProcessMetrics;
  checkpoints: Pick<CheckpointService, 'sealSoon'>;
  /**
   * Writes of an object of their own at once in this process, shared with repairs: one unit
   * each, storage.performance.max_concurrent_writes in all. Appends to packs take none.
   */
  writeSlots: ByteBudget;
}

/**
 * Bytes of replicas a worker process writes and verifies at once, at most. Twenty 16 MiB
 * writes at once were no faster than four on the disks measured, held 20 x 5 MiB of slices
 * and copies in memory, and made the event loop wait longest (docs/BENCHMARKS.md, W4).
 */
export const WRITE_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

/** A write's result: `wrote` is false when the replica was already stored (an idempotent re-run). */
interface WriteOutcome {
  stored: StoredChunk;
  wrote: boolean;
  chunkStatus: ChunkStatus | 'unknown';
}

export class ReplicaWriter {
  readonly #deps: ReplicaWriterDeps;
  readonly #inFlight = new ByteBudget(WRITE_BYTES_IN_FLIGHT);

  constructor(deps: ReplicaWriterDeps) {
    this.#deps = deps;
  }

  /** BullMQ processor body, given the job's validated data. Throws UnrecoverableError for failures no retry can fix. */
  async handle(job: Job, data: ReplicaWriteData): Promise<StoredChunk> {
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    const { metrics } = this.#deps;
    const route = this.#deps.backends.routeOf(data.cloudProvider);
    if ('problem' in route) {
      // No configuration change reaches a running job: fail it now, naming the provider.
      const message = `replica ${data.replicaId} of chunk ${data.chunkId}: ${route.problem}`;
      await this.#chunkMayHaveEnded(job, data, await this.#deps.catalog.recordFailed(data.chunkId, data.replicaId, UNROUTED_BACKEND, message, attempt));
      metrics.writeAttempt(UNROUTED_BACKEND, data.cloudProvider, 'failed');
      jobLogger(this.#deps.logger, job, { chunkId: data.chunkId, replicaId: data.replicaId, cloudProvider: data.cloudProvider }).error(message);
      throw new UnrecoverableError(message);
    }
    const backend = route.backend;
    // Made when a line is written: a child logger per job costs more than the rest of a small write's bookkeeping.
    const log = (): Logger => jobLogger(this.#deps.logger, job, { chunkId: data.chunkId, replicaId: data.replicaId, backend: backend.name });
    const stalls = stallsOf(job);
    if (stalls > maxAttempts) {
      const message = `replica ${data.replicaId} of chunk ${data.chunkId}: given up after its worker stopped ${stalls} times while writing it (crashed, killed or blocked past the job lock)`;
      await this.#chunkMayHaveEnded(job, data, await this.#deps.catalog.recordFailed(data.chunkId, data.replicaId, backend.name, message, attempt));
      metrics.writeAttempt(backend.name, data.cloudProvider, 'failed');
      log().error({ stalls }, message);
      throw new UnrecoverableError(message);
    }
    let outcome: WriteOutcome;
    try {
      outcome = await this.#write(data, backend, attempt, isFirstRun(job, data, stalls));
      metrics.writeAttempt(backend.name, data.cloudProvider, outcome.wrote ? 'stored' : 'skipped');
      if (this.#deps.logger.isLevelEnabled('debug')) log().debug({ path: outcome.stored.storagePath, attempt }, outcome.wrote ? 'replica stored' : 'replica already stored');
    } catch (error) {
      const retryable = error instanceof ChunkvaultError ? error.retryable : !(error instanceof UnrecoverableError);
      const final = !retryable || attempt >= maxAttempts;
      const message = describeError(error);
      metrics.writeAttempt(backend.name, data.cloudProvider, final ? 'failed' : 'retried');
      if (final) {
        const chunkStatus = await this.#deps.catalog.recordFailed(data.chunkId, data.replicaId, backend.name, message, attempt);
        log().error({ err: error, attempt, maxAttempts }, 'replica write failed for good');
        await this.#chunkMayHaveEnded(job, data, chunkStatus);
      } else {
        await this.#deps.catalog.recordAttempt(data.chunkId, data.replicaId, attempt, message);
        log().warn({ err: error, attempt, maxAttempts }, 'replica write failed; will retry');
      }
      if (!retryable) throw new UnrecoverableError(message);
      throw error;
    }
    // Outside the write's error handling: the replica is stored whatever happens here (a
    // failure fails the job, whose re-run finds it stored and tries this again).
    await this.#chunkMayHaveEnded(job, data, outcome.chunkStatus);
    return outcome.stored;
  }

  /**
   * After this job recorded the replica's final outcome: when the chunk has ended (no replica
   * of it queued), frees its staged bytes and asks for due checkpoints. A failure to free them
   * does not fail the write (the replica is durable and recorded); the workers' staging sweep
   * frees what is left.
   */
  async #chunkMayHaveEnded(job: Job, data: ReplicaWriteData, chunkStatus: ChunkStatus | 'unknown'): Promise<void> {
    if (job.parentKey || chunkStatus === 'pending' || chunkStatus === 'unknown') return;
    const { catalog, staging, logger } = this.#deps;
    // A segment is freed with the last of its chunks to end; a chunk's own file with the chunk.
    const free = data.stagedOffset === undefined || (await catalog.segmentChunkEnded(data.stagedKey, data.chunkId));
    if (free) {
      await staging.release(data.stagedKey).catch((error: unknown) => {
        logger.warn({ err: error, chunkId: data.chunkId, stagedKey: data.stagedKey }, 'could not free staged bytes no job needs any more; the staging sweep will');
      });
    }
    this.#deps.checkpoints.sealSoon();
  }

  /**
   * Puts the chunk's staged bytes on `backend` under `key`: from the staged file itself where
   * the backend takes local files (a kernel copy, or a hard link for the one replica
   * `linkStaged` names), else streamed or read from the staging area.
   */
  async #put(backend: Backend, key: string, data: ReplicaWriteData): Promise<PutReceipt | void> {
    const { staging } = this.#deps;
    const options = { sizeBytes: data.sizeBytes, checksum: data.checksum, algorithm: data.algorithm };
    const stagedFile = backend.putFile ? staging.localFileOf(data.stagedKey) : undefined;
    if (stagedFile === undefined || !backend.putFile) {
      return backend.put(key, await staging.open(data.stagedKey, data.chunkId, data.stagedOffset, data.sizeBytes), options);
    }
    try {
      return await backend.putFile(key, stagedFile, { ...options, link: data.linkStaged === true });
    } catch (error) {
      throw staging.goneAs(error, data.stagedKey, data.chunkId);
    }
  }

  /** `firstRun`: see isFirstRun; such a run skips reading the replica's record first. */
  async #write(data: ReplicaWriteData, backend: Backend, attempt: number, firstRun: boolean): Promise<WriteOutcome> {
    const { config, catalog, staging, metrics } = this.#deps;
    const key = dataKeyOf(config.storage.organization.partition_by, data);

    const existing = firstRun ? undefined : await catalog.getReplica(data.chunkId, data.replicaId);
    // A re-run (its first run may have died before freeing the staged bytes).
    const done = existing && (await this.#alreadyStored(existing, backend, data));
    if (done) return done;
    if (existing && existing.checksum !== data.checksum) {
      throw new InvalidInputError(`chunk ${data.chunkId} is recorded with checksum ${existing.checksum}, job says ${data.checksum}`);
    }

    const limit = this.#deps.backends.limitOf(backend.name);
    if (limit > 0) {
      const used = await catalog.reserveQuota(backend.name, data.chunkId, data.replicaId, data.sizeBytes, limit);
      if (used !== undefined) {
        throw new QuotaExceededError(
          `backend ${backend.name} is full: ${data.sizeBytes} more bytes for replica ${data.replicaId} of chunk ${data.chunkId} would pass max_size_gb (${limit} bytes; ${used} in use or reserved)`,
        );
      }
    }

    // Objects of their own take turns for a write slot; appends to a pack share its commits.
    // Large replicas take turns (see WRITE_BYTES_IN_FLIGHT); small ones barely dent the budget.
    const packed = this.#packs(backend, data);
    const giveBackSlot = packed ? undefined : await this.#deps.writeSlots.acquire(1);
    const giveBack = await this.#inFlight.acquire(data.sizeBytes);
    const storedAt = new Date().toISOString();
    let chunkStatus: ChunkStatus;
    let path = key;
    try {
      const elapsed = startTimer();
      let receipt: PutReceipt | void;
      try {
        if (packed) ({ key: path, receipt } = await this.#putPacked(backend, key, data, storedAt));
        else receipt = await this.#put(backend, key, data);
      } catch (error) {
        if (error instanceof ChecksumMismatchError || error instanceof SizeMismatchError) metrics.mismatch(backend.name, 'write');
        if (error instanceof StagedBytesGoneError) {
          // Freed when the chunk ended: another run of this job (the same job handed out again
          // while this one ran, or added again after it finished) may have stored the replica
          // since the record was read, or skipped.
          const now = await catalog.getReplica(data.chunkId, data.replicaId);
          const done = now && (await this.#alreadyStored(now, backend, data));
          if (done) {
            if (limit > 0) await catalog.releaseQuota(backend.name, data.chunkId, data.replicaId);
            return done;
          }
        }
        throw error;
      }
      metrics.wrote(backend.name, elapsed(), data.sizeBytes);

      chunkStatus = await commitReplica(this.#deps, backend, {
        chunkId: data.chunkId, replicaId: data.replicaId, backend: backend.name, path,
        checksum: data.checksum, algorithm: data.algorithm, sizeBytes: data.sizeBytes,
        targetNode: data.targetNode, cloudProvider: data.cloudProvider, taskId: data.taskId,
        storedAt, attempts: attempt, createdAtMs: data.createdAtMs,
      }, receipt);
    } finally {
      giveBack();
      giveBackSlot?.();
    }
    if (existing?.path && existing.path !== path && existing.backend === backend.name) {
      // Written again after it went bad while compressed (or into another pack record): the old object is garbage now.
      await backend.delete(existing.path).catch((error: unknown) => {
        this.#deps.logger.warn({ err: error, chunkId: data.chunkId, replicaId: data.replicaId, path: existing.path }, 'could not remove the replica\'s old object');
      });
    }
    return { stored: toStoredChunk(path, backend.name, data, storedAt), wrote: true, chunkStatus };
  }

  /**
   * The outcome of a run that finds its replica already stored, as this job would store it,
   * with its object there: nothing to write. The chunk's status says whether it ended.
   */
  async #alreadyStored(existing: ReplicaRecord, backend: Backend, data: ReplicaWriteData): Promise<WriteOutcome | undefined> {
    if (existing.status !== 'stored' || existing.checksum !== data.checksum || existing.backend !== backend.name) return undefined;
    const object = await backend.head(existing.path);
    if (object?.sizeBytes !== existing.sizeBytes) return undefined;
    const chunkStatus = (await this.#deps.catalog.getChunk(data.chunkId))?.status ?? 'unknown';
    return { stored: toStoredChunk(existing.path, backend.name, data, existing.storedAt), wrote: false, chunkStatus };
  }

  /** Whether the replica goes into a pack: a backend that keeps packs, and a replica no larger than `packing.max_chunk_bytes`. */
  #packs(backend: Backend, data: ReplicaWriteData): boolean {
    const limit = this.#deps.config.chunkvault.packing.max_chunk_bytes;
    return backend.putPacked !== undefined && limit > 0 && data.sizeBytes <= limit;
  }

  /** Appends the staged bytes to a pack of `backend` (Backend.putPacked); returns the packed record's key. */
  async #putPacked(backend: Backend, key: string, data: ReplicaWriteData, storedAt: string): Promise<{ key: string; receipt: PutReceipt }> {
    const staged = await this.#deps.staging.open(data.stagedKey, data.chunkId, data.stagedOffset, data.sizeBytes);
    const bytes = await smallBodyOf(`staged bytes of chunk ${data.chunkId}`, staged, data.sizeBytes);
    const metadata = { targetNode: data.targetNode, cloudProvider: data.cloudProvider, taskId: data.taskId, createdAtMs: data.createdAtMs, storedAt };
    return backend.putPacked!(key, bytes, { sizeBytes: data.sizeBytes, checksum: data.checksum, algorithm: data.algorithm, chunkId: data.chunkId, replicaId: data.replicaId, metadata });
  }
}

/**
 * Whether this is the first run of a replica's first job: its first attempt, no worker died
 * running it, and the job id of generation 0 that the producer gives a replica it just
 * registered (src/producer/chunk-producer.ts). Such a replica's record was made by that
 * registration, queued with no object: there is nothing stored to find or to replace, so the
 * write skips reading the record first. (A job added again after it finished and was removed
 * is such a run too: its chunk ended, so it finds the staged bytes gone, then the record.) Any
 * other run reads it (a retry, a re-run after a worker died, a later generation whose record
 * may name an object to replace, a job of a flow).
 */
function isFirstRun(job: Job, data: ReplicaWriteData, stalls: number): boolean {
  return job.attemptsMade === 0 && stalls === 0 && !job.parentKey && job.id === replicaJobId(data.chunkId, data.replicaId, 0);
}

function toStoredChunk(path: string, backend: string, data: ReplicaWriteData, storedAt: string): StoredChunk {
  return {
    chunkId: data.chunkId, replicaId: data.replicaId, status: 'stored', storagePath: path, backend,
    checksum: data.checksum, algorithm: data.algorithm, sizeBytes: data.sizeBytes, storedAt,
    nodeId: data.targetNode, cloudProvider: data.cloudProvider, taskId: data.taskId,
  };
}
