/**
 * The last steps of making a replica durable, shared by writes and repairs: read the object
 * back and check it (verify_on_write; the put's own read-back of the durable object where it
 * made one, none for a hard link to a checked staged file), store its metadata (store_metadata:
 * a sidecar object, or a line in a local backend's journal; a packed replica's is its pack
 * record's header, written with its bytes), and record it stored in the catalog. Called only
 * after the backend's put succeeded. Returns the chunk's status afterwards.
 */
import type { Config } from '../config/config.schema.js';
import { checksumOfObject, type Backend, type PutReceipt } from '../backends/backend.js';
import type { Catalog, StoredReplicaInput } from '../catalog/catalog.js';
import type { ChunkStatus } from '../domain/types.js';
import { BackendIoError } from '../errors.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import { startTimer, type ProcessMetrics } from '../metrics/process-metrics.js';
import { parsePackedKey } from '../backends/pack/packed-key.js';

export interface CommitDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  metrics: ProcessMetrics;
}

export async function commitReplica(
  { config, catalog, metadata, metrics }: CommitDeps, backend: Backend, record: StoredReplicaInput, receipt?: PutReceipt | void,
): Promise<ChunkStatus> {
  // A link to a checked source holds the bytes that check read (PutReceipt.linkedToCheckedSource).
  if (config.storage.integrity.verify_on_write && !receipt?.linkedToCheckedSource) {
    const putReadBack = receipt?.readBack;
    const elapsed = startTimer();
    // The put's own read-back of the durable bytes (the same file, renamed since) is the check: reading it again would read the same pages.
    const readBack = putReadBack ?? (await checksumOfObject(backend, record.path, record.algorithm));
    metrics.verified(backend.name, 'write', putReadBack?.seconds ?? elapsed(), readBack.sizeBytes);
    if (readBack.checksum !== record.checksum || readBack.sizeBytes !== record.sizeBytes) {
      metrics.mismatch(backend.name, 'verify');
      // The write was acknowledged but reads back wrong: the medium, not the input, is at fault.
      throw new BackendIoError(
        `verify_on_write: ${record.path} on ${backend.name} reads back as ${readBack.checksum} (${readBack.sizeBytes} bytes), expected ${record.checksum} (${record.sizeBytes} bytes)`,
      );
    }
  }
  // A write that comes back late (its worker was cut off while another took the job over and
  // stored the replica) wrote the same bytes under the same key; its metadata would only
  // disagree with the catalog's (another storedAt), so it records none. A packed replica's
  // metadata is its record's header, appended and made durable with its bytes: nothing to add.
  if (config.storage.integrity.store_metadata && !parsePackedKey(record.path) && !(await storedAlready(catalog, record))) {
    await metadata.of(backend).record(record);
  }
  return catalog.recordStored(record);
}

/** Whether the catalog already records the replica stored where `record` puts it. */
async function storedAlready(catalog: Catalog, record: StoredReplicaInput): Promise<boolean> {
  const current = await catalog.getReplica(record.chunkId, record.replicaId);
  return current?.status === 'stored' && current.backend === record.backend && current.path === record.path;
}
