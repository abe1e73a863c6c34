/**
 * The Redis side of checkpoints: the ledger of chunks not yet in a checkpoint, the index of
 * sealed checkpoints, and the lock that lets one process at a time seal. The manifests
 * themselves live on the backend (see checkpoints/checkpoint-service.ts).
 */
import type { RedisClient } from '../redis/redis-endpoint.js';
import { CatalogKeys } from './catalog-keys.js';
import { CatalogScripts, integerReply, oneOf } from './catalog-scripts.js';
import { RedisLock } from '../redis/redis-lock.js';

export interface CheckpointEntry {
  id: string;
  sequence: number;
  createdAt: string;
  previousId: string;
  chunkCount: number;
  totalBytes: number;
  checksum: string;
  /** Storage key of the manifest on the default backend. */
  key: string;
  fromLedgerSeq: number;
  toLedgerSeq: number;
}

export interface LedgerState {
  /** Chunks ever entered in the ledger. */
  ledgerSeq: number;
  /** Ledger sequence the newest checkpoint covers up to (0: none yet). */
  headToSeq: number;
  headId: string;
  headSequence: number;
}

export class CheckpointIndex {
  readonly #redis: RedisClient;
  readonly #scripts: CatalogScripts;
  readonly #keys: CatalogKeys;
  /** One process seals at a time; commit-checkpoint.lua checks this lock's token. */
  readonly lock: RedisLock;

  constructor(redis: RedisClient, keyPrefix: string, lockTtlMs = 10_000) {
    this.#redis = redis;
    this.#scripts = new CatalogScripts(redis);
    this.#keys = new CatalogKeys(keyPrefix);
    this.lock = new RedisLock(redis, this.#keys.checkpointLock, lockTtlMs);
  }

  async state(): Promise<LedgerState> {
    const [seq, head] = await Promise.all([this.#redis.get(this.#keys.ledgerSeq), this.#redis.hgetall(this.#keys.checkpointHead)]);
    return {
      ledgerSeq: Number(seq ?? 0),
      headToSeq: Number(head.toLedgerSeq ?? 0),
      headId: head.id ?? '',
      headSequence: Number(head.sequence ?? 0),
    };
  }

  /** Chunk ids with ledger sequence in (fromExclusive, toInclusive], in ledger order. */
  async ledgerRange(fromExclusive: number, toInclusive: number): Promise<string[]> {
    return this.#redis.zrangebyscore(this.#keys.ledger, `(${fromExclusive}`, String(toInclusive));
  }

  /** Records a sealed checkpoint if `token` still holds the lock and the head is still `expectedHeadToSeq`. */
  async commit(token: string, expectedHeadToSeq: number, entry: CheckpointEntry): Promise<'ok' | 'lost-lock' | 'moved'> {
    const k = this.#keys;
    const reply = await this.#scripts.run('cvCommitCheckpoint', [k.checkpointLock, k.checkpointHead, k.checkpoint(entry.id), k.checkpoints, k.ledger], {
      lockToken: token, expectedHeadToSeq, ...entry,
    });
    return oneOf('cvCommitCheckpoint', reply, ['ok', 'lost-lock', 'moved'] as const);
  }

  /** Puts a checkpoint read back from its manifest into the index, with its chunks' ledger places (reindex). */
  async restore(entry: CheckpointEntry, chunks: ReadonlyArray<{ chunkId: string; checksum: string; algorithm: string; sizeBytes: number; createdAtMs: number }>): Promise<void> {
    const k = this.#keys;
    const reply = await this.#scripts.run('cvRestoreCheckpoint', [k.checkpoint(entry.id), k.checkpoints, k.checkpointHead, k.ledgerSeq, k.ledger, k.chunks, k.chunkBase], {
      ...entry,
      chunks: chunks.map((c) => ({ chunkId: c.chunkId, checksum: c.checksum, algorithm: c.algorithm, sizeBytes: c.sizeBytes, createdAtMs: c.createdAtMs, createdAt: new Date(c.createdAtMs).toISOString() })),
    });
    oneOf('cvRestoreCheckpoint', reply, ['ok'] as const);
  }

  /**
   * Moves ledger entries the restored head already covers to the end of the ledger, so they
   * are sealed (reindex, after `restore`). Returns how many were moved.
   */
  async renumberStranded(): Promise<number> {
    const k = this.#keys;
    return integerReply('cvRenumberStrandedLedger', await this.#scripts.run('cvRenumberStrandedLedger', [k.checkpointHead, k.ledger, k.ledgerSeq, k.chunkBase]));
  }

  async count(): Promise<number> {
    return this.#redis.zcard(this.#keys.checkpoints);
  }

  /** Every checkpoint, oldest first. */
  async list(): Promise<CheckpointEntry[]> {
    const ids = await this.#redis.zrange(this.#keys.checkpoints, '0', '-1');
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.#keys.checkpoint(id));
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, raw]) => {
      if (error) throw error;
      return toEntry(raw as Record<string, string>);
    });
  }

  async get(id: string): Promise<CheckpointEntry | undefined> {
    const raw = await this.#redis.hgetall(this.#keys.checkpoint(id));
    return raw.id ? toEntry(raw) : undefined;
  }
}

function toEntry(raw: Record<string, string>): CheckpointEntry {
  return {
    id: raw.id ?? '',
    sequence: Number(raw.sequence ?? 0),
    createdAt: raw.createdAt ?? '',
    previousId: raw.previousId ?? '',
    chunkCount: Number(raw.chunkCount ?? 0),
    totalBytes: Number(raw.totalBytes ?? 0),
    checksum: raw.checksum ?? '',
    key: raw.key ?? '',
    fromLedgerSeq: Number(raw.fromLedgerSeq ?? 0),
    toLedgerSeq: Number(raw.toLedgerSeq ?? 0),
  };
}
