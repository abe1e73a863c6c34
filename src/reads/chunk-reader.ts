/**
 * Verified reads. A chunk's stored replicas are tried in turn; each is streamed into one
 * buffer of the recorded size while it is hashed (no second copy, no long event-loop block).
 * A replica that is missing, unreadable or fails its checksum is marked corrupt in the
 * catalog and a repair job is queued to rewrite it from a good replica. Bytes that fail
 * verification are never returned.
 */
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Logger } from '../logging/logger.js';
import type { ChunkRecord, ReplicaRecord } from '../domain/types.js';
import { ChunkCorruptError, NotFoundError, ReplicaMissingError, describeError } from '../errors.js';
import { newHash } from '../integrity/checksum.js';
import { decoded } from '../integrity/codecs.js';
import { idSchema } from '../domain/ids.js';
import { InvalidInputError } from '../errors.js';
import type { RepairScheduler } from './repair-scheduler.js';
import { startTimer, type ProcessMetrics } from '../metrics/process-metrics.js';

export interface ChunkReaderDeps {
  config: Config;
  catalog: Catalog;
  backends: BackendRegistry;
  repairs: RepairScheduler;
  logger: Logger;
  metrics: ProcessMetrics;
}

/** A read: the chunk's bytes and the catalog's record they were checked against (size; checksum when verify_on_read is on). */
export interface ChunkRead {
  chunk: ChunkRecord;
  bytes: Buffer;
}

/** What the catalog records of a chunk: the chunk itself and each of its replicas. */
export interface ChunkRecords {
  chunk: ChunkRecord;
  /** Every replica of the chunk, whatever its status (expired ones too), by replica id. */
  replicas: ReplicaRecord[];
}

/** The replica's bytes are wrong (length, checksum, undecodable), as opposed to missing or unreadable. */
class WrongBytesError extends Error {}

export class ChunkReader {
  readonly #deps: ChunkReaderDeps;

  constructor(deps: ChunkReaderDeps) {
    this.#deps = deps;
  }

  /**
   * The chunk's bytes, from the first good replica. Throws NotFoundError when the chunk is
   * unknown, ChunkCorruptError (listing each replica's problem) when no replica is good.
   */
  async getChunk(chunkId: string): Promise<Buffer> {
    return (await this.read(chunkId)).bytes;
  }

  /**
   * The catalog's records of the chunk and its replicas, or undefined when the catalog does
   * not know the chunk. Reads no replica. Throws InvalidInputError for an invalid id.
   */
  async records(chunkId: string): Promise<ChunkRecords | undefined> {
    assertChunkId(chunkId);
    const { catalog } = this.#deps;
    const [chunk, replicas] = await Promise.all([catalog.getChunk(chunkId), catalog.listReplicas(chunkId)]);
    return chunk ? { chunk, replicas } : undefined;
  }

