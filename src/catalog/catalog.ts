/**
 * The catalog: one record per replica and per chunk, indexed in Redis for lookups. The
 * backend (data plus metadata: sidecars or a local journal) is the source of truth; `reindex` rebuilds this
 * index from it. All state changes go through the scripts of catalog-scripts.ts; every key
 * comes from catalog-keys.ts; the plain record reads are CatalogReader's (catalog-reader.ts).
 */
import type { RedisClient } from '../redis/redis-endpoint.js';
import { ReplicationBarrier } from '../redis/replication-barrier.js';
import type { ChunkRecord, ChunkStatus, ReplicaRecord, ReplicaStatus } from '../domain/types.js';
import { CatalogKeys } from './catalog-keys.js';
import { CatalogScripts, UnexpectedReplyError, chunkStatusOr, chunkStatusReply, integerReply, oneOf } from './catalog-scripts.js';
import { CallBatcher } from './call-batcher.js';
import { CatalogReader } from './catalog-reader.js';
import { countersOf, registrationOf, type CatalogCounters, type ChunkRegistration, type ManifestReplica, type RegistrationResult, type StoredReplicaInput } from './catalog-records.js';
import { MINUTE_TTL_SECONDS, MinuteSeriesReader, epochMinute, type MinuteSeries } from './minute-series.js';

export type { CatalogCounters, ChunkRegistration, RegistrationResult, ReplicaRequest, StoredReplicaInput } from './catalog-records.js';

/** Replicas one cvRecordStored call settles at most (five keys each), and chunks one cvRegisterChunk call registers (three each). */
const STORED_PER_CALL = 64;
const REGISTERED_PER_CALL = 64;

export class Catalog {
  readonly #redis: RedisClient;
  readonly #scripts: CatalogScripts;
  readonly #keys: CatalogKeys;
  readonly #replication: ReplicationBarrier;
  readonly #series: MinuteSeriesReader;
  readonly #reader: CatalogReader;
  readonly #registered = new CallBatcher<ChunkRegistration, RegistrationResult>((batch) => this.#registerChunkBatch(batch), REGISTERED_PER_CALL);
  readonly #stored = new CallBatcher<StoredReplicaInput, ChunkStatus>((batch) => this.#recordStoredBatch(batch), STORED_PER_CALL);

  /**
   * `keyPrefix` is the hash-tagged prefix shared by all chunkvault keys, e.g. "{chunkvault}".
   * `replication`: how many Redis replicas must hold a stored replica's record before
   * recordStored returns (none by default).
   */
  constructor(redis: RedisClient, keyPrefix: string, replication: { minReplicas: number; timeoutMs: number } = { minReplicas: 0, timeoutMs: 0 }) {
    this.#redis = redis;
    this.#scripts = new CatalogScripts(redis);
    this.#keys = new CatalogKeys(keyPrefix);
    this.#replication = new ReplicationBarrier(redis, { ...replication, fenceKey: this.#keys.replicationFence });
    this.#series = new MinuteSeriesReader(redis, this.#keys);
    this.#reader = new CatalogReader(redis, this.#keys);
  }

  /**
   * Records a chunk and the replicas asked for, and says which need a job. Throws
   * ConflictError when the chunk id is already recorded with another checksum.
   */
  registerChunk(chunk: ChunkRegistration): Promise<RegistrationResult> {
    return this.#registered.call(chunk);
  }

