/**
 * What every Redis user in chunkvault shares: the key root, and riding out a Redis that
 * restarts or fails over under an idempotent operation. Connections come from
 * redis-endpoint.ts. Every chunkvault key lives under the hash tag `{prefix}`, so a Redis
 * Cluster keeps all of them (queues and catalog) in one slot.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ChunkvaultError } from '../errors.js';
import { ReplicationLagError, WritesLostError } from './replication-barrier.js';

/** `{prefix}`: the BullMQ prefix and the root of every chunkvault key. */
export function keyRoot(prefix: string): string {
  return `{${prefix}}`;
}

/** Messages of errors a client reports while its Redis restarts or fails over (ioredis's wording). */
const INTERRUPTIONS = [
  /connection close/i, // a pipeline or transaction cut in half (AbortError)
  /^Connection is closed/, // sent on a connection that ended
  /^Socket timeout/, // a connection that stopped answering (a master paused or gone)
  /^Command timed out/,
  /^Too many Cluster redirections/, // a cluster failover that outlasted the client's retries
  /^CLUSTERDOWN/,
  /^TRYAGAIN/,
  /^READONLY/, // reached a master that was demoted
  /^UNBLOCKED/, // a blocking command (WAIT) on a master that was demoted under it
  /^MOVED /, // a cluster slot that moved, met by a command the client does not redirect itself (a pipeline's)
  /WAIT cannot be used with replica instances/, // WAIT sent to a master demoted since
  /^LOADING/, // a restarted node still loading its data
  /^MASTERDOWN/,
  /^Failed to refresh slots cache/,
  /^None of startup nodes is available/,
  /^All sentinels are unreachable/,
];

/**
 * Whether `error` came from Redis restarting or failing over under the command, rather than
 * from the command: the same idempotent command may succeed once the client has reconnected.
 * Single commands are resent after a reconnect by ioredis itself; pipelines and transactions
 * cut in half (BullMQ's addBulk, auto-pipelined catalog calls) are aborted, and a cluster
 * client gives up on a command after its retries.
 */
export function interruptedByRedis(error: unknown): boolean {
  if (error instanceof ReplicationLagError || error instanceof WritesLostError) return true;
  return error instanceof Error && INTERRUPTIONS.some((pattern) => pattern.test(error.message));
}

/**
 * Runs the idempotent `op` again while Redis interrupts it (a restart, a failover), waiting a
 * little longer each time, for up to `withinMs`; then throws saying so.
 */
export async function retryAcrossReconnects<T>(op: () => Promise<T>, what: string, withinMs = 60_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await op();
    } catch (error) {
      if (!interruptedByRedis(error)) throw error;
      if (Date.now() >= deadline) {
        throw new ChunkvaultError('E_REDIS_UNAVAILABLE', `${what}: Redis kept failing over or reconnecting for ${Math.round(withinMs / 1000)} s (${(error as Error).message})`, { cause: error, retryable: true });
      }
      await sleep(delay);
    }
  }
}
