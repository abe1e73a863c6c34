/**
 * The queues replica jobs (writes and repairs) go to. With `chunkvault.routing.queue_per_backend`
 * each backend has its own, `replicas-<backend>`, so a worker near one cloud serves only that
 * cloud's writes; the shared `replicas` queue always exists too, for jobs that name no routed
 * backend (a foreign producer's flow, a replica whose provider routes nowhere). Off, the shared
 * queue is the only one.
 */
import type { Queue, JobsOptions, JobState } from 'bullmq';
import { QUEUE_NAMES } from './job-table.js';

/** The queue of replica jobs for `backend` when queues are per backend. */
export function replicaQueueName(backend: string): string {
  return `${QUEUE_NAMES.replicas}-${backend}`;
}

/** The backend whose replica queue `queueName` is, or undefined for any other queue. */
export function backendOfReplicaQueue(queueName: string): string | undefined {
  const prefix = replicaQueueName('');
  return queueName.startsWith(prefix) && queueName.length > prefix.length ? queueName.slice(prefix.length) : undefined;
}

/** A replica job and the backend it writes to (which picks its queue). */
export interface ReplicaJob {
  backend: string;
  name: 'replica.write' | 'replica.repair';
  data: object;
  opts: JobsOptions;
}

export class ReplicaQueues {
  readonly #shared: Queue;
  readonly #byBackend: ReadonlyMap<string, Queue>;
  readonly #replicated: (() => Promise<void>) | undefined;

  /**
   * `byBackend`: the per-backend queues, by backend name (empty when queues are not per backend).
   * `replicated`: resolves once Redis replicas hold what was written before it (Catalog.confirmReplicated); addBulk waits on it.
   */
  constructor(shared: Queue, byBackend: ReadonlyMap<string, Queue>, replicated?: () => Promise<void>) {
    this.#shared = shared;
    this.#byBackend = byBackend;
    this.#replicated = replicated;
  }

  /** The queue a replica job for `backend` goes to. */
  of(backend: string): Queue {
    return this.#byBackend.get(backend) ?? this.#shared;
  }

  /** Every replica queue, the shared one first. */
  all(): Queue[] {
    return [this.#shared, ...this.#byBackend.values()];
  }

  /**
   * Adds `jobs`, each to its backend's queue (one addBulk per queue), and returns once the Redis
   * replicas min_replicas_acked asks for hold them (ReplicationLagError when they do not in
   * time). Job ids are fixed, so adding again adds nothing.
   */
  async addBulk(jobs: readonly ReplicaJob[]): Promise<void> {
    const byQueue = new Map<Queue, ReplicaJob[]>();
    for (const job of jobs) {
      const queue = this.of(job.backend);
      const batch = byQueue.get(queue);
      if (batch) batch.push(job);
      else byQueue.set(queue, [job]);
    }
    await Promise.all([...byQueue].map(([queue, batch]) => queue.addBulk(batch.map(({ name, data, opts }) => ({ name, data, opts })))));
    await this.#replicated?.();
  }

  /** The state of the job `jobId` on whichever replica queue holds it ('unknown' when none does). */
  async jobState(jobId: string): Promise<JobState | 'unknown'> {
    for (const queue of this.all()) {
      const state = await queue.getJobState(jobId);
      if (state !== 'unknown') return state;
    }
    return 'unknown';
  }
}