  /** As getChunk, with the catalog's record of the chunk the bytes were checked against. Throws as getChunk does. */
  async read(chunkId: string): Promise<ChunkRead> {
    assertChunkId(chunkId);
    const { catalog } = this.#deps;
    const chunk = await catalog.getChunk(chunkId);
    if (!chunk) throw new NotFoundError(`chunk ${chunkId} not found`);
    if (chunk.status === 'expired') throw new NotFoundError(`chunk ${chunkId} was deleted by retention`);
    const replicas = await catalog.listReplicas(chunkId);
    const problems: Array<{ replicaId: string; problem: string }> = [];
    const bad: ReplicaRecord[] = [];
    // Replicas retention deleted, before this read or during it (the chunk expires with its last one).
    let expired = false;
    for (const listed of replicas) {
      if (listed.status === 'expired') {
        expired = true;
        continue;
      }
      if (listed.status !== 'stored') {
        problems.push({ replicaId: listed.replicaId, problem: listed.status === 'corrupt' ? `corrupt (${listed.error})` : listed.status });
        continue;
      }
      // At most two looks per replica: maintenance may move (compress) it while it is read.
      let replica: ReplicaRecord | undefined = listed;
      for (let look = 0; replica; look++) {
        try {
          const bytes = await this.#read(chunk, replica);
          for (const broken of bad) await this.#deps.repairs.schedule(chunkId, broken.replicaId, replica.replicaId);
          return { chunk, bytes };
        } catch (error) {
          const problem = describeError(error);
          // Marked only if it is still stored where it was read: a replica that retention
          // expired or compression moved meanwhile is not corrupt, it changed under the read.
          if ((await catalog.recordCorrupt(chunkId, replica.replicaId, problem, replica.path)) > 0) {
            problems.push({ replicaId: replica.replicaId, problem });
            bad.push(replica);
            this.#deps.logger.warn({ chunkId, replicaId: replica.replicaId, backend: replica.backend, path: replica.path, problem }, 'bad replica found on read');
            break;
          }
          const now = await catalog.getReplica(chunkId, replica.replicaId);
          if (now?.status === 'expired') {
            expired = true;
            break;
          }
          if (now?.status === 'stored' && now.path !== replica.path && look === 0) {
            replica = now;
            continue;
          }
          problems.push({ replicaId: replica.replicaId, problem: now?.status === 'stored' ? problem : `${now?.status ?? 'no record'} (${problem})` });
          break;
        }
      }
    }
    if (problems.length === 0 && expired) throw new NotFoundError(`chunk ${chunkId} was deleted by retention`);
    // No good replica met: each bad one still gets a repair, which records it stored again if
    // it reads back intact (its bytes were damaged on the way here, not at rest), and else
    // fails for want of a good source, as it must.
    for (const broken of bad) await this.#deps.repairs.schedule(chunkId, broken.replicaId);
    throw new ChunkCorruptError(chunkId, problems);
  }

  async #read(chunk: ChunkRecord, replica: ReplicaRecord): Promise<Buffer> {
    const backend = this.#deps.backends.byName(replica.backend);
    if (!backend) throw new Error(`backend ${replica.backend} is not configured`);
    const { metrics, config } = this.#deps;
    const elapsed = startTimer();
    const stored = await backend.get(replica.path).catch((error: unknown) => {
      throw error instanceof NotFoundError ? new ReplicaMissingError({ cause: error }) : error;
    });
    const stream = decoded(stored, replica.codec);
    const buffer = Buffer.allocUnsafe(chunk.sizeBytes);
    const hash = newHash(chunk.algorithm);
    let offset = 0;
    try {
      for await (const piece of stream) {
        const bytes = piece as Buffer;
        if (offset + bytes.byteLength > chunk.sizeBytes) throw new WrongBytesError(`corrupt: longer than the recorded ${chunk.sizeBytes} bytes`);
        bytes.copy(buffer, offset);
        hash.update(bytes);
        offset += bytes.byteLength;
      }
    } catch (error) {
      metrics.read(replica.backend, 'read', offset);
      const wrong = error instanceof WrongBytesError ? error : replica.codec ? new WrongBytesError(`corrupt: cannot decode ${replica.codec} (${(error as Error).message})`, { cause: error }) : undefined;
      if (wrong) metrics.mismatch(replica.backend, 'read');
      throw wrong ?? error;
    } finally {
      stream.destroy();
      stored.destroy();
    }
    const verify = config.storage.integrity.verify_on_read;
    if (verify) metrics.verified(replica.backend, 'read', elapsed(), offset);
    else metrics.read(replica.backend, 'read', offset);
    let problem: string | undefined;
    if (offset !== chunk.sizeBytes) problem = `corrupt: ${offset} bytes, recorded ${chunk.sizeBytes}`;
    else if (verify) {
      const actual = hash.digest('hex');
      if (actual !== chunk.checksum) problem = `corrupt: checksum ${actual}, expected ${chunk.checksum}`;
    }
    if (problem) {
      metrics.mismatch(replica.backend, 'read');
      throw new WrongBytesError(problem);
    }
    return buffer;
  }
}

function assertChunkId(chunkId: string): void {
  const valid = idSchema.safeParse(chunkId);
  if (!valid.success) throw new InvalidInputError(`chunk id ${JSON.stringify(chunkId)}: ${valid.error.issues[0]?.message}`);
}
