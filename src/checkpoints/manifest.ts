/**
 * A checkpoint manifest: an immutable record of the chunks stored in one interval, with a
 * checksum over its own content. Stored under the reserved `_chunkvault/` prefix, which no
 * replica's storage key can reach (ids start with a letter or digit).
 */
import { hash } from 'node:crypto';
import { z } from 'zod';
import { CHECKSUM_ALGORITHMS } from '../domain/types.js';
import { ManifestCorruptError } from '../errors.js';
import { RESERVED_KEY_PREFIX } from '../storage/storage-layout.js';

export const MANIFEST_FORMAT = 'chunkvault.checkpoint/1';
export const CHECKPOINT_KEY_PREFIX = `${RESERVED_KEY_PREFIX}checkpoints/`;

const manifestChunkSchema = z.object({
  chunkId: z.string(),
  checksum: z.string(),
  algorithm: z.enum(CHECKSUM_ALGORITHMS),
  sizeBytes: z.number().int().nonnegative(),
  /** When the chunk was first queued (ms, UTC); lets `reindex` restore the chunk record. */
  createdAtMs: z.number().int().nonnegative(),
  replicas: z.array(z.object({ replicaId: z.string(), backend: z.string(), path: z.string(), status: z.string() })),
});
export type ManifestChunk = z.infer<typeof manifestChunkSchema>;

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  id: z.string(),
  sequence: z.number().int().positive(),
  createdAt: z.string(),
  previousId: z.string().nullable(),
  fromLedgerSeq: z.number().int().nonnegative(),
  toLedgerSeq: z.number().int().positive(),
  chunkCount: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative(),
  chunks: z.array(manifestChunkSchema),
  checksum: z.string(),
});
export type Manifest = z.infer<typeof manifestSchema>;

export function checkpointId(sequence: number): string {
  return `cp-${String(sequence).padStart(8, '0')}`;
}

/** `_chunkvault/checkpoints/<id>-<first 16 hex of its checksum>.json` */
export function manifestKey(id: string, checksum: string): string {
  return `${CHECKPOINT_KEY_PREFIX}${id}-${checksum.slice(0, 16)}.json`;
}

/** sha256 over the manifest's JSON without its checksum field (key order as built). */
export function manifestChecksum(manifest: Omit<Manifest, 'checksum'>): string {
  const { checksum: _ignored, ...body } = manifest as Manifest;
  return hash('sha256', JSON.stringify(body), 'hex');
}

/** Parses a stored manifest and checks its own checksum; throws ManifestCorruptError saying what is wrong. */
export function parseManifest(bytes: Buffer, id: string): Manifest {
  let manifest: Manifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch (error) {
    throw new ManifestCorruptError(id, `checkpoint ${id}: manifest is not a valid checkpoint manifest (${(error as Error).message.split('\n')[0]})`, { cause: error });
  }
  const actual = manifestChecksum(manifest);
  if (actual !== manifest.checksum) throw new ManifestCorruptError(id, `checkpoint ${id}: manifest checksum is ${actual}, it records ${manifest.checksum}`);
  return manifest;
}
