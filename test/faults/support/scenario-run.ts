/**
 * The moves the backend-fault and corruption scenarios share: run a workload to its end,
 * wait for the queues to drain, and stop a worker process the way an operator would.
 */
import type { Chunkvault } from '../../../src/app.js';
import type { spawnCli } from '../../support/harness.js';
import { waitFor } from '../../support/harness.js';
import { acknowledge, submit } from './ingest.js';
import { Acknowledgements, type Workload } from './workload.js';

export type WorkerProcess = Awaited<ReturnType<typeof spawnCli>>;

/** Queues and acknowledges a whole workload (see ingest.ts); returns what the producer was told. */
export async function runWorkload(vault: Chunkvault, workload: Workload, timeoutMs: number, batch = 250): Promise<Acknowledgements> {
  const acks = new Acknowledgements();
  await acknowledge(await submit(vault, workload, acks, { batch }), acks, timeoutMs);
  return acks;
}

/** Resolves once no job is waiting, active, delayed or prioritized on any queue. */
export async function queuesDrained(vault: Chunkvault, timeoutMs = 60_000): Promise<void> {
  await waitFor('the queues to drain', async () => {
    for (const name of ['replicas', 'chunks']) {
      const counts = await vault.queue(name).getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
      if (Object.values(counts).some((n) => n > 0)) return false;
    }
    return true;
  }, timeoutMs, 100);
}

/** SIGTERM, then the worker's own bounded shutdown; throws unless it exits 0. */
export async function stopWorker(worker: WorkerProcess): Promise<void> {
  if (worker.exitCode !== null) return;
  worker.kill('SIGTERM');
  const run = await worker.done;
  if (run.code !== 0) throw new Error(`worker exited ${run.code ?? run.signal} on SIGTERM: ${run.stderr.slice(-2000)}`);
}
