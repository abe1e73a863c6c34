/**
 * Verifying a sealed checkpoint against its backends: every stored replica its manifest
 * names is read back and checked against the chunk's size and checksum. Kept apart from
 * sealing (checkpoint-service.ts) because it needs neither the ledger nor the lock: only the
 * manifest, the catalog, the backends and the repair queue.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { RepairScheduler } from '../reads/repair-scheduler.js';
import { NotFoundError } from '../errors.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { decoded } from '../integrity/codecs.js';
import type { ReplicaRecord } from '../domain/types.js';
import type { Manifest, ManifestChunk } from './manifest.js';

export interface ReplicaProblem {
  chunkId: string;
  replicaId: string;
  backend: string;
  path: string;
  problem: string;
}

export interface CheckpointVerifyReport {
  id: string;
  chunks: number;
  replicasChecked: number;
  problems: ReplicaProblem[];
  /** Replicas deleted on purpose by retention since the checkpoint was sealed (not problems). */
  expired: ReplicaProblem[];
}

export interface CheckpointVerifyDeps {
  catalog: Catalog;
  backends: BackendRegistry;
  repairs: RepairScheduler;
}

/**
 * Re-reads every replica that `manifest` (checkpoint `id`'s, checksum already verified) names
 * and reports each missing or corrupt one. What it finds is also recorded: a bad replica the
 * catalog still has as stored is marked corrupt and a repair is queued (from a replica of the
 * chunk that verified good).
 */
export async function verifyCheckpoint(
  deps: CheckpointVerifyDeps,
  id: string,
  manifest: Manifest,
  onProgress?: (chunksDone: number, chunks: number) => void,
): Promise<CheckpointVerifyReport> {
  const { catalog, repairs } = deps;
  const report: CheckpointVerifyReport = { id, chunks: manifest.chunks.length, replicasChecked: 0, problems: [], expired: [] };
  for (const [done, chunk] of manifest.chunks.entries()) {
    onProgress?.(done, manifest.chunks.length);
    const good: string[] = [];
    const bad: ReplicaProblem[] = [];
    for (const replica of chunk.replicas.filter((r) => r.status === 'stored')) {
      report.replicasChecked += 1;
      // The manifest records where the replica was; the catalog knows where it is now (e.g. compressed).
      const record = await catalog.getReplica(chunk.chunkId, replica.replicaId);
      const current = record && record.status !== 'expired' && record.path ? { ...replica, path: record.path, codec: record.codec } : { ...replica, codec: '' as const };
      const problem = await checkReplica(deps.backends, chunk, current);
      if (problem) bad.push({ chunkId: chunk.chunkId, replicaId: replica.replicaId, backend: replica.backend, path: current.path, problem });
      else good.push(replica.replicaId);
    }
    for (const found of [...bad]) {
      const record = await catalog.getReplica(found.chunkId, found.replicaId);
      if (record?.status === 'expired') {
        bad.splice(bad.indexOf(found), 1);
        report.expired.push({ ...found, problem: 'expired by retention' });
        continue;
      }
      if (record?.status === 'stored' && record.path === found.path && record.backend === found.backend) {
        await catalog.recordCorrupt(found.chunkId, found.replicaId, `${found.problem} (checkpoint verify ${id})`);
      }
      await repairs.schedule(found.chunkId, found.replicaId, good[0]);
    }
    report.problems.push(...bad);
  }
  onProgress?.(manifest.chunks.length, manifest.chunks.length);
  return report;
}

/** What is wrong with one replica (missing, unreadable or corrupt), or undefined when it reads back intact. */
async function checkReplica(
  backends: BackendRegistry,
  chunk: ManifestChunk,
  replica: ManifestChunk['replicas'][number] & { codec: ReplicaRecord['codec'] },
): Promise<string | undefined> {
  const backend = backends.byName(replica.backend);
  if (!backend) return `backend ${replica.backend} is not configured`;
  try {
    const actual = await checksumOfStream(decoded(await backend.get(replica.path), replica.codec), chunk.algorithm);
    if (actual.sizeBytes !== chunk.sizeBytes) return `corrupt: ${actual.sizeBytes} bytes, expected ${chunk.sizeBytes}`;
    if (actual.checksum !== chunk.checksum) return `corrupt: checksum ${actual.checksum}, expected ${chunk.checksum}`;
    return undefined;
  } catch (error) {
    if (error instanceof NotFoundError) return 'missing';
    return `unreadable: ${(error as Error).message}`;
  }
}
