/**
 * Validation of what a coordinator hands the producer. A task that fails it is reported as
 * failed replicas with the reason, and nothing of it is staged or queued.
 */
import { z } from 'zod';
import { idSchema, replicaIdSchema } from '../domain/ids.js';

const replicaSchema = z.object({
  replicaId: replicaIdSchema,
  chunkId: idSchema,
  targetNode: idSchema,
  cloudProvider: idSchema,
  status: z.string(),
});

export const distributionTaskSchema = z
  .object({
    taskId: idSchema,
    chunkId: idSchema,
    chunkData: z.instanceof(Uint8Array, { message: 'must be a Uint8Array or Buffer of the chunk bytes' }),
    status: z.string(),
    replicas: z.array(replicaSchema),
  })
  .superRefine((task, ctx) => {
    const seen = new Set<string>();
    for (const [i, replica] of task.replicas.entries()) {
      if (replica.chunkId !== task.chunkId) {
        ctx.addIssue({ code: 'custom', path: ['replicas', i, 'chunkId'], message: `is ${replica.chunkId}, the task's chunk is ${task.chunkId}` });
      }
      if (seen.has(replica.replicaId)) {
        ctx.addIssue({ code: 'custom', path: ['replicas', i, 'replicaId'], message: `${replica.replicaId} appears twice in the task` });
      }
      seen.add(replica.replicaId);
    }
  });
