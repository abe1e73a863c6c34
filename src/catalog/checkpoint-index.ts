/**
 * The Redis side of checkpoints: the ledger of chunks not yet in a checkpoint, the index of
 * sealed checkpoints, and the lock that lets one process at a time seal. The manifests
 * themselves live on the backend (see checkpoints/checkpoint-service.ts).
 */
import type { Redis } from 'ioredis';
import { COMMIT_CHECKPOINT, RENUMBER_STRANDED_LEDGER, RESTORE_CHECKPOINT } from './catalog.scripts.js';
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

type ScriptedRedis = Redis & {
  cvCommitCheckpoint(...args: Array<string | number>): Promise<string>;
  cvRestoreCheckpoint(...args: Array<string | number>): Promise<string>;
  cvRenumberStrandedLedger(prefix: string): Promise<number>;
};

export class CheckpointIndex {
  readonly #redis: ScriptedRedis;
  readonly #p: string;
  /** One process seals at a time; COMMIT_CHECKPOINT checks this lock's token. */
  readonly lock: RedisLock;

  constructor(redis: Redis, keyPrefix: string, lockTtlMs = 10_000) {
    this.#p = keyPrefix;
    this.lock = new RedisLock(redis, `${keyPrefix}:checkpoint:lock`, lockTtlMs);
    const scripted = redis as ScriptedRedis;
    if (typeof scripted.cvCommitCheckpoint !== 'function') {
      redis.defineCommand('cvCommitCheckpoint', { numberOfKeys: 0, lua: COMMIT_CHECKPOINT });
      redis.defineCommand('cvRestoreCheckpoint', { numberOfKeys: 0, lua: RESTORE_CHECKPOINT });
      redis.defineCommand('cvRenumberStrandedLedger', { numberOfKeys: 0, lua: RENUMBER_STRANDED_LEDGER });
    }
    this.#redis = scripted;
  }

  async state(): Promise<LedgerState> {
    const [seq, head] = await Promise.all([this.#redis.get(`${this.#p}:ledger:seq`), this.#redis.hgetall(`${this.#p}:checkpoint:head`)]);
    return {
      ledgerSeq: Number(seq ?? 0),
      headToSeq: Number(head.toLedgerSeq ?? 0),
      headId: head.id ?? '',
      headSequence: Number(head.sequence ?? 0),
    };
  }

  /** Chunk ids with ledger sequence in (fromExclusive, toInclusive], in ledger order. */
  async ledgerRange(fromExclusive: number, toInclusive: number): Promise<string[]> {
    return this.#redis.zrangebyscore(`${this.#p}:ledger`, `(${fromExclusive}`, String(toInclusive));
  }

  /** Records a sealed checkpoint if `token` still holds the lock and the head is still `expectedHeadToSeq`. */
  async commit(token: string, expectedHeadToSeq: number, entry: CheckpointEntry): Promise<'ok' | 'lost-lock' | 'moved'> {
    return (await this.#redis.cvCommitCheckpoint(
      this.#p, token, String(expectedHeadToSeq), entry.toLedgerSeq, entry.id, entry.sequence, entry.createdAt,
      entry.previousId, entry.chunkCount, entry.totalBytes, entry.checksum, entry.key, entry.fromLedgerSeq,
    )) as 'ok' | 'lost-lock' | 'moved';
  }

  /** Puts a checkpoint read back from its manifest into the index, with its chunks' ledger places (reindex). */
  async restore(entry: CheckpointEntry, chunks: ReadonlyArray<{ chunkId: string; checksum: string; algorithm: string; sizeBytes: number; createdAtMs: number }>): Promise<void> {
    const args: Array<string | number> = [
      this.#p, entry.id, entry.sequence, entry.createdAt, entry.previousId, entry.chunkCount, entry.totalBytes,
      entry.checksum, entry.key, entry.fromLedgerSeq, entry.toLedgerSeq, chunks.length,
    ];
    for (const c of chunks) args.push(c.chunkId, c.checksum, c.algorithm, c.sizeBytes, c.createdAtMs, new Date(c.createdAtMs).toISOString());
    await this.#redis.cvRestoreCheckpoint(...args);
  }

  /**
   * Moves ledger entries the restored head already covers to the end of the ledger, so they
   * are sealed (reindex, after `restore`). Returns how many were moved.
   */
  async renumberStranded(): Promise<number> {
    return this.#redis.cvRenumberStrandedLedger(this.#p);
  }

  async count(): Promise<number> {
    return this.#redis.zcard(`${this.#p}:checkpoints`);
  }

  /** Every checkpoint, oldest first. */
  async list(): Promise<CheckpointEntry[]> {
    const ids = await this.#redis.zrange(`${this.#p}:checkpoints`, '0', '-1');
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hgetall(`${this.#p}:checkpoint:${id}`);
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, raw]) => {
      if (error) throw error;
      return toEntry(raw as Record<string, string>);
    });
  }

  async get(id: string): Promise<CheckpointEntry | undefined> {
    const raw = await this.#redis.hgetall(`${this.#p}:checkpoint:${id}`);
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
