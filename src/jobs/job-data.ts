/**
 * Payloads of chunkvault's jobs. Small by design: ids, checksum, size and where the staged
 * bytes are; never the bytes themselves.
 */
import { z } from 'zod';
import { idSchema, replicaIdSchema } from '../domain/ids.js';
import { CHECKSUM_ALGORITHMS, MAINTENANCE_TASKS } from '../domain/types.js';
import { isSegment } from '../staging/staging-area.js';

const checksumSchema = z.string().regex(/^[0-9a-f]{32}$|^[0-9a-f]{64}$/, 'must be a lowercase hex md5 (32) or sha256 (64) digest');
// At most 255 characters and no "..": what the staging directory (a local backend) accepts as a file name.
const stagedKeySchema = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.@#-]{0,254}$/, 'must be a plain staging file name')
  .regex(/^(?!.*\.\.)/, 'must not contain ".."');
/** The last millisecond of year 9999 (UTC): later times have no YYYY/MM/DD date partition. */
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

export const replicaWriteDataSchema = z
  .object({
    chunkId: idSchema,
    replicaId: replicaIdSchema,
    taskId: idSchema,
    targetNode: idSchema,
    cloudProvider: idSchema,
    checksum: checksumSchema,
    algorithm: z.enum(CHECKSUM_ALGORITHMS),
    sizeBytes: z.number().int().nonnegative(),
    /** File name of the chunk's staged bytes inside the staging directory. */
    stagedKey: stagedKeySchema,
    /** Where the chunk's sizeBytes start in that file when it holds many chunks (a segment); absent: the whole file. */
    stagedOffset: z.number().int().nonnegative().optional(),
    /**
     * This replica may be a hard link to the chunk's staged file, where the backend and the
     * staging directory are one local filesystem (no byte written again). The producer sets it
     * on at most one replica of a chunk, so no two replicas share a file.
     */
    linkStaged: z.literal(true).optional(),
    /** When the chunk was first queued (ms since epoch, UTC); fixes the date partition across retries. */
    createdAtMs: z.number().int().positive().max(MAX_TIME_MS, 'must be a time before the year 10000'),
  })
  .strict()
  .superRefine((data, ctx) => {
    if (isSegment(data.stagedKey) !== (data.stagedOffset !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['stagedOffset'], message: 'is given exactly when stagedKey names a staging segment (_seg#...)' });
    }
    const expected = data.algorithm === 'md5' ? 32 : 64;
    if (data.checksum.length !== expected) {
      ctx.addIssue({ code: 'custom', path: ['checksum'], message: `a ${data.algorithm} digest has ${expected} hex characters, got ${data.checksum.length}` });
    }
  });
export type ReplicaWriteData = z.infer<typeof replicaWriteDataSchema>;

export const chunkFinalizeDataSchema = z
  .object({
    chunkId: idSchema,
    stagedKey: stagedKeySchema,
    /** The replicas this flow writes, with the generation of each one's job. */
    replicas: z.array(z.object({ replicaId: replicaIdSchema, generation: z.number().int().nonnegative() }).strict()).min(1),
  })
  .strict();
export type ChunkFinalizeData = z.infer<typeof chunkFinalizeDataSchema>;

export const replicaRepairDataSchema = z
  .object({
    chunkId: idSchema,
    /** The replica to rewrite. */
    replicaId: replicaIdSchema,
    /** A replica found good when the bad one was found; tried first. */
    sourceReplicaId: replicaIdSchema.optional(),
  })
  .strict();
export type ReplicaRepairData = z.infer<typeof replicaRepairDataSchema>;

export const maintenanceRunDataSchema = z
  .object({
    /** Which passes to run; all when absent. */
    tasks: z.array(z.enum(MAINTENANCE_TASKS)).min(1).optional(),
  })
  .strict();

/** "chunkId: must not contain ..; replicaId: ..." from a zod error. */
export type MaintenanceRunData = z.infer<typeof maintenanceRunDataSchema>;

export function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || 'data'}: ${issue.message}`).join('; ');
}
