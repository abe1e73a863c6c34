/**
 * What this process saw happen: latencies, bytes moved, retries, checksum mismatches,
 * repairs and job outcomes, as Prometheus instruments in a registry of its own (never
 * prom-client's global one, so two vaults in one process never share or clash).
 *
 * These figures are per process and reset when it restarts: Prometheus sums them across
 * workers. Cluster-wide state (what is stored, queue depths) is read from Redis at scrape
 * time instead, see cluster-metrics.ts.
 *
 * Glossary of the labels:
 *   backend  backend name as recorded in the catalog ("local", "s3", ...; "none" when unrouted)
 *   cloud    the replica's cloud provider as the coordinator named it
 *   trigger  what found or verified the bytes: write (the backend refused the put's bytes),
 *            verify (verify_on_write read-back), read (a chunk read), repair (a repair's source)
 *   purpose  why bytes were read: verify, read, repair
 */
import { Counter, Histogram, Registry } from 'prom-client';

export type MismatchTrigger = 'write' | 'verify' | 'read' | 'repair';
export type VerifyTrigger = 'write' | 'read';
export type ReadPurpose = 'verify' | 'read' | 'repair';
/** stored: written and recorded; skipped: already stored (idempotent re-run); retried: failed, BullMQ retries; failed: failed for good. */
export type WriteOutcome = 'stored' | 'skipped' | 'retried' | 'failed';
/** repaired: rewritten from a good replica; unchanged: nothing to do; failed: threw. */
export type RepairOutcome = 'repaired' | 'unchanged' | 'failed';
export type JobOutcome = 'completed' | 'failed';

/** Seconds, from 5 ms to 2 min: a local fsync'd write to a large multipart upload. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class ProcessMetrics {
  readonly registry = new Registry();
  readonly #writeSeconds: Histogram<'backend'>;
  readonly #verifySeconds: Histogram<'backend' | 'trigger'>;
  readonly #bytesWritten: Counter<'backend'>;
  readonly #bytesRead: Counter<'backend' | 'purpose'>;
  readonly #writeAttempts: Counter<'backend' | 'cloud' | 'outcome'>;
  readonly #mismatches: Counter<'backend' | 'trigger'>;
  readonly #repairs: Counter<'backend' | 'outcome'>;
  readonly #jobSeconds: Histogram<'queue' | 'job' | 'outcome'>;
  readonly #workerRestarts: Counter<'queue'>;

  constructor() {
    const registers = [this.registry];
    this.#writeSeconds = new Histogram({
      name: 'chunkvault_replica_write_duration_seconds',
      help: 'Time to put one replica on its backend (bytes checked while written, atomic), for writes and repairs that succeeded',
      labelNames: ['backend'], buckets: LATENCY_BUCKETS, registers,
    });
    this.#verifySeconds = new Histogram({
      name: 'chunkvault_replica_verify_duration_seconds',
      help: 'Time to read a replica back and check it against the chunk checksum (trigger: write = verify_on_write, read = verified chunk read)',
      labelNames: ['backend', 'trigger'], buckets: LATENCY_BUCKETS, registers,
    });
    this.#bytesWritten = new Counter({
      name: 'chunkvault_bytes_written_total',
      help: 'Chunk bytes this process put on backends (replica writes and repairs that succeeded)',
      labelNames: ['backend'], registers,
    });
    this.#bytesRead = new Counter({
      name: 'chunkvault_bytes_read_total',
      help: 'Chunk bytes this process read back from backends and hashed (purpose: verify, read, repair)',
      labelNames: ['backend', 'purpose'], registers,
    });
    this.#writeAttempts = new Counter({
      name: 'chunkvault_replica_write_attempts_total',
      help: 'Replica write attempts by outcome: stored, skipped (already stored), retried (failed, will be retried), failed (failed for good)',
      labelNames: ['backend', 'cloud', 'outcome'], registers,
    });
    this.#mismatches = new Counter({
      name: 'chunkvault_checksum_mismatches_total',
      help: 'Replica bytes found not matching the chunk checksum or size (trigger: write, verify, read, repair)',
      labelNames: ['backend', 'trigger'], registers,
    });
    this.#repairs = new Counter({
      name: 'chunkvault_replica_repairs_total',
      help: 'replica.repair jobs run by this process, by the repaired replica backend and outcome (repaired, unchanged, failed)',
      labelNames: ['backend', 'outcome'], registers,
    });
    this.#jobSeconds = new Histogram({
      name: 'chunkvault_job_duration_seconds',
      help: 'Time this process spent on a job, by queue, job name and outcome (completed, failed: this attempt threw)',
      labelNames: ['queue', 'job', 'outcome'], buckets: LATENCY_BUCKETS, registers,
    });
    this.#workerRestarts = new Counter({
      name: 'chunkvault_worker_restarts_total',
      help: 'BullMQ workers this process replaced because they stopped taking jobs (connection ended, fetch loop stopped, or jobs waited while none was fetched), by queue',
      labelNames: ['queue'], registers,
    });
  }

  /** A put that succeeded: its duration and the bytes it stored. */
  wrote(backend: string, seconds: number, bytes: number): void {
    this.#writeSeconds.observe({ backend }, seconds);
    this.#bytesWritten.inc({ backend }, bytes);
  }

  /** A read-back that ran to its end (intact or not) and the bytes it hashed. */
  verified(backend: string, trigger: VerifyTrigger, seconds: number, bytes: number): void {
    this.#verifySeconds.observe({ backend, trigger }, seconds);
    this.read(backend, trigger === 'write' ? 'verify' : 'read', bytes);
  }

  read(backend: string, purpose: ReadPurpose, bytes: number): void {
    this.#bytesRead.inc({ backend, purpose }, bytes);
  }

  writeAttempt(backend: string, cloud: string, outcome: WriteOutcome): void {
    this.#writeAttempts.inc({ backend, cloud, outcome });
  }

  mismatch(backend: string, trigger: MismatchTrigger): void {
    this.#mismatches.inc({ backend, trigger });
  }

  repair(backend: string, outcome: RepairOutcome): void {
    this.#repairs.inc({ backend, outcome });
  }

  job(queue: string, job: string, outcome: JobOutcome, seconds: number): void {
    this.#jobSeconds.observe({ queue, job, outcome }, seconds);
  }

  workerRestarted(queue: string): void {
    this.#workerRestarts.inc({ queue });
  }
}

/** A stopwatch: call the returned function for the seconds since `startTimer()`. */
export function startTimer(): () => number {
  const started = process.hrtime.bigint();
  return () => Number(process.hrtime.bigint() - started) / 1e9;
}
