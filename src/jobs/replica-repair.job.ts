/**
 * replica.repair: rewrites a replica a read found missing or corrupt, from a good replica.
 * The copy streams the source into the backend's checksum-checked atomic put, so a source
 * that is itself bad is caught (and marked) before anything is stored; the rewritten replica
 * is then read back, its metadata rewritten, and it is recorded stored again.
 * Idempotent: a replica already stored and present is left as it is.
 */
import type { Job } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import type { Config } from '../config/config.schema.js';
import type { Catalog, StoredReplicaInput } from '../catalog/catalog.js';
import type { Backend } from '../backends/backend.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Logger } from '../logging/logger.js';
import type { ChunkRecord, ReplicaRecord } from '../domain/types.js';
import { ChecksumMismatchError, ChunkvaultError, NotFoundError, SizeMismatchError } from '../errors.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { commitReplica } from './replica-commit.js';
import { decoded, withoutCodecSuffix } from '../integrity/codecs.js';
import type { ReplicaRepairData } from './job-data.js';
import type { RepairScheduler } from '../reads/repair-scheduler.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import { UNROUTED_BACKEND } from '../backends/backend-registry.js';
import { startTimer, type ProcessMetrics } from '../metrics/process-metrics.js';
import { jobLogger } from './job-logger.js';
import { parsePackedKey } from '../backends/pack/packed-key.js';
import { smallBodyOf } from '../backends/fs-support.js';
import { packedMetadataOf } from '../catalog/packed-metadata.js';
import type { ByteBudget } from './byte-budget.js';

export interface ReplicaRepairerDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  backends: BackendRegistry;
  repairs: RepairScheduler;
  logger: Logger;
  metrics: ProcessMetrics;
  /** Shared with replica writes (ReplicaWriterDeps.writeSlots): a repair holds one while it runs. */
  writeSlots: ByteBudget;
}

export interface RepairResult {
  chunkId: string;
  replicaId: string;
  repaired: boolean;
  sourceReplicaId?: string;
}

export class ReplicaRepairer {
  readonly #deps: ReplicaRepairerDeps;

  constructor(deps: ReplicaRepairerDeps) {
    this.#deps = deps;
  }

