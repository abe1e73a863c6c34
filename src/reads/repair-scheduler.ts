/**
 * Queues `replica.repair` jobs. One job per corruption of a replica (the job id carries the
 * replica's corruption number), so finding the same bad replica twice queues it once, and
 * a replica that goes bad again after its repair gets a new job.
 */
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { Logger } from '../logging/logger.js';
import type { ReplicaRepairData } from '../jobs/job-data.js';
import { repairJobId } from '../jobs/job-table.js';
import type { ReplicaQueues } from '../jobs/replica-queues.js';

export class RepairScheduler {
  constructor(
    private readonly config: Config,
    private readonly catalog: Catalog,
    /** Where replica jobs go (a repair goes to the queue of the replica's backend). */
    private readonly queues: ReplicaQueues,
    private readonly logger: Logger,
  ) {}

  /** Queues a repair of the replica (from `sourceReplicaId` first, if given) if it is still corrupt. */
  async schedule(chunkId: string, replicaId: string, sourceReplicaId?: string): Promise<void> {
    const current = await this.catalog.getReplica(chunkId, replicaId);
    if (!current || current.status !== 'corrupt') return;
    const data: ReplicaRepairData = sourceReplicaId ? { chunkId, replicaId, sourceReplicaId } : { chunkId, replicaId };
    const { retry, jobs } = this.config.chunkvault;
    await this.queues.of(current.backend).add('replica.repair', data, {
      jobId: repairJobId(chunkId, replicaId, current.corruptions),
      attempts: retry.attempts,
      backoff: { type: 'exponential', delay: retry.backoff_ms },
      removeOnComplete: { age: jobs.keep_completed_seconds },
      removeOnFail: { age: jobs.keep_failed_seconds },
    });
    this.logger.info({ chunkId, replicaId, sourceReplicaId }, 'repair queued');
  }
}
