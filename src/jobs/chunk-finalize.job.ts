/**
 * chunk.finalize: runs once every replica job of a chunk's flow has ended. Records replicas
 * whose jobs ended without reaching the catalog (e.g. failed after stalling too often) as
 * failed, so the chunk's status is final, frees the chunk's staged bytes, and lets the
 * checkpoint aggregator seal any interval that is now full.
 */
import type { Job } from 'bullmq';
import type { Catalog } from '../catalog/catalog.js';
import type { StagingArea } from '../staging/staging-area.js';
import type { Logger } from '../logging/logger.js';
import type { CheckpointService } from '../checkpoints/checkpoint-service.js';
import type { ChunkFinalizeData } from './job-data.js';
import { replicaJobId } from './job-table.js';
import { jobLogger } from './job-logger.js';

export interface ChunkFinalizerDeps {
  catalog: Catalog;
  staging: StagingArea;
  checkpoints: CheckpointService;
  logger: Logger;
}

export interface ChunkFinalizeResult {
  chunkId: string;
  status: string;
}

export class ChunkFinalizer {
  readonly #deps: ChunkFinalizerDeps;

  constructor(deps: ChunkFinalizerDeps) {
    this.#deps = deps;
  }

  async handle(job: Job, data: ChunkFinalizeData): Promise<ChunkFinalizeResult> {
    const { chunkId, stagedKey, replicas } = data;
    const { catalog, staging } = this.#deps;
    const log = jobLogger(this.#deps.logger, job, { chunkId });

    const failures = await job.getIgnoredChildrenFailures();
    const reasonByJobId = new Map<string, string>();
    for (const [childKey, reason] of Object.entries(failures)) reasonByJobId.set(childKey.slice(childKey.lastIndexOf(':') + 1), reason);

    const records = await catalog.getReplicas(replicas.map((r) => ({ chunkId, replicaId: r.replicaId })));
    let status: string = 'pending';
    for (const [i, replica] of replicas.entries()) {
      const record = records[i];
      // Only this flow's generation: a newer job for the same replica may be running.
      if (record?.status !== 'queued' || record.generation !== replica.generation) continue;
      const reason = reasonByJobId.get(replicaJobId(chunkId, replica.replicaId, replica.generation)) ?? 'replica job ended without a result';
      status = await catalog.recordFailed(chunkId, replica.replicaId, record.backend, reason, record.attempts);
      log.warn({ replicaId: replica.replicaId, backend: record.backend, reason }, 'replica job ended without reaching the catalog; recorded failed');
    }
    await staging.release(stagedKey);
    // Sealing errors fail this job, whose retry seals again: the ledger keeps the chunks meanwhile.
    await this.#deps.checkpoints.sealDue();
    const chunk = await catalog.getChunk(chunkId);
    status = chunk?.status ?? status;
    log.debug({ status }, 'chunk ended');
    return { chunkId, status };
  }
}