  async handle(job: Job, data: ReplicaRepairData): Promise<RepairResult> {
    const { chunkId, replicaId } = data;
    const { catalog, metrics } = this.#deps;
    const [chunk, replicas] = await Promise.all([catalog.getChunk(chunkId), catalog.listReplicas(chunkId)]);
    const target = replicas.find((r) => r.replicaId === replicaId);
    const backend = target?.backend ?? UNROUTED_BACKEND;
    const log = jobLogger(this.#deps.logger, job, { chunkId, replicaId, backend });
    const giveBackSlot = await this.#deps.writeSlots.acquire(1);
    try {
      const result = await this.#repair(data, chunk, replicas, target, log);
      metrics.repair(backend, result.repaired ? 'repaired' : 'unchanged');
      return result;
    } catch (error) {
      metrics.repair(backend, 'failed');
      log.warn({ err: error, attempt: job.attemptsMade + 1 }, 'repair failed');
      throw error;
    } finally {
      giveBackSlot();
    }
  }

  async #repair(
    { chunkId, replicaId, sourceReplicaId }: ReplicaRepairData,
    chunk: ChunkRecord | undefined,
    replicas: ReplicaRecord[],
    target: ReplicaRecord | undefined,
    log: Logger,
  ): Promise<RepairResult> {
    const { catalog, backends, metrics } = this.#deps;
    if (!chunk || !target) throw new UnrecoverableError(`repair: replica ${replicaId} of chunk ${chunkId} is not in the catalog`);
    const targetBackend = backends.byName(target.backend);
    if (!targetBackend) throw new UnrecoverableError(`repair: backend ${target.backend} of replica ${replicaId} is not configured`);
    if (target.status === 'stored' && (await targetBackend.head(target.path))?.sizeBytes === target.sizeBytes) {
      return { chunkId, replicaId, repaired: false };
    }
    if (target.status !== 'corrupt' && target.status !== 'stored') {
      throw new UnrecoverableError(`repair: replica ${replicaId} of chunk ${chunkId} is ${target.status}, not a stored replica to repair`);
    }
    if (target.status === 'corrupt' && (await this.#intact(targetBackend, target, chunk))) {
      // The bytes were damaged on their way to the reader, not at rest: nothing to rewrite.
      await catalog.recordStored({ ...this.#storedInput(target, chunk.createdAt), codec: target.codec, storedBytes: target.storedBytes, verifiedAtMs: Date.now() });
      log.info({ path: target.path }, 'replica marked corrupt reads back intact; recorded stored again as it is');
      return { chunkId, replicaId, repaired: false };
    }

    const sources = replicas
      .filter((r) => r.status === 'stored' && r.replicaId !== replicaId)
      .sort((a, b) => Number(b.replicaId === sourceReplicaId) - Number(a.replicaId === sourceReplicaId));
    const badSources: string[] = [];
    for (const source of sources) {
      const sourceBackend = backends.byName(source.backend);
      if (!sourceBackend) continue;
      // Rewritten as the chunk's plain bytes at the replica's uncompressed key; compression may
      // come again later. A packed replica's good bytes go into a new record of a pack in the
      // same directory, and the record moves there.
      let targetKey = withoutCodecSuffix(target.path);
      const elapsed = startTimer();
      try {
        const body = decoded(await sourceBackend.get(source.path), source.codec);
        const options = { sizeBytes: chunk.sizeBytes, checksum: chunk.checksum, algorithm: chunk.algorithm };
        if (parsePackedKey(target.path) && targetBackend.putPacked) {
          const bytes = await smallBodyOf(`replica ${source.replicaId} of chunk ${chunkId}`, body, chunk.sizeBytes);
          const metadata = packedMetadataOf(this.#storedInput(target, chunk.createdAt)); // what reindex rebuilds it from
          ({ key: targetKey } = await targetBackend.putPacked(target.path, bytes, { ...options, chunkId, replicaId, metadata }));
        } else {
          await targetBackend.put(targetKey, body, options);
        }
      } catch (error) {
        const wrongBytes = error instanceof ChecksumMismatchError || error instanceof SizeMismatchError || isDecodeError(error);
        if (wrongBytes) metrics.mismatch(source.backend, 'repair');
        if (wrongBytes || error instanceof NotFoundError) {
          // The source is bad too: nothing was written; mark it, repair it later, try the next one.
          const problem = error instanceof NotFoundError ? 'missing' : error instanceof SizeMismatchError ? 'wrong size' : isDecodeError(error) ? `cannot decode ${source.codec}` : 'bytes do not match the chunk checksum';
          await catalog.recordCorrupt(chunkId, source.replicaId, `${problem} (found while copying ${source.path} to repair ${replicaId})`, source.path);
          badSources.push(source.replicaId);
          log.warn({ source: source.replicaId, err: error }, 'repair source is bad; trying the next replica');
          continue;
        }
        throw error;
      }
      metrics.wrote(target.backend, elapsed(), chunk.sizeBytes);
      metrics.read(source.backend, 'repair', chunk.sizeBytes);
      await this.#finish({ ...target, path: targetKey }, chunk.createdAt);
      if (targetKey !== target.path) await targetBackend.delete(target.path); // the bad compressed object, or the bad packed record
      log.info({ source: source.replicaId, path: targetKey }, 'replica repaired');
      // Sources found bad on the way get their own repair, from the replica just made good.
      for (const bad of badSources) await this.#deps.repairs.schedule(chunkId, bad, source.replicaId);
      return { chunkId, replicaId, repaired: true, sourceReplicaId: source.replicaId };
    }
    throw new UnrecoverableError(`repair: no good replica of chunk ${chunkId} to rewrite ${replicaId} from`);
  }

  async #finish(target: ReplicaRecord, chunkCreatedAt: string): Promise<void> {
    await commitReplica(this.#deps, this.#deps.backends.byName(target.backend)!, {
      ...this.#storedInput(target, chunkCreatedAt),
      verifiedAtMs: Date.now(), // just copied through a checksum-checked put and read back
    });
  }

  #storedInput(target: ReplicaRecord, chunkCreatedAt: string): StoredReplicaInput {
    return {
      chunkId: target.chunkId, replicaId: target.replicaId, backend: target.backend, path: target.path,
      checksum: target.checksum, algorithm: target.algorithm, sizeBytes: target.sizeBytes, targetNode: target.targetNode,
      cloudProvider: target.cloudProvider, taskId: target.taskId, storedAt: target.storedAt || new Date().toISOString(),
      attempts: target.attempts, createdAtMs: Date.parse(chunkCreatedAt) || Date.now(),
    };
  }

  /**
   * Whether a replica marked corrupt reads back as its chunk after all (a read met bytes
   * damaged in transit, or a passing error). Missing or wrong at rest: false. A read error
   * that may pass is rethrown, so the job is retried rather than the replica rewritten blind.
   */
  async #intact(backend: Backend, target: ReplicaRecord, chunk: ChunkRecord): Promise<boolean> {
    try {
      const actual = await checksumOfStream(decoded(await backend.get(target.path), target.codec), chunk.algorithm);
      return actual.sizeBytes === chunk.sizeBytes && actual.checksum === chunk.checksum;
    } catch (error) {
      if (error instanceof ChunkvaultError && error.retryable) throw error;
      return false;
    }
  }
}

/** zlib's errors for bytes that are not valid compressed data. */
function isDecodeError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  return code.startsWith('Z_') || code.startsWith('ERR_BROTLI') || code === 'ERR__ERROR_FORMAT_PADDING_1';
}
