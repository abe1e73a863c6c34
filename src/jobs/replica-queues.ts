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
  readonly #held: ((keys: readonly string[]) => Promise<void>) | undefined;

  /**
   * `byBackend`: the per-backend queues, by backend name (empty when queues are not per backend).
   * `held`: resolves once the given keys are on the Redis master and on the replicas it needs
   * (Catalog.confirmHeld); addBulk waits on it with its jobs' keys.
   */
  constructor(shared: Queue, byBackend: ReadonlyMap<string, Queue>, held?: (keys: readonly string[]) => Promise<void>) {
    this.#shared = shared;
    this.#byBackend = byBackend;
    this.#held = held;
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
   * master holds them and the replicas min_replicas_acked asks for do too (ReplicationLagError
   * when they do not in time; WritesLostError when the master does not have them: the queues'
   * connection had sent them to a master that was demoted and dropped them, so add them again).
   * Job ids are fixed, so adding again adds nothing; a job already finished and removed is
   * added once more and finds its work done.
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
    // A job's hash is its key in BullMQ, whatever its state.
    await this.#held?.([...byQueue].flatMap(([queue, batch]) => batch.flatMap(({ opts }) => (opts.jobId === undefined ? [] : [queue.toKey(opts.jobId)]))));
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
