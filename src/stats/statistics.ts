/**
 * Storage statistics with the seed design's field names (snake_case, as its callers read
 * them) and more. Every figure comes from the catalog's counters and the queues: nothing
 * walks the disk, so the call stays cheap however much is stored.
 */
import type { Queue } from 'bullmq';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { CheckpointService } from '../checkpoints/checkpoint-service.js';
import type { MaintenanceReport, MaintenanceService } from '../maintenance/maintenance-service.js';

const GIB = 1024 ** 3;

type CountAndSize = Record<string, { count: number; size_bytes: number }>;

export interface StorageStatistics {
  /** Chunks with at least one stored replica (stored or degraded). */
  total_chunks: number;
  /** Replicas stored (and not found corrupt since). */
  total_replicas: number;
  /** Bytes all stored replicas take on their backends (compressed size where compressed). */
  total_size_bytes: number;
  total_size_gb: number;
  checkpoints_created: number;
  storage_by_cloud: CountAndSize;
  storage_by_node: CountAndSize;
  /** Per backend: stored replica objects and their bytes, as catalogued. */
  backend_stats: Record<string, { total_size_bytes: number; total_size_gb: number; file_count: number; base_path: string; max_size_bytes: number }>;
  /** Replicas stored. */
  successful_stores: number;
  /** Replicas failed for good. */
  failed_stores: number;
  degraded_chunks: number;
  /** Replicas a read found missing or corrupt and not yet repaired. */
  corrupt_replicas: number;
  corruptions_found: number;
  repairs_done: number;
  chunks_by_status: { pending: number; stored: number; degraded: number; failed: number; expired: number };
  /** Replicas and bytes deleted by retention, ever. */
  expired_replicas: number;
  expired_bytes: number;
  /** Replicas compressed, ever, and the backend bytes that saved. */
  compressed_replicas: number;
  bytes_saved_by_compression: number;
  /** When the least recently verified stored replica was last read back intact (null: none stored). */
  oldest_verification: string | null;
  /** The last maintenance pass (null before the first). */
  last_maintenance: MaintenanceReport | null;
  queues: Record<string, { waiting: number; active: number; delayed: number; failed: number; waiting_children: number }>;
}

export async function collectStatistics(
  catalog: Catalog,
  checkpoints: CheckpointService,
  maintenance: MaintenanceService,
  backends: BackendRegistry,
  queues: Record<string, Queue>,
): Promise<StorageStatistics> {
  const [counters, checkpointCount, oldest, lastMaintenance] = await Promise.all([
    catalog.counters(), checkpoints.count(), catalog.oldestVerification(), maintenance.lastReport(),
  ]);
  const backendStats: StorageStatistics['backend_stats'] = {};
  for (const backend of backends.all()) {
    const bytes = counters.backendBytes[backend.name] ?? 0;
    backendStats[backend.name] = {
      total_size_bytes: bytes,
      total_size_gb: bytes / GIB,
      file_count: counters.backendCount[backend.name] ?? 0,
      base_path: backend.location,
      max_size_bytes: backends.limitOf(backend.name),
    };
  }
  const queueStats: StorageStatistics['queues'] = {};
  for (const [name, queue] of Object.entries(queues)) {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'waiting-children');
    queueStats[name] = {
      waiting: counts.waiting ?? 0,
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      failed: counts.failed ?? 0,
      waiting_children: counts['waiting-children'] ?? 0,
    };
  }
  return {
    total_chunks: counters.chunks.stored + counters.chunks.degraded,
    total_replicas: counters.replicasStored,
    total_size_bytes: counters.bytesStored,
    total_size_gb: counters.bytesStored / GIB,
    checkpoints_created: checkpointCount,
    storage_by_cloud: toSnake(counters.byCloud),
    storage_by_node: toSnake(counters.byNode),
    backend_stats: backendStats,
    successful_stores: counters.replicasStored,
    failed_stores: counters.replicasFailed,
    degraded_chunks: counters.chunks.degraded,
    corrupt_replicas: counters.replicasCorrupt,
    corruptions_found: counters.corruptionsFound,
    repairs_done: counters.repairsDone,
    chunks_by_status: { ...counters.chunks },
    expired_replicas: counters.replicasExpired,
    expired_bytes: counters.bytesExpired,
    compressed_replicas: counters.replicasCompressed,
    bytes_saved_by_compression: counters.bytesSavedByCompression,
    oldest_verification: oldest === undefined ? null : new Date(oldest).toISOString(),
    last_maintenance: lastMaintenance ?? null,
    queues: queueStats,
  };
}

function toSnake(table: Record<string, { count: number; sizeBytes: number }>): CountAndSize {
  return Object.fromEntries(Object.entries(table).map(([name, entry]) => [name, { count: entry.count, size_bytes: entry.sizeBytes }]));
}
