/**
 * Producer side of a scenario: hands a workload to `vault.producer.store` in batches, records
 * what was handed over, and waits for (and records) what the producer is told.
 */
import type { Chunkvault } from '../../../src/app.js';
import type { StoreHandle } from '../../../src/producer/store-handle.js';
import type { Acknowledgements, Workload } from './workload.js';

export interface IngestOptions {
  /** Chunks per store() call; default 100. */
  batch?: number;
  /** Awaited before each store() call with the batch's index: paces ingest to the faults, so they land among writes however fast the writes are. */
  beforeBatch?: (index: number) => Promise<void>;
  from?: number;
  to?: number;
}

/** Queues the workload's chunks [from, to) batch by batch; returns the handles (replicas tracked in `acks`). */
export async function submit(vault: Chunkvault, workload: Workload, acks: Acknowledgements, options: IngestOptions = {}): Promise<StoreHandle[]> {
  const handles: StoreHandle[] = [];
  for (const tasks of workload.batches(options.batch ?? 100, undefined, options.from, options.to)) {
    await options.beforeBatch?.(handles.length);
    const handle = await vault.producer.store(tasks);
    if (handle.rejected.length) throw new Error(`the producer refused ${handle.rejected.length} replica(s): ${handle.rejected[0]!.error}`);
    acks.track(handle);
    handles.push(handle);
  }
  return handles;
}

/** Waits for every handle's results and records them as acknowledgements; rejects when one times out. */
export async function acknowledge(handles: readonly StoreHandle[], acks: Acknowledgements, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const handle of handles) acks.acknowledge(await handle.results({ timeoutMs: Math.max(1, deadline - Date.now()), pollIntervalMs: 50 }));
}
