/**
 * Rebuilds the catalog's Redis index from the backends alone. First the checkpoints, from
 * their manifests (so the chunks they hold keep their place and are never sealed again),
 * then every replica's metadata whose data object is present (and, with `verify`, hashes right)
 * becomes a stored replica record again: a file's from its journal line or sidecar, a packed
 * replica's from its record's header in its pack (packed-replicas.ts), read with its bytes.
 * Safe to run on a live catalog: restoring what is already indexed changes nothing, and a
 * replica the catalog records expired stays expired.
 */
import type { Catalog, StoredReplicaInput } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Backend } from '../backends/backend.js';
import type { Logger } from '../logging/logger.js';
import type { MetadataStore, ReplicaMetadata } from '../catalog/replica-metadata.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { isDataKey } from '../storage/storage-layout.js';
import { decoded } from '../integrity/codecs.js';
import { describeError } from '../errors.js';
import type { Sidecar } from '../catalog/sidecar.js';
import { PACK_SUFFIX } from '../backends/pack/pack-format.js';
import { packedReplicas } from './packed-replicas.js';
import { replicaKey } from '../catalog/journal-entries.js';
import type { CheckpointIndex } from '../catalog/checkpoint-index.js';
import { CHECKPOINT_KEY_PREFIX, parseManifest, type Manifest } from '../checkpoints/manifest.js';

export interface ReindexReport {
  /** Checkpoints restored from their manifests. */
  checkpoints: number;
  /** Replicas whose metadata was read: journal records, sidecars, and replicas with a live record in a pack (once each, however many records or lines). */
  metadataRecords: number;
  /** Replicas recorded as stored. */
  restored: number;
  /** Problems, each naming the key (a pack and offset for a packed record): unreadable metadata, missing or wrong data, data without metadata, damage in a pack. */
  problems: string[];
}

export interface ReindexOptions {
  /** Also re-hash every data object before indexing it. */
  verify?: boolean;
  /** Metadata records read so far, and data objects listed so far (backend by backend). */
  onProgress?: (read: number, listed: number) => void;
}

export interface ReindexDeps {
  backends: BackendRegistry;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  checkpoints: CheckpointIndex;
  logger: Logger;
}

export async function reindex({ backends, catalog, metadata, checkpoints, logger }: ReindexDeps, options: ReindexOptions = {}): Promise<ReindexReport> {
  const report: ReindexReport = { checkpoints: 0, metadataRecords: 0, restored: 0, problems: [] };
  await restoreCheckpoints(backends.forCheckpoints(), checkpoints, report);
  // Chunks stored while the index was empty entered the ledger at places the restored
  // checkpoints cover; they go after them, to be sealed next.
  await checkpoints.renumberStranded();
  const listed = { count: 0 };
  for (const backend of backends.all()) await reindexBackend(backend, metadata.of(backend), catalog, options, report, listed);
  options.onProgress?.(report.metadataRecords, listed.count);
  logger.info({ checkpoints: report.checkpoints, metadataRecords: report.metadataRecords, restored: report.restored, problems: report.problems.length }, 'reindex finished');
  return report;
}

async function restoreCheckpoints(backend: Backend, index: CheckpointIndex, report: ReindexReport): Promise<void> {
  const bySequence = new Map<number, Array<{ key: string; manifest: Manifest }>>();
  for await (const object of backend.list(CHECKPOINT_KEY_PREFIX)) {
    let manifest: Manifest;
    try {
      manifest = parseManifest(await readAll(backend, object.key), object.key);
    } catch (error) {
      report.problems.push(`${backend.name}:${object.key}: ${(error as Error).message}`);
      continue;
    }
    const slot = bySequence.get(manifest.sequence) ?? [];
    slot.push({ key: object.key, manifest });
    bySequence.set(manifest.sequence, slot);
  }
  for (const sequence of [...bySequence.keys()].sort((a, b) => a - b)) {
    // Two manifests for one sequence only arise from a sealer that lost its lock mid-way;
    // the oldest was written first, by the holder whose commit won.
    const candidates = bySequence.get(sequence)!.sort((a, b) => a.manifest.createdAt.localeCompare(b.manifest.createdAt));
    const { key, manifest } = candidates[0]!;
    if (candidates.length > 1) report.problems.push(`checkpoint sequence ${sequence} has ${candidates.length} manifests (${candidates.map((c) => c.key).join(', ')}); restored ${key}`);
    await index.restore(
      {
        id: manifest.id, sequence, createdAt: manifest.createdAt, previousId: manifest.previousId ?? '', chunkCount: manifest.chunkCount,
        totalBytes: manifest.totalBytes, checksum: manifest.checksum, key, fromLedgerSeq: manifest.fromLedgerSeq, toLedgerSeq: manifest.toLedgerSeq,
      },
      manifest.chunks,
    );
    report.checkpoints += 1;
  }
}

