/**
 * Redis replicates asynchronously: a master that fails over may take with it writes it had
 * already acknowledged. A barrier waits until `minReplicas` replicas hold every write the
 * master applied before the call, whichever connection made it, so what chunkvault
 * acknowledges survives the failover of one node.
 *
 * A fence: a small write (INCR of `fenceKey`), then Redis WAIT on the same connection, which
 * returns once replicas have acknowledged the replication stream up to that write, and so
 * everything before it. Callers that wait at the same time share one fence (group commit): a
 * call joins the next fence sent after it, never one already on its way. The written key is in
 * chunkvault's hash slot, so on a cluster the pair goes to the master of that slot (ioredis
 * routes a pipeline by its keys), and a pipeline that writes is never re-sent by the cluster
 * client on its own.
 *
 * A fence covers only what the master it reaches applied. Writes sent on another connection
 * may have reached another node: a client whose slot map (or Sentinel's answer) still named the
 * old master sends them there, and a paused master that is resumed answers them before it
 * learns it was demoted, then drops them when it resyncs from the new one. `confirmHeld` closes
 * that: the same pipeline first checks that the written keys are on the node it fences.
 */
import { ChunkvaultError } from '../errors.js';
import type { RedisClient } from './redis-endpoint.js';

export class ReplicationLagError extends ChunkvaultError {
  override readonly name = 'ReplicationLagError';
  constructor(acked: number, wanted: number, timeoutMs: number) {
    super(
      'E_REDIS_REPLICATION',
      `only ${acked} of the ${wanted} Redis replicas chunkvault.redis.min_replicas_acked asks for acknowledged the write within ${timeoutMs} ms: it could be lost in a failover, so it is not acknowledged (the attempt is retried)`,
      { retryable: true },
    );
  }
}

/** Keys just written are not on the master a fence reached: a failover took them (they went to a master demoted since). */
export class WritesLostError extends ChunkvaultError {
  override readonly name = 'WritesLostError';
  constructor(missing: readonly string[], total: number) {
    super(
      'E_REDIS_REPLICATION',
      `${missing.length} of ${total} keys just written are not on the Redis master (e.g. ${missing[0]}): they went to a master that was demoted before it replicated them, so they are written again`,
      { retryable: true },
    );
  }
}

export interface ReplicationBarrierOptions {
  /** Replicas that must hold the writes; 0 makes every wait return at once. */
  minReplicas: number;
  timeoutMs: number;
  /** A key in chunkvault's hash slot, written by each fence (it routes the WAIT on a cluster). */
  fenceKey: string;
}

export class ReplicationBarrier {
  readonly #client: RedisClient;
  readonly #options: ReplicationBarrierOptions;
  #inFlight: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(client: RedisClient, options: ReplicationBarrierOptions) {
    this.#client = client;
    this.#options = options;
  }

  get enabled(): boolean {
    return this.#options.minReplicas > 0;
  }

  /**
   * Resolves once `minReplicas` replicas hold every write the master applied before the call;
   * throws ReplicationLagError (retryable) when they do not within the timeout. At once when
   * no replica is asked for.
   */
  confirm(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.#inFlight === undefined) {
      this.#inFlight = this.#fence().finally(() => {
        this.#inFlight = undefined;
      });
      return this.#inFlight;
    }
    this.#next ??= this.#inFlight.catch(() => undefined).then(() => {
      this.#next = undefined;
      return this.confirm();
    });
    return this.#next;
  }

  /**
   * As confirm(), for writes that may have gone to another node than the one this client
   * reaches (another connection, a stale slot map): resolves once every key of `keys` is on the
   * master this fence reaches and `minReplicas` replicas hold it. Throws WritesLostError
   * (retryable: write them again) when one is not there, ReplicationLagError as confirm().
   * One pipeline (checked, then fenced, on one node), not shared with other callers. A key
   * already deleted again (a job removed once finished) also counts as missing: writing it
   * again must be harmless. At once when no replica is asked for.
   */
  async confirmHeld(keys: readonly string[]): Promise<void> {
    if (!this.enabled || keys.length === 0) return;
    await this.#fence(keys);
  }

  /** One fence: EXISTS of each of `held` (WritesLostError when one is missing), then INCR and WAIT, in one pipeline on one node. */
  async #fence(held: readonly string[] = []): Promise<void> {
    const { minReplicas, timeoutMs, fenceKey } = this.#options;
    const pipeline = this.#client.pipeline();
    for (const key of held) pipeline.exists(key);
    const replies = (await pipeline.incr(fenceKey).wait(minReplicas, timeoutMs).exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const missing = held.filter((_, i) => Number(replies[i]?.[1] ?? 0) === 0);
    if (missing.length) throw new WritesLostError(missing, held.length);
    const acked = Number(replies[held.length + 1]?.[1] ?? 0);
    if (acked < minReplicas) throw new ReplicationLagError(acked, minReplicas, timeoutMs);
  }
}
