/**
 * What `ChunkProducer.store` returns: the replicas it took on, and a way to wait for their
 * outcome. Outcomes are read from the catalog (the record of truth), never from BullMQ's
 * best-effort event stream.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog } from '../catalog/catalog.js';
import { retryAcrossReconnects } from '../redis/redis-connection.js';
import type { ReplicaRecord, ReplicaStatus, StoredChunk } from '../domain/types.js';

export interface ReplicaRef {
  chunkId: string;
  replicaId: string;
}

/** Replica statuses read per poll at most. */
const POLL_WINDOW = 256;
/** Statuses after which a replica's outcome no longer changes without a new store(). */
const FINAL_STATUSES: ReadonlySet<ReplicaStatus> = new Set(['stored', 'failed', 'expired']);

export interface WaitOptions {
  /** How often the catalog is polled; default 100 ms. */
  pollIntervalMs?: number;
  /** Give up after this long (rejects naming what is outstanding); default: wait indefinitely. */
  timeoutMs?: number;
  /** Called after each poll with the replicas that have ended so far. */
  onProgress?: (ended: number, total: number) => void;
  signal?: AbortSignal;
}

export class StoreHandle {
  /** Replicas whose outcome the catalog will tell (queued now or already stored). */
  readonly tracked: readonly ReplicaRef[];
  /** Replicas refused before anything was stored (invalid task, conflicting chunk). */
  readonly rejected: readonly StoredChunk[];
  readonly #catalog: Catalog;

  constructor(catalog: Catalog, tracked: ReplicaRef[], rejected: StoredChunk[]) {
    this.#catalog = catalog;
    this.tracked = tracked;
    this.rejected = rejected;
  }

  /** Number of replicas handed over (tracked and rejected). */
  get total(): number {
    return this.tracked.length + this.rejected.length;
  }

  /**
   * Resolves when every tracked replica is stored or failed for good, with one result per
   * replica: the rejected ones first, then the tracked ones in the order they were given.
   * A replica whose catalog record vanished (Redis lost its data) comes back failed, saying
   * so: store it again (after `reindex`), since its job may have been lost with the record.
   */
  async results(options: WaitOptions = {}): Promise<StoredChunk[]> {
    const interval = options.pollIntervalMs ?? 100;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let outstanding = this.tracked.map((_, i) => i);
    for (;;) {
      options.signal?.throwIfAborted();
      // Replicas end roughly in the order they were queued: look at a bounded window of the
      // oldest outstanding ones per poll, so a poll costs the same for 10 or 100,000 replicas.
      const window = outstanding.slice(0, POLL_WINDOW);
      const statuses = await this.#catalog.replicaStatuses(window.map((i) => this.tracked[i]!));
      // A record that is gone was lost with Redis's data (it was written before store()
      // returned), and an expired one was deleted by retention: neither will change any more,
      // so both end here (as failed, saying why) rather than being waited on forever.
      const ended = new Set(window.filter((_, k) => statuses[k] === undefined || FINAL_STATUSES.has(statuses[k]!)));
      if (ended.size) outstanding = outstanding.filter((i) => !ended.has(i));
      options.onProgress?.(this.total - outstanding.length, this.total);
      if (outstanding.length === 0) break;
      if (Date.now() >= deadline) {
        const names = outstanding.slice(0, 5).map((i) => `${this.tracked[i]!.replicaId}@${this.tracked[i]!.chunkId}`);
        throw new Error(`timed out waiting for ${outstanding.length} replica(s) (${names.join(', ')}${outstanding.length > 5 ? ', ...' : ''}); is a worker running?`);
      }
      // A window that had ended entirely: look at the next one at once.
      if (ended.size < window.length) await sleep(interval);
    }
    const records = await this.#catalog.getReplicas(this.tracked);
    // What is reported stored must survive a failover: the Redis replicas must hold it too.
    const remaining = deadline === Infinity ? undefined : Math.max(1, deadline - Date.now());
    await retryAcrossReconnects(() => this.#catalog.confirmReplicated(), 'confirming that Redis replicas hold the results', remaining);
    return [...this.rejected, ...records.map((record, i) => toResult(record, this.tracked[i]!))];
  }
}

function toResult(record: ReplicaRecord | undefined, ref: ReplicaRef): StoredChunk {
  if (!record) {
    return {
      chunkId: ref.chunkId, replicaId: ref.replicaId, status: 'failed', storagePath: '', backend: '', checksum: '',
      algorithm: 'md5', sizeBytes: 0, storedAt: '', nodeId: '', cloudProvider: '', taskId: '',
      error: 'replica record vanished from the catalog (Redis lost its data?): run `chunkvault reindex`, then store the chunk again (store() is idempotent)',
    };
  }
  const result: StoredChunk = {
    chunkId: record.chunkId, replicaId: record.replicaId, status: record.status === 'stored' ? 'stored' : 'failed',
    storagePath: record.path, backend: record.backend, checksum: record.checksum, algorithm: record.algorithm,
    sizeBytes: record.sizeBytes, storedAt: record.storedAt, nodeId: record.targetNode,
    cloudProvider: record.cloudProvider, taskId: record.taskId,
  };
  if (record.status === 'expired') result.error = 'stored, then deleted by retention before its outcome was read';
  else if (record.status !== 'stored') result.error = record.error || 'failed';
  return result;
}
