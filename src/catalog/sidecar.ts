/**
 * The metadata sidecar stored beside each replica's data: enough to rebuild the replica's
 * catalog record from the backend alone (`chunkvault reindex`).
 */
import { hash } from 'node:crypto';
import { z } from 'zod';
import { idSchema } from '../domain/ids.js';
import { STORED_CODECS, CHECKSUM_ALGORITHMS } from '../domain/types.js';
import type { PutOptions } from '../backends/backend.js';
import type { StoredReplicaInput } from './catalog.js';

export const SIDECAR_FORMAT = 'chunkvault.replica/1';

export const sidecarSchema = z.object({
  format: z.literal(SIDECAR_FORMAT),
  chunkId: idSchema,
  replicaId: idSchema,
  backend: z.string().min(1),
  path: z.string().min(1),
  checksum: z.string().regex(/^[0-9a-f]{32,64}$/),
  algorithm: z.enum(CHECKSUM_ALGORITHMS),
  sizeBytes: z.number().int().nonnegative(),
  targetNode: idSchema,
  cloudProvider: idSchema,
  taskId: idSchema,
  storedAt: z.string().min(1),
  createdAtMs: z.number().int().positive(),
  codec: z.enum(STORED_CODECS).default(''),
  storedBytes: z.number().int().nonnegative().optional(),
});
export type Sidecar = z.infer<typeof sidecarSchema>;

export function encodeSidecar(record: Omit<StoredReplicaInput, 'attempts'>): { sidecar: Sidecar; bytes: Buffer; putOptions: PutOptions } {
  const sidecar: Sidecar = {
    format: SIDECAR_FORMAT,
    chunkId: record.chunkId, replicaId: record.replicaId, backend: record.backend, path: record.path,
    checksum: record.checksum, algorithm: record.algorithm, sizeBytes: record.sizeBytes,
    targetNode: record.targetNode, cloudProvider: record.cloudProvider, taskId: record.taskId,
    storedAt: record.storedAt, createdAtMs: record.createdAtMs,
    codec: record.codec ?? '', storedBytes: record.storedBytes ?? record.sizeBytes,
  };
  const bytes = Buffer.from(`${JSON.stringify(sidecar, null, 2)}\n`);
  return { sidecar, bytes, putOptions: { sizeBytes: bytes.byteLength, checksum: hash('sha256', bytes, 'hex'), algorithm: 'sha256' } };
}
