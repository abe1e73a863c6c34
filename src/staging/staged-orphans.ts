/**
 * Which staged bytes no job needs any more, and freeing them: the staging area's own policy.
 * A worker can die between ending a chunk and freeing its bytes, a producer before queuing
 * their jobs, Redis can lose the jobs, and a chunk queued twice at once is staged twice.
 * Younger bytes than `olderThanMs` are left alone: a producer may be between staging them and
 * queuing their jobs.
 */
import type { Queue } from 'bullmq';
import type { Catalog } from '../catalog/catalog.js';
import type { ReplicaQueues } from '../jobs/replica-queues.js';
import type { Logger } from '../logging/logger.js';
import { finalizeJobIdOfStagedKey, replicaJobId } from '../jobs/job-table.js';
import { isSegment, type StagingArea } from './staging-area.js';

export interface StagedOrphansDeps {
  catalog: Catalog;
  staging: StagingArea;
  /** The replica queues: a queued replica's job still waiting, delayed or running may read the bytes. */
  replicaQueues: ReplicaQueues;
  /** The chunks queue: a foreign producer's `chunk.finalize` parent frees its flow's bytes itself. */
  chunks: Queue;
  logger: Logger;
}

export class StagedOrphans {
  readonly #deps: StagedOrphansDeps;

  constructor(deps: StagedOrphansDeps) {
    this.#deps = deps;
  }

  /** Frees staged bytes older than `olderThanMs` that no job needs; returns the files freed. Never throws. */
  async sweep(olderThanMs: number): Promise<number> {
    const { catalog, staging, logger } = this.#deps;
    const freed = await staging
      .sweepOrphans((stagedKey) => this.#needed(stagedKey), olderThanMs, Date.now(), async (stagedKey) => {
        if (isSegment(stagedKey)) await catalog.forgetSegment(stagedKey);
      })
      .catch((error: unknown) => {
        logger.warn({ err: error }, 'could not look for staged chunks no job needs; will try again');
        return 0;
      });
    if (freed > 0) logger.warn({ freed }, 'freed staged chunks no job needs any more');
    return freed;
  }

  /**
   * Whether a job may still read staged bytes. A segment: while one of its chunks that have
   * not ended may. A chunk's own file `<chunkId>@<tag>`: while a `chunk.finalize` parent that
   * will free it exists (a flow from a foreign producer), or the chunk may.
   */
  async #needed(stagedKey: string): Promise<boolean> {
    if (isSegment(stagedKey)) {
      for (const chunkId of await this.#deps.catalog.segmentChunks(stagedKey)) if (await this.#chunkMayRead(chunkId)) return true;
      return false;
    }
    if (await this.#deps.chunks.getJob(finalizeJobIdOfStagedKey(stagedKey))) return true;
    return this.#chunkMayRead(stagedKey.slice(0, stagedKey.lastIndexOf('@')));
  }

  /** Whether a replica of the chunk is queued in the catalog and its job is still waiting, delayed or running. */
  async #chunkMayRead(chunkId: string): Promise<boolean> {
    for (const replica of await this.#deps.catalog.listReplicas(chunkId)) {
      if (replica.status !== 'queued') continue;
      const state = await this.#deps.replicaQueues.jobState(replicaJobId(chunkId, replica.replicaId, replica.generation));
      if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return true;
    }
    return false;
  }
}
