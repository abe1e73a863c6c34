/**
 * Redis connections. Every chunkvault key lives under the hash tag `{prefix}`, so a Redis
 * Cluster keeps all of them (queues and catalog) in one slot.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ChunkvaultError } from '../errors.js';
import { redactUrl } from '../logging/logger.js';

/** `{prefix}`: the BullMQ prefix and the root of every chunkvault key. */
export function keyRoot(prefix: string): string {
  return `{${prefix}}`;
}

/** A connection fit for BullMQ workers and blocking commands (no per-request retry limit). */
export function openRedis(url: string, connectionName: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName, lazyConnect: false });
}

/**
 * The catalog's own connection: commands issued in one event-loop turn by concurrent jobs
 * go out in one write (ioredis auto-pipelining), which saves a socket write per command.
 * Only for chunkvault's own non-blocking commands and scripts, never for BullMQ's
 * connections (auto-pipelining there has been reported to break job handling).
 */
export function openCatalogRedis(url: string, connectionName: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName, lazyConnect: false, enableAutoPipelining: true });
}

/**
 * Fails fast with a clear error when nothing answers at `url`, instead of letting ioredis
 * retry forever. Resolves when Redis answers PING.
 */
export async function assertRedisReachable(url: string, timeoutMs = 2000): Promise<void> {
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
  } catch (error) {
    throw new ChunkvaultError('E_REDIS_UNAVAILABLE', `no Redis answers at ${redactUrl(url)} (${(error as Error).message}). Start one (e.g. \`redis-server --port 6379 --bind 127.0.0.1\`, or \`docker compose up -d redis\`) or set REDIS_URL.`, { cause: error, retryable: true });
  } finally {
    probe.disconnect();
  }
}

/**
 * Whether `error` is a command ioredis gave up on because the connection closed under it.
 * Single commands are resent after a reconnect by ioredis itself; pipelines and transactions
 * cut in half (BullMQ's addBulk, auto-pipelined catalog calls) are aborted with this error.
 */
export function abortedByReconnect(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError' && /connection close/.test(error.message);
}

/**
 * Runs the idempotent `op` again while it is aborted by a Redis reconnect (a restart, a
 * failover), waiting a little longer each time, for up to `withinMs`; then throws saying so.
 */
export async function retryAcrossReconnects<T>(op: () => Promise<T>, what: string, withinMs = 60_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await op();
    } catch (error) {
      if (!abortedByReconnect(error)) throw error;
      if (Date.now() >= deadline) {
        throw new ChunkvaultError('E_REDIS_UNAVAILABLE', `${what}: the Redis connection kept closing for ${Math.round(withinMs / 1000)} s (${(error as Error).message})`, { cause: error, retryable: true });
      }
      await sleep(delay);
    }
  }
}