  /** One cvRegisterChunk call for a batch of chunks (see CallBatcher); a conflict fails its own chunk alone. */
  async #registerChunkBatch(batch: ChunkRegistration[]): Promise<Array<RegistrationResult | Error>> {
    const keys = this.#keys.chunkScriptKeys(batch[0]!.chunkId);
    for (const chunk of batch) keys.push(this.#keys.chunk(chunk.chunkId), this.#keys.chunkReplicas(chunk.chunkId), this.#keys.replicaBase(chunk.chunkId));
    const replies = await this.#scripts.run('cvRegisterChunk', keys, {
      chunks: batch.map((chunk) => ({
        chunkId: chunk.chunkId, checksum: chunk.checksum, algorithm: chunk.algorithm, sizeBytes: chunk.sizeBytes,
        createdAt: new Date(chunk.createdAtMs).toISOString(), createdAtMs: chunk.createdAtMs,
        replicas: chunk.replicas.map((r) => ({ replicaId: r.replicaId, backend: r.backend, targetNode: r.targetNode, cloudProvider: r.cloudProvider, taskId: r.taskId })),
      })),
    });
    if (!Array.isArray(replies) || replies.length !== batch.length) throw new UnexpectedReplyError('cvRegisterChunk', replies);
    return batch.map((chunk, i) => registrationOf(chunk, replies[i]));
  }

  /**
   * Marks a replica stored; idempotent. Returns the chunk's status afterwards, once the Redis
   * replicas min_replicas_acked asks for hold the record (ReplicationLagError, retryable, when
   * they do not in time: the record stands on the master, but is not yet safe from a failover).
   * Calls made while one runs go to Redis together as the next script call (group commit).
   */
  recordStored(r: StoredReplicaInput): Promise<ChunkStatus> {
    return this.#stored.call(r);
  }

  /** One cvRecordStored call for a batch of replicas (see CallBatcher), then one replication fence for them all. */
  async #recordStoredBatch(batch: StoredReplicaInput[]): Promise<Array<ChunkStatus | Error>> {
    const keys = [...this.#keys.chunkScriptKeys(batch[0]!.chunkId), this.#keys.verified, this.#thisMinute()];
    for (const r of batch) keys.push(this.#keys.chunk(r.chunkId), this.#keys.chunkReplicas(r.chunkId), this.#keys.replicaBase(r.chunkId), this.#keys.replica(r.chunkId, r.replicaId), this.#keys.reserved(r.backend));
    const reply = await this.#scripts.run('cvRecordStored', keys, {
      minuteTtl: MINUTE_TTL_SECONDS,
      replicas: batch.map((r) => ({
        chunkId: r.chunkId, replicaId: r.replicaId, backend: r.backend, path: r.path, checksum: r.checksum, algorithm: r.algorithm,
        sizeBytes: r.sizeBytes, targetNode: r.targetNode, cloudProvider: r.cloudProvider, taskId: r.taskId, storedAt: r.storedAt,
        attempts: r.attempts, createdAt: new Date(r.createdAtMs).toISOString(), createdAtMs: r.createdAtMs,
        verifiedAtMs: r.verifiedAtMs ?? (Date.parse(r.storedAt) || Date.now()), codec: r.codec ?? '', storedBytes: r.storedBytes ?? r.sizeBytes,
        rebuilt: r.rebuilt === true,
      })),
    });
    if (!Array.isArray(reply) || reply.length !== batch.length) throw new UnexpectedReplyError('cvRecordStored', reply);
    const statuses = reply.map((status) => chunkStatusReply('cvRecordStored', status));
    await this.#replication.confirm();
    return statuses;
  }

  /**
   * Resolves once the Redis replicas min_replicas_acked asks for hold everything the master
   * has applied so far, whichever process wrote it (a replication fence); throws
   * ReplicationLagError when they do not in time. At once when none are asked for.
   */
  confirmReplicated(): Promise<void> {
    return this.#replication.confirm();
  }

  /**
   * As confirmReplicated, for keys another connection wrote (queued jobs): also checks that each
   * of `keys` is on the master the fence reaches, since that connection may have written them
   * to a master demoted since; throws WritesLostError (retryable: write them again) when one is
   * not there.
   */
  confirmHeld(keys: readonly string[]): Promise<void> {
    return this.#replication.confirmHeld(keys);
  }

  /** Points a stored replica at its compressed object if it is still at `expectedPath`. */
  async recordCompressed(chunkId: string, replicaId: string, expectedPath: string, newPath: string, codec: string, storedBytes: number): Promise<'ok' | 'skip'> {
    const reply = await this.#scripts.run('cvRecordCompressed', [this.#keys.replica(chunkId, replicaId), this.#keys.stats], { expectedPath, newPath, codec, storedBytes });
    return oneOf('cvRecordCompressed', reply, ['ok', 'skip'] as const);
  }

  /** Points a replica stored at `expectedPath` at `newPath` (the same bytes, moved by compaction); 'skip' when it is no longer stored there. */
  async moveReplica(chunkId: string, replicaId: string, expectedPath: string, newPath: string): Promise<'ok' | 'skip'> {
    const reply = await this.#scripts.run('cvMoveReplica', [this.#keys.replica(chunkId, replicaId)], { expectedPath, newPath });
    return oneOf('cvMoveReplica', reply, ['ok', 'skip'] as const);
  }

  /** Notes which chunks a staging segment holds; called once it is durable, before their jobs are queued. */
  async trackSegment(segment: string, chunkIds: readonly string[]): Promise<void> {
    await this.#redis.sadd(this.#keys.staged(segment), ...chunkIds);
  }

  /** Notes that a chunk of `segment` ended; true when it was the last one (free the segment now). */
  async segmentChunkEnded(segment: string, chunkId: string): Promise<boolean> {
    return integerReply('cvSegmentChunkEnded', await this.#scripts.run('cvSegmentChunkEnded', [this.#keys.staged(segment)], { chunkId })) === 1;
  }

  /** The chunks of `segment` that have not ended (none when it is not tracked). */
  async segmentChunks(segment: string): Promise<string[]> {
    return this.#redis.smembers(this.#keys.staged(segment));
  }

  /** Stops tracking a segment (its file was freed by the staging sweep). */
  async forgetSegment(segment: string): Promise<void> {
    await this.#redis.del(this.#keys.staged(segment));
  }

  /** Compressions between writing the compressed object and removing the original (crash recovery). */
  async compressionsInFlight(): Promise<string[]> {
    return this.#redis.smembers(this.#keys.compressing);
  }

  async beginCompression(member: string): Promise<void> {
    await this.#redis.sadd(this.#keys.compressing, member);
  }

  async endCompression(member: string): Promise<void> {
    await this.#redis.srem(this.#keys.compressing, member);
  }

  /** Retention deletions between recording a replica expired and removing its objects (crash recovery). */
  async deletionsInFlight(): Promise<string[]> {
    return this.#redis.smembers(this.#keys.deleting);
  }

  async beginDeletion(member: string): Promise<void> {
    await this.#redis.sadd(this.#keys.deleting, member);
  }

  async endDeletion(member: string): Promise<void> {
    await this.#redis.srem(this.#keys.deleting, member);
  }

  /** Records a stored replica as deleted by retention; idempotent. Returns the chunk's status or 'skip'. */
  async recordExpired(chunkId: string, replicaId: string, expiredAt: string): Promise<ChunkStatus | 'skip'> {
    const reply = await this.#scripts.run('cvRecordExpired', [...this.#keys.replicaScriptKeys(chunkId, replicaId), this.#keys.verified], { chunkId, replicaId, expiredAt });
    return chunkStatusOr('cvRecordExpired', reply, 'skip');
  }

  /** Chunk ids first queued before `beforeMs`, oldest first, `count` from `offset`. */
  async chunksCreatedBefore(beforeMs: number, offset: number, count: number): Promise<string[]> {
    return this.#redis.zrangebyscore(this.#keys.chunks, '-inf', `(${beforeMs}`, 'LIMIT', offset, count);
  }

  /** The `count` stored replicas verified longest ago, with when (ms). */
  async leastRecentlyVerified(count: number): Promise<Array<{ chunkId: string; replicaId: string; verifiedAtMs: number }>> {
    const flat = await this.#redis.zrange(this.#keys.verified, '0', String(count - 1), 'WITHSCORES');
    const out: Array<{ chunkId: string; replicaId: string; verifiedAtMs: number }> = [];
    for (let i = 0; i < flat.length; i += 2) {
      const [chunkId, replicaId] = flat[i]!.split(':') as [string, string];
      out.push({ chunkId, replicaId, verifiedAtMs: Number(flat[i + 1]) });
    }
    return out;
  }

  /** Notes that a stored replica was just read back and found intact. */
  async markVerified(chunkId: string, replicaId: string, atMs: number): Promise<void> {
    await this.#redis.zadd(this.#keys.verified, 'XX', atMs, `${chunkId}:${replicaId}`);
  }

  /** When the least recently verified stored replica was last verified (ms), or undefined when none is stored. */
  async oldestVerification(): Promise<number | undefined> {
    const [, score] = await this.#redis.zrange(this.#keys.verified, '0', '0', 'WITHSCORES');
    return score === undefined ? undefined : Number(score);
  }

  /** Marks a replica failed for good unless it is stored; idempotent. */
  async recordFailed(chunkId: string, replicaId: string, backend: string, error: string, attempts: number): Promise<ChunkStatus | 'unknown'> {
    const reply = await this.#scripts.run('cvRecordFailed', [...this.#keys.replicaScriptKeys(chunkId, replicaId), this.#keys.reserved(backend), this.#thisMinute()], {
      chunkId, replicaId, backend, error, attempts, minuteTtl: MINUTE_TTL_SECONDS,
    });
    return chunkStatusOr('cvRecordFailed', reply, 'unknown');
  }

  /**
   * Marks a stored replica corrupt (missing, unreadable, wrong bytes) with the reason.
   * Returns its corruption number (the same while it stays corrupt), or 0 when the replica
   * was not recorded as stored (nothing to mark), or, given `expectedPath` (where the bad
   * object was read), when the replica has moved since (compressed meanwhile).
   */
  async recordCorrupt(chunkId: string, replicaId: string, reason: string, expectedPath = ''): Promise<number> {
    const reply = await this.#scripts.run('cvRecordCorrupt', [...this.#keys.replicaScriptKeys(chunkId, replicaId), this.#keys.verified, this.#thisMinute()], {
      chunkId, replicaId, reason, expectedPath, minuteTtl: MINUTE_TTL_SECONDS,
    });
    return integerReply('cvRecordCorrupt', reply);
  }

  /** Notes a failed attempt that will be retried (attempt count and last error). */
  async recordAttempt(chunkId: string, replicaId: string, attempts: number, error: string): Promise<void> {
    const key = this.#keys.replica(chunkId, replicaId);
    // Only touch records that exist and are not final: a late duplicate run must not reopen them.
    const status = await this.#redis.hget(key, 'status');
    if (status === 'queued') await this.#redis.hset(key, 'attempts', attempts, 'error', error);
  }

  /**
   * Reserves `bytes` of the backend's quota for one replica's write (idempotent per replica).
   * Returns the bytes already used when the write would pass `limitBytes`, else undefined.
   */
  async reserveQuota(backend: string, chunkId: string, replicaId: string, bytes: number, limitBytes: number): Promise<number | undefined> {
    const reply = await this.#scripts.run('cvReserveQuota', [this.#keys.reserved(backend), this.#keys.stats], { backend, member: `${chunkId}:${replicaId}`, bytes, limitBytes });
    if (!Array.isArray(reply)) throw new UnexpectedReplyError('cvReserveQuota', reply);
    if (reply[0] === 1 && reply.length === 1) return undefined;
    if (reply[0] === 0 && reply.length === 2) return integerReply('cvReserveQuota', reply[1]);
    throw new UnexpectedReplyError('cvReserveQuota', reply);
  }

  /** Frees the quota `reserveQuota` reserved for one replica's write, if it still holds it (the write wrote nothing). */
  async releaseQuota(backend: string, chunkId: string, replicaId: string): Promise<void> {
    await this.#scripts.run('cvReleaseQuota', [this.#keys.reserved(backend), this.#keys.stats], { backend, member: `${chunkId}:${replicaId}` });
  }

  /** The record of one replica; undefined when there is none. */
  getReplica(chunkId: string, replicaId: string): Promise<ReplicaRecord | undefined> {
    return this.#reader.getReplica(chunkId, replicaId);
  }

  /** The record of one chunk; undefined when there is none. */
  getChunk(chunkId: string): Promise<ChunkRecord | undefined> {
    return this.#reader.getChunk(chunkId);
  }

  /** What a checkpoint manifest lists of each of `chunkIds`, in order (see CatalogReader.manifestEntries). */
  manifestEntries(chunkIds: readonly string[]): Promise<Array<{ chunk: ChunkRecord | undefined; replicas: ManifestReplica[] }>> {
    return this.#reader.manifestEntries(chunkIds);
  }

  /** Every replica record of a chunk. */
  listReplicas(chunkId: string): Promise<ReplicaRecord[]> {
    return this.#reader.listReplicas(chunkId);
  }

  /** Records of many replicas in one round trip; undefined where there is none. */
  getReplicas(refs: ReadonlyArray<{ chunkId: string; replicaId: string }>): Promise<Array<ReplicaRecord | undefined>> {
    return this.#reader.getReplicas(refs);
  }

  /** Statuses of many replicas in one round trip. */
  replicaStatuses(refs: ReadonlyArray<{ chunkId: string; replicaId: string }>): Promise<Array<ReplicaStatus | undefined>> {
    return this.#reader.replicaStatuses(refs);
  }

  /** The per-minute series (minute-series.ts): the last `minutes` minutes up to now. */
  minuteSeries(minutes: number): Promise<MinuteSeries> {
    return this.#series.read(minutes);
  }

  /** The series' hash of the current minute: the scripts that count an event add to it. */
  #thisMinute(): string {
    return this.#keys.minute(epochMinute(Date.now()));
  }

  async counters(): Promise<CatalogCounters> {
    return countersOf(await this.#redis.hgetall(this.#keys.stats));
  }
}
