/**
 * The replicas a maintenance pass acts on: those of settled chunks (never one still being
 * written) stored before a cutoff, oldest first, at most `limit`. Shared by retention and
 * compression so both read the catalog the same way. Throws on any catalog error.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { ReplicaRecord } from '../domain/types.js';

const PAGE = 500;
export const DAY_MS = 24 * 3600 * 1000;

/** A replica as a maintenance pass reports it. */
export interface AgedReplica {
  chunkId: string;
  replicaId: string;
  backend: string;
  path: string;
  /** Bytes the object takes on the backend. */
  sizeBytes: number;
  storedAt: string;
}

export async function agedReplicas(
  catalog: Catalog,
  cutoffMs: number,
  limit: number,
  wanted: (replica: ReplicaRecord) => boolean,
): Promise<{ items: AgedReplica[]; more: boolean }> {
  const due: AgedReplica[] = [];
  // A chunk's replicas are stored after it was queued: only chunks queued before the cutoff can hold aged replicas.
  for (let offset = 0; ; offset += PAGE) {
    const chunkIds = await catalog.chunksCreatedBefore(cutoffMs, offset, PAGE);
    for (const chunkId of chunkIds) {
      const chunk = await catalog.getChunk(chunkId);
      if (!chunk || chunk.status === 'pending') continue; // in flight: never act under a running write
      for (const r of await catalog.listReplicas(chunkId)) {
        if (!(Date.parse(r.storedAt) < cutoffMs) || !wanted(r)) continue;
        due.push({ chunkId, replicaId: r.replicaId, backend: r.backend, path: r.path, sizeBytes: r.storedBytes, storedAt: r.storedAt });
      }
    }
    if (chunkIds.length < PAGE) break;
  }
  due.sort((a, b) => a.storedAt.localeCompare(b.storedAt) || a.chunkId.localeCompare(b.chunkId) || a.replicaId.localeCompare(b.replicaId));
  return { items: due.slice(0, limit), more: due.length > limit };
}
