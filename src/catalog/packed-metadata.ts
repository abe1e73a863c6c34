/**
 * The metadata a packed replica's record header carries (ReplicaRecordHeader.metadata): what
 * `reindex` rebuilds its catalog record from, as it rebuilds a file's from its journal line or
 * sidecar (sidecar.ts). It is written in the same append as the bytes, so it is durable exactly
 * when they are, and a packed replica needs no journal line.
 *
 *   targetNode, cloudProvider, taskId, createdAtMs, storedAt   the replica's, as in a sidecar
 *   codec, chunkChecksum ("alg:hex"), chunkSizeBytes           only for a compressed body: its
 *       codec, and the chunk's own checksum and size, which the decoded body has (the header's
 *       checksum and sizeBytes are those of the stored, compressed, bytes)
 *
 * Records written before a header carried all of it (a repair's had none, a compression's only
 * its codec) are completed from the replica's journal line, which such replicas still have.
 */
import { z } from 'zod';
import { idSchema } from '../domain/ids.js';
import { CHECKSUM_ALGORITHMS, CODECS, type ChecksumAlgorithm } from '../domain/types.js';
import type { ReplicaRecordHeader } from '../backends/pack/pack-format.js';
import type { StoredReplicaInput } from './catalog.js';
import type { Sidecar } from './sidecar.js';

const checksumWithAlgorithm = z.string().regex(new RegExp(`^(${CHECKSUM_ALGORITHMS.join('|')}):[0-9a-f]{32,64}$`));

/** Each field optional: a header from before may lack any of them (see above). */
export const packedMetadataSchema = z.object({
  targetNode: idSchema,
  cloudProvider: idSchema,
  taskId: idSchema,
  createdAtMs: z.number().int().positive(),
  storedAt: z.string().min(1),
  codec: z.enum(CODECS),
  chunkChecksum: checksumWithAlgorithm,
  chunkSizeBytes: z.number().int().nonnegative(),
}).partial();
export type PackedMetadata = z.infer<typeof packedMetadataSchema>;

/** What a replica's packed record header holds as its metadata (putPacked's `metadata`). */
export function packedMetadataOf(record: Omit<StoredReplicaInput, 'attempts' | 'backend' | 'path' | 'chunkId' | 'replicaId'>): PackedMetadata {
  const { targetNode, cloudProvider, taskId, createdAtMs, storedAt } = record;
  const metadata: PackedMetadata = { targetNode, cloudProvider, taskId, createdAtMs, storedAt };
  if (record.codec) Object.assign(metadata, { codec: record.codec, chunkChecksum: `${record.algorithm}:${record.checksum}`, chunkSizeBytes: record.sizeBytes });
  return metadata;
}

/**
 * The stored replica the record with `header` at `path` (its packed key) on `backend` makes,
 * its body `bodyLength` bytes; what the header lacks is taken from `journal`, the replica's
 * journal line if it has one. A problem (without the key: the caller names it) when the header
 * does not parse or something is found in neither.
 */
export function replicaOfPackedRecord(
  header: ReplicaRecordHeader, where: { backend: string; path: string; bodyLength: number }, journal?: Sidecar,
): { replica: Omit<StoredReplicaInput, 'attempts'> } | { problem: string } {
  const parsed = packedMetadataSchema.safeParse(header.metadata ?? {});
  const body = splitChecksum(header.checksum);
  if (!parsed.success || !body) return { problem: `record header of ${header.chunkId}/${header.replicaId} does not parse as a replica's` };
  if (header.sizeBytes !== where.bodyLength) return { problem: `record header says ${header.sizeBytes} bytes, its body has ${where.bodyLength}` };
  const meta = parsed.data;
  const codec = meta.codec ?? '';
  // A plain body is the chunk; a compressed one decodes to it.
  const chunk = codec === ''
    ? { ...body, sizeBytes: header.sizeBytes }
    : { ...(splitChecksum(meta.chunkChecksum) ?? (journal ? { algorithm: journal.algorithm, checksum: journal.checksum } : {})), sizeBytes: meta.chunkSizeBytes ?? journal?.sizeBytes };
  const fields = {
    checksum: chunk.checksum, algorithm: chunk.algorithm, sizeBytes: chunk.sizeBytes,
    targetNode: meta.targetNode ?? journal?.targetNode, cloudProvider: meta.cloudProvider ?? journal?.cloudProvider, taskId: meta.taskId ?? journal?.taskId,
    createdAtMs: meta.createdAtMs ?? journal?.createdAtMs, storedAt: meta.storedAt ?? journal?.storedAt,
  };
  const missing = Object.entries(fields).filter(([, value]) => value === undefined).map(([name]) => name);
  if (missing.length) return { problem: `record of ${header.chunkId}/${header.replicaId} lacks ${missing.join(', ')} (written before pack records carried them) and no journal line has them` };
  return {
    replica: {
      ...(fields as { [K in keyof typeof fields]: NonNullable<(typeof fields)[K]> }),
      chunkId: header.chunkId, replicaId: header.replicaId, backend: where.backend, path: where.path,
      codec, storedBytes: where.bodyLength,
    },
  };
}

/** "alg:hex" as its parts, or undefined when it is not one. */
function splitChecksum(value: string | undefined): { algorithm: ChecksumAlgorithm; checksum: string } | undefined {
  if (value === undefined || !checksumWithAlgorithm.safeParse(value).success) return undefined;
  const colon = value.indexOf(':');
  return { algorithm: value.slice(0, colon) as ChecksumAlgorithm, checksum: value.slice(colon + 1) };
}
