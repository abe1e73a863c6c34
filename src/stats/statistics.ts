/**
 * Storage statistics with the seed design's field names (snake_case, as its callers read
 * them), from the catalog's counters and each backend's own usage.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';

const GIB = 1024 ** 3;

export interface StorageStatistics {
  /** Chunks with at least one stored replica. */
  total_chunks: number;
  total_replicas: number;
  /** Bytes of all stored replicas. */
  total_size_bytes: number;
  total_size_gb: number;
  checkpoints_created: number;
  storage_by_cloud: Record<string, { count: number; size_bytes: number }>;
  backend_stats: Record<string, { total_size_bytes: number; total_size_gb: number; file_count: number; base_path: string; catalogued_bytes: number; max_size_bytes: number }>;
  /** Replicas stored. */
  successful_stores: number;
  /** Replicas failed for good. */
  failed_stores: number;
  chunks_by_status: { pending: number; stored: number; degraded: number; failed: number };
}

export async function collectStatistics(catalog: Catalog, backends: BackendRegistry): Promise<StorageStatistics> {
  const counters = await catalog.counters();
  const backendStats: StorageStatistics['backend_stats'] = {};
  for (const backend of backends.all()) {
    const usage = await backend.usage();
    backendStats[backend.name] = {
      total_size_bytes: usage.totalSizeBytes,
      total_size_gb: usage.totalSizeBytes / GIB,
      file_count: usage.fileCount,
      base_path: usage.location,
      catalogued_bytes: counters.backendBytes[backend.name] ?? 0,
      max_size_bytes: backends.limitOf(backend.name),
    };
  }
  const byCloud: StorageStatistics['storage_by_cloud'] = {};
  for (const [cloud, entry] of Object.entries(counters.byCloud)) byCloud[cloud] = { count: entry.count, size_bytes: entry.sizeBytes };
  return {
    total_chunks: counters.chunks.stored + counters.chunks.degraded,
    total_replicas: counters.replicasStored,
    total_size_bytes: counters.bytesStored,
    total_size_gb: counters.bytesStored / GIB,
    checkpoints_created: 0,
    storage_by_cloud: byCloud,
    backend_stats: backendStats,
    successful_stores: counters.replicasStored,
    failed_stores: counters.replicasFailed,
    chunks_by_status: { ...counters.chunks },
  };
}
