/**
 * The catalog's record reads: one chunk or replica, many replicas in one round trip, and what
 * a checkpoint manifest lists. They read the hashes and sets the catalog scripts write and
 * change nothing, so they live apart from Catalog's state changes; Catalog delegates to them.
 */
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { ChunkRecord, ReplicaRecord, ReplicaStatus } from '../domain/types.js';
import type { CatalogKeys } from './catalog-keys.js';
import { pipelineValues, toChunkRecord, toReplicaRecord, type ManifestReplica } from './catalog-records.js';

/** Reads catalog records; Catalog's read methods delegate to it. */
export class CatalogReader {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: CatalogKeys,
  ) {}

  /** The record of one replica; undefined when there is none. */
  async getReplica(chunkId: string, replicaId: string): Promise<ReplicaRecord | undefined> {
    const raw = await this.redis.hgetall(this.keys.replica(chunkId, replicaId));
    return raw.status ? toReplicaRecord(raw) : undefined;
  }

  /** The record of one chunk; undefined when there is none. */
  async getChunk(chunkId: string): Promise<ChunkRecord | undefined> {
    return toChunkRecord(chunkId, await this.redis.hgetall(this.keys.chunk(chunkId)));
  }

  /**
   * What a checkpoint manifest lists of each of `chunkIds`, in order: the chunk record
   * (undefined when there is none) and where each of its replicas is, by replica id. Two
   * round trips per thousand chunks, reading only the fields a manifest holds.
   */
  async manifestEntries(chunkIds: readonly string[]): Promise<Array<{ chunk: ChunkRecord | undefined; replicas: ManifestReplica[] }>> {
    const entries: Array<{ chunk: ChunkRecord | undefined; replicas: ManifestReplica[] }> = [];
    for (let i = 0; i < chunkIds.length; i += 1000) entries.push(...(await this.#manifestEntries(chunkIds.slice(i, i + 1000))));
    return entries;
  }

  async #manifestEntries(chunkIds: readonly string[]): Promise<Array<{ chunk: ChunkRecord | undefined; replicas: ManifestReplica[] }>> {
    const first = this.redis.pipeline();
    for (const chunkId of chunkIds) first.hgetall(this.keys.chunk(chunkId)).smembers(this.keys.chunkReplicas(chunkId));
    const chunkReplies = pipelineValues(await first.exec());
    const chunks = chunkIds.map((chunkId, i) => ({
      chunk: toChunkRecord(chunkId, chunkReplies[i * 2] as Record<string, string>),
      replicaIds: (chunkReplies[i * 2 + 1] as string[]).sort(),
    }));
    const second = this.redis.pipeline();
    for (const [i, { replicaIds }] of chunks.entries()) {
      for (const replicaId of replicaIds) second.hmget(this.keys.replica(chunkIds[i]!, replicaId), 'backend', 'path', 'status');
    }
    const replicaReplies = pipelineValues(await second.exec());
    let next = 0;
    return chunks.map(({ chunk, replicaIds }) => ({
      chunk,
      replicas: replicaIds.flatMap((replicaId) => {
        const [backend, path, status] = replicaReplies[next++] as Array<string | null>;
        return status ? [{ replicaId, backend: backend ?? '', path: path ?? '', status: status as ReplicaStatus }] : [];
      }),
    }));
  }

  /** Every replica record of a chunk. */
  async listReplicas(chunkId: string): Promise<ReplicaRecord[]> {
    const ids = await this.redis.smembers(this.keys.chunkReplicas(chunkId));
    return (await this.getReplicas(ids.sort().map((replicaId) => ({ chunkId, replicaId })))).filter(
      (r): r is ReplicaRecord => r !== undefined,
    );
  }

  /** Records of many replicas in one round trip; undefined where there is none. */
  async getReplicas(refs: ReadonlyArray<{ chunkId: string; replicaId: string }>): Promise<Array<ReplicaRecord | undefined>> {
    if (refs.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const ref of refs) pipeline.hgetall(this.keys.replica(ref.chunkId, ref.replicaId));
    return pipelineValues(await pipeline.exec()).map((raw) => {
      const fields = raw as Record<string, string>;
      return fields.status ? toReplicaRecord(fields) : undefined;
    });
  }

  /** Statuses of many replicas in one round trip. */
  async replicaStatuses(refs: ReadonlyArray<{ chunkId: string; replicaId: string }>): Promise<Array<ReplicaStatus | undefined>> {
    if (refs.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const ref of refs) pipeline.hget(this.keys.replica(ref.chunkId, ref.replicaId), 'status');
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, status]) => {
      if (error) throw error;
      return (status ?? undefined) as ReplicaStatus | undefined;
    });
  }
}
