/**
 * The catalog's counters recounted from its records. Every script that changes a record moves
 * its counters in the same call; this reads every replica and chunk record of a deployment
 * (SCAN, through the same key schema the scripts get their KEYS from) and counts what the
 * counters that describe the present should hold. Counters of the past (corruptions found,
 * repairs done, replicas expired or compressed, ever) have no record to be recounted from.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../../../src/config/config.schema.js';
import { CatalogKeys } from '../../../src/catalog/catalog-keys.js';
import type { CatalogCounters } from '../../../src/catalog/catalog.js';
import { keyRoot } from '../../../src/redis/redis-connection.js';
import { RedisEndpoint, mastersOf } from '../../../src/redis/redis-endpoint.js';

/** The counters of the present, as Catalog.counters() reports them. */
export type PresentCounters = Pick<CatalogCounters, 'replicasStored' | 'replicasFailed' | 'replicasCorrupt' | 'bytesStored' | 'chunks' | 'byCloud' | 'byNode' | 'backendBytes' | 'backendCount'>;

export function presentCounters(counters: CatalogCounters): PresentCounters {
  const { replicasStored, replicasFailed, replicasCorrupt, bytesStored, chunks, byCloud, byNode, backendBytes, backendCount } = counters;
  const nonZero = (table: Record<string, number>) => Object.fromEntries(Object.entries(table).filter(([, n]) => n !== 0));
  return { replicasStored, replicasFailed, replicasCorrupt, bytesStored, chunks, byCloud: { ...byCloud }, byNode: { ...byNode }, backendBytes: nonZero(backendBytes), backendCount: nonZero(backendCount) };
}

/** Counts from every record of the deployment `config` names. */
export async function recountCatalog(config: Config): Promise<PresentCounters> {
  const keys = new CatalogKeys(`${keyRoot(config.chunkvault.redis.prefix)}:catalog`);
  const client = new RedisEndpoint(config.chunkvault.redis).connect('chunkvault-test-recount');
  const counted: PresentCounters = {
    replicasStored: 0, replicasFailed: 0, replicasCorrupt: 0, bytesStored: 0,
    chunks: { pending: 0, stored: 0, degraded: 0, failed: 0, expired: 0 },
    byCloud: {}, byNode: {}, backendBytes: {}, backendCount: {},
  };
  try {
    for (const redis of await mastersOf(client)) await recountNode(redis, keys, counted);
  } finally {
    client.disconnect();
  }
  for (const table of [counted.backendBytes, counted.backendCount]) for (const [name, n] of Object.entries(table)) if (n === 0) delete table[name];
  return counted;
}

async function recountNode(redis: Redis, keys: CatalogKeys, counted: PresentCounters): Promise<void> {
  const add = (table: Record<string, { count: number; sizeBytes: number }>, name: string, bytes: number) => {
    const entry = (table[name] ??= { count: 0, sizeBytes: 0 });
    entry.count += 1;
    entry.sizeBytes += bytes;
  };
  for await (const batch of redis.scanStream({ match: keys.replica('*', '*'), type: 'hash', count: 1000 })) {
    const pipeline = redis.pipeline();
    for (const key of batch as string[]) pipeline.hmget(key, 'status', 'sizeBytes', 'storedBytes', 'cloudProvider', 'targetNode', 'backend');
    for (const [error, fields] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      const [status, sizeBytes, storedBytes, cloud, node, backend] = fields as Array<string | null>;
      if (status === 'failed') counted.replicasFailed += 1;
      if (status === 'corrupt') counted.replicasCorrupt += 1;
      if (status !== 'stored') continue;
      const bytes = Number(storedBytes ?? sizeBytes ?? 0);
      counted.replicasStored += 1;
      counted.bytesStored += bytes;
      add(counted.byCloud, cloud ?? '', bytes);
      add(counted.byNode, node ?? '', bytes);
      counted.backendBytes[backend ?? ''] = (counted.backendBytes[backend ?? ''] ?? 0) + bytes;
      counted.backendCount[backend ?? ''] = (counted.backendCount[backend ?? ''] ?? 0) + 1;
    }
  }
  for await (const batch of redis.scanStream({ match: keys.chunk('*'), type: 'hash', count: 1000 })) {
    const pipeline = redis.pipeline();
    for (const key of batch as string[]) pipeline.hget(key, 'status');
    for (const [error, status] of ((await pipeline.exec()) ?? []) as Array<[Error | null, string | null]>) {
      if (error) throw error;
      // A chunk restored from a checkpoint alone has no status until a replica of it is recorded.
      if (status && status in counted.chunks) counted.chunks[status as keyof PresentCounters['chunks']] += 1;
    }
  }
}

/** Where `recorded` and `counted` differ, one line each ("replicasStored: recorded 5, counted 4"). */
export function counterDifferences(recorded: PresentCounters, counted: PresentCounters): string[] {
  const flat = (counters: PresentCounters): Map<string, number> => {
    const out = new Map<string, number>();
    for (const [name, value] of Object.entries(counters)) {
      if (typeof value === 'number') out.set(name, value);
      else for (const [member, inner] of Object.entries(value as Record<string, number | { count: number; sizeBytes: number }>)) {
        if (typeof inner === 'number') out.set(`${name}.${member}`, inner);
        else {
          out.set(`${name}.${member}.count`, inner.count);
          out.set(`${name}.${member}.sizeBytes`, inner.sizeBytes);
        }
      }
    }
    return out;
  };
  const a = flat(recorded);
  const b = flat(counted);
  return [...new Set([...a.keys(), ...b.keys()])].sort().filter((name) => (a.get(name) ?? 0) !== (b.get(name) ?? 0)).map((name) => `${name}: recorded ${a.get(name) ?? 0}, counted ${b.get(name) ?? 0}`);
}