async function readAll(backend: Backend, key: string): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of await backend.get(key)) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

async function reindexBackend(backend: Backend, metadata: MetadataStore, catalog: Catalog, options: ReindexOptions, report: ReindexReport, listed: { count: number }): Promise<void> {
  const verify = options.verify ?? false;
  const keys: string[] = [];
  const dataKeys = new Set<string>();
  const packKeys: string[] = [];
  for await (const object of backend.list('')) {
    keys.push(object.key);
    if (isDataKey(object.key)) dataKeys.add(object.key);
    else if (backend.packs && object.key.endsWith(PACK_SUFFIX)) packKeys.push(object.key);
  }
  const lines: Sidecar[] = [];
  for await (const entry of metadata.current(keys)) {
    if ('problem' in entry) report.problems.push(entry.problem);
    else lines.push(entry.sidecar);
  }
  // Packed replicas from their packs' record headers; a journal line of one (written before
  // the headers were all its metadata) only completes an older header, it is not read again.
  const packed = backend.packs
    ? await packedReplicas(backend.packs, backend.name, packKeys, new Map(lines.map((line) => [replicaKey(line), line])), verify, report.problems)
    : { found: new Set<string>(), replicas: [] };
  listed.count += dataKeys.size + packed.found.size;
  report.metadataRecords += packed.found.size;
  for (const replica of packed.replicas) await restore(catalog, replica, report);
  options.onProgress?.(report.metadataRecords, listed.count);
  for (const sidecar of lines) {
    dataKeys.delete(sidecar.path);
    if (packed.found.has(replicaKey(sidecar))) continue;
    options.onProgress?.(report.metadataRecords, listed.count);
    report.metadataRecords += 1;
    const object = await backend.head(sidecar.path);
    if (!object) {
      report.problems.push(`${backend.name}:${sidecar.path}: data missing (metadata present)`);
      continue;
    }
    const storedBytes = sidecar.storedBytes ?? sidecar.sizeBytes;
    if (object.sizeBytes !== storedBytes) {
      report.problems.push(`${backend.name}:${sidecar.path}: ${object.sizeBytes} bytes, metadata says ${storedBytes}`);
      continue;
    }
    if (verify) {
      let actual: string;
      try {
        actual = (await checksumOfStream(decoded(await backend.get(sidecar.path), sidecar.codec), sidecar.algorithm)).checksum;
      } catch (error) {
        // A damaged packed record, an undecodable object: a finding, not a reason to stop.
        report.problems.push(`${backend.name}:${sidecar.path}: unreadable (${describeError(error)})`);
        continue;
      }
      if (actual !== sidecar.checksum) {
        report.problems.push(`${backend.name}:${sidecar.path}: checksum ${actual}, metadata says ${sidecar.checksum}`);
        continue;
      }
    }
    await restore(catalog, { ...sidecar, backend: backend.name, storedBytes }, report);
  }
  for (const key of dataKeys) report.problems.push(`${backend.name}:${key}: data without metadata (not indexed)`);
}

/**
 * Records `replica` stored, as rebuilt (recordStored changes nothing for a replica it already
 * records stored), unless the catalog records it expired: on a live catalog, a live leftover
 * record of a replica retention deleted (a retried append nothing pointed at) must not bring it back.
 */
async function restore(catalog: Catalog, replica: Omit<StoredReplicaInput, 'attempts'>, report: ReindexReport): Promise<void> {
  if ((await catalog.getReplica(replica.chunkId, replica.replicaId))?.status === 'expired') return;
  await catalog.recordStored({ ...replica, attempts: 0, rebuilt: true });
  report.restored += 1;
}
