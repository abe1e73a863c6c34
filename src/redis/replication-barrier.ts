/**
 * Redis replicates asynchronously: a master that fails over may take with it writes it had
 * already acknowledged. A barrier waits (Redis WAIT) until `minReplicas` replicas hold a
 * connection's writes, so what chunkvault acknowledges survives the failover of one node.
 *
 * WAIT covers every write its connection made before it, so callers that wait at the same time
 * share one WAIT (group commit): a call joins the next WAIT sent after it, never one already
 * on its way. On a cluster the WAIT goes to the master of chunkvault's hash slot, beside a
 * command naming a key there (ioredis routes a pipeline by its keys).
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

export interface ReplicationBarrierOptions {
  /** Replicas that must hold the writes; 0 makes every wait return at once. */
  minReplicas: number;
  timeoutMs: number;
  /** A key in chunkvault's hash slot, written by `fence` (it routes the WAIT on a cluster). */
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
   * Resolves once `minReplicas` replicas hold every write this connection made before the call;
   * throws ReplicationLagError (retryable) when they do not within the timeout.
   */
  confirm(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return this.#join(false);
  }

  /**
   * As confirm, for every write any connection made before the call (whatever the master has
   * applied is in its replication stream): one small write of its own, then WAIT.
   */
  fence(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return this.#join(true);
  }

  #join(fence: boolean): Promise<void> {
    // A fence must be a fence of its own: a confirm's WAIT does not cover other connections' writes.
    if (fence) return this.#wait(true);
    if (this.#inFlight === undefined) {
      this.#inFlight = this.#wait(false).finally(() => {
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

  async #wait(fence: boolean): Promise<void> {
    const { minReplicas, timeoutMs, fenceKey } = this.#options;
    const pipeline = this.#client.pipeline();
    if (fence) pipeline.incr(fenceKey);
    else pipeline.exists(fenceKey);
    pipeline.wait(minReplicas, timeoutMs);
    const replies = (await pipeline.exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const acked = Number(replies[1]?.[1] ?? 0);
    if (acked < minReplicas) throw new ReplicationLagError(acked, minReplicas, timeoutMs);
  }
}
