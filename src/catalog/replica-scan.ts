/**
 * Every replica record of the catalog, for a pass that must know each replica pointing at a
 * place and has no index from places to replicas to ask (compaction of a damaged pack: does
 * any replica still lie in the damage?).
 *
 * Read by SCAN over the replica keys of catalog-keys.ts, on every master (a cluster keeps the
 * deployment's keys on one). SCAN returns every key that exists from the start of the walk to
 * its end, some maybe twice; paging the chunk index by offset instead could skip live chunks
 * when retention removes earlier ones meanwhile. Read-only; throws on any Redis error, after
 * which the caller knows nothing and must act as if any replica could point anywhere.
 */
import type { ReplicaStatus } from '../domain/types.js';
import { mastersOf, type RedisClient } from '../redis/redis-endpoint.js';
import type { CatalogKeys } from './catalog-keys.js';

/** Where one replica record says its replica is. */
export interface ReplicaLocation {
  chunkId: string;
  replicaId: string;
  status: ReplicaStatus;
  backend: string;
  path: string;
}

/** Keys SCAN looks at per call, and records read per round trip. */
const SCAN_COUNT = 1000;

/** Yields the location of every replica record, a batch at a time. */
export async function* replicaLocations(redis: RedisClient, keys: CatalogKeys): AsyncGenerator<ReplicaLocation[]> {
  for (const node of await mastersOf(redis)) {
    for await (const batch of node.scanStream({ match: keys.replica('*', '*'), type: 'hash', count: SCAN_COUNT })) {
      const pipeline = node.pipeline();
      for (const key of batch as string[]) pipeline.hmget(key, 'chunkId', 'replicaId', 'status', 'backend', 'path');
      const locations: ReplicaLocation[] = [];
      for (const [error, fields] of (await pipeline.exec()) ?? []) {
        if (error) throw error;
        const [chunkId, replicaId, status, backend, path] = fields as Array<string | null>;
        // Removed between SCAN and HMGET: it points nowhere now.
        if (!status) continue;
        locations.push({ chunkId: chunkId ?? '', replicaId: replicaId ?? '', status: status as ReplicaStatus, backend: backend ?? '', path: path ?? '' });
      }
      yield locations;
    }
  }
}
