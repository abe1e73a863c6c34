/**
 * The one way a job handler gets its logger: a child of the process logger bound to the
 * job (queue, job id) and to what the job is about (chunk, replica, backend), so every
 * line a job writes can be found by any of them. Secrets are redacted by the parent's
 * configuration (src/logging/logger.ts), which children inherit.
 */
import type { Job } from 'bullmq';
import type { Logger } from '../logging/logger.js';

export interface JobBindings {
  chunkId?: string;
  replicaId?: string;
  backend?: string;
  cloudProvider?: string;
}

export function jobLogger(logger: Logger, job: Pick<Job, 'queueName' | 'id' | 'name'>, bindings: JobBindings = {}): Logger {
  const defined = Object.fromEntries(Object.entries(bindings).filter(([, value]) => value !== undefined));
  return logger.child({ queue: job.queueName, job: job.name, jobId: job.id, ...defined });
}
