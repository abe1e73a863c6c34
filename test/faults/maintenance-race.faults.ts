/**
 * Maintenance racing with ingest: retention, compression and scrub passes run back to back
 * (with an injected clock, so replicas stored seconds ago count as old) while a producer keeps
 * adding chunks to 2 worker processes and readers fetch acknowledged chunks.
 *
 * Retention deletes on a rolling window (replicas stored more than a few seconds ago), so data
 * is deleted while newer data arrives and is read. Reads must return the exact bytes, or say
 * the chunk was deleted by retention; nothing else. Afterwards every invariant holds, with
 * `expired` allowed only for replicas retention reported deleting.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Chunkvault } from '../../src/app.js';
import { NotFoundError, describeError } from '../../src/errors.js';
import type { MaintenanceTaskName } from '../../src/maintenance/maintenance-service.js';
import { makeTestEnv, openVault, type TestEnv } from '../support/harness.js';
import { Acknowledgements, Rng, Workload, scenarioSeed } from './support/workload.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { FigureRecorder } from './support/figures.js';
import { WorkerFleet } from './support/worker-fleet.js';
import { queuesDrained } from './support/scenario-run.js';

const DAY_MS = 24 * 3600 * 1000;
const RETENTION_DAYS = 30;
const COMPRESSION_AGE_DAYS = 7;
const REPRODUCE = 'npx vitest run --config vitest.faults.config.ts test/faults/maintenance-race.faults.ts';
const figures = new FigureRecorder('maintenance-race', 'retention, compression and scrub passes (injected clock) racing with ingest into 2 worker processes and reads', REPRODUCE);

let env: TestEnv | undefined;
let vault: Chunkvault | undefined;
let fleet: WorkerFleet | undefined;

afterEach(async () => {
  await fleet?.close();
  await vault?.close();
  await env?.cleanup();
  fleet = vault = env = undefined;
});
afterAll(async () => {
  await figures.write();
});

describe('retention and compression racing with ingest and reads', () => {
  for (const [run, fallbackSeed] of [505, 606].entries()) {
    const seed = scenarioSeed(fallbackSeed);
    it(`run ${run + 1} (seed ${seed}): reads never return wrong bytes, and every invariant holds`, async () => {
      const started = Date.now();
      env = await makeTestEnv({
        storage: {
          organization: { checkpoint_interval_chunks: 20 },
          performance: { max_concurrent_writes: 8 },
          cleanup: { retention_days: RETENTION_DAYS, compression_age_days: COMPRESSION_AGE_DAYS, compress_old_data: true, enable_auto_cleanup: false },
        },
        chunkvault: { retry: { attempts: 5, backoff_ms: 50 }, worker: { concurrency: 8 }, maintenance: { scrub_replicas_per_pass: 40, compress_replicas_per_pass: 200 } },
      });
      vault = await openVault(env);
      const v = vault;
      fleet = new WorkerFleet(env);
      await fleet.start(2);
      const rng = new Rng(seed);
      const workload = new Workload({ seed, chunks: 300, maxBytes: 256 * 1024 });
      const acks = new Acknowledgements();
      const retentionDeleted = new Set<string>();
      const tally = { passes: 0, replicasExpired: 0, replicasCompressed: 0, scrubbed: 0, reads: 0, readsExpired: 0, readFailures: [] as string[], corruptReturned: 0 };

      // Ingest: batches of 20, each acknowledged as it completes, so reads can pick from what is acknowledged.
      const ingest = (async () => {
        for (const tasks of workload.batches(20)) {
          const handle = await v.producer.store(tasks);
          acks.track(handle);
          acks.acknowledge(await handle.results({ timeoutMs: 120_000, pollIntervalMs: 50 }));
          await sleep(rng.int(100, 600)); // a steady trickle, so passes and reads overlap ingest throughout
        }
      })();
      // Passes and reads race the ingest, and go on after it (up to 30 s) until retention has
      // expired something: on a slow machine 3 passes in the ingest could all cut off before the
      // first replica was stored, leaving no deletion for the reads to race.
      let ingestEndedAt: number | undefined;
      const racing = (): boolean => ingestEndedAt === undefined || (tally.replicasExpired === 0 && Date.now() < ingestEndedAt + 30_000);
      const ingestDone = ingest.finally(() => (ingestEndedAt = Date.now()));

      // Maintenance: passes back to back; each one's clock puts the cutoffs a few seconds behind now.
      const maintenance = (async () => {
        while (racing()) {
          // 1-4 s: with an ingest of ~10 s and 3-4 passes in it, a lag of up to 6 s let a CI run
          // on a slow machine end with nothing expired (no race to check) in both seeds.
          const retentionLagMs = rng.int(1000, 4000);
          const tasks: MaintenanceTaskName[] = rng.next() < 0.3 ? ['retention', 'compression', 'scrub'] : ['retention', 'compression'];
          const now = (): number => Date.now() + RETENTION_DAYS * DAY_MS - retentionLagMs;
          // Compression's cutoff is (retention - compression) days earlier: everything older than ~lag compresses too.
          const report = await v.maintenance.runPass({ tasks, now });
          if (report.skipped) continue;
          tally.passes += 1;
          for (const item of report.retention?.deleted ?? []) retentionDeleted.add(`${item.chunkId}:${item.replicaId}`);
          tally.replicasExpired += report.retention?.replicasDeleted ?? 0;
          tally.replicasCompressed += report.compression?.replicasCompressed ?? 0;
          tally.scrubbed += report.scrub?.replicasChecked ?? 0;
          await sleep(rng.int(0, 300));
        }
      })();

      // Readers: acknowledged chunks, picked at random, read while maintenance works on them.
      const readers = Array.from({ length: 2 }, async () => {
        while (racing()) {
          const acknowledged = [...acks.acknowledgedChunks];
          if (acknowledged.length === 0) {
            await sleep(50);
            continue;
          }
          const chunkId = acknowledged[Math.floor(rng.next() * acknowledged.length)]!;
          tally.reads += 1;
          try {
            const bytes = await v.getChunk(chunkId);
            if (!bytes.equals(workload.bytesOf(chunkId))) tally.corruptReturned += 1;
          } catch (error) {
            if (error instanceof NotFoundError && /deleted by retention/.test(error.message)) tally.readsExpired += 1;
            else tally.readFailures.push(`${chunkId}: ${describeError(error)}`);
          }
        }
      });

      await ingestDone;
      await Promise.all([maintenance, ...readers]);
      // Let chunk jobs and the repairs queued by reads and scrubs finish before looking.
      await queuesDrained(v);
      await fleet.stop();

      // Replicas found bad meanwhile: by reads or scrubs racing a compression or a deletion.
      const { corruptions_found: corruptionsFound, repairs_done: repairsDone } = await v.getStatistics();
      const faults = tally.passes;
      const report = await checkInvariants(v, workload, { acks, faultsInjected: faults, retentionDeleted });
      report.counts.corruptReturned += tally.corruptReturned;
      figures.add(report, Date.now() - started, {
        maintenancePasses: tally.passes, replicasExpired: tally.replicasExpired, replicasCompressed: tally.replicasCompressed,
        replicasScrubbed: tally.scrubbed, racingReads: tally.reads, readsOfExpiredChunks: tally.readsExpired, readFailures: tally.readFailures.length,
        corruptionsFound, repairsDone,
      });
      console.log(`[maintenance-race] seed ${seed}: ${JSON.stringify({ ...tally, readFailures: tally.readFailures.slice(0, 5), corruptionsFound, repairsDone })} ${JSON.stringify(report.counts)}`);
      expectInvariants(report, REPRODUCE);
      expect(tally.corruptReturned).toBe(0);
      // A read of an acknowledged chunk either returns its bytes or says retention deleted it.
      expect(tally.readFailures).toEqual([]);
      // The race happened: data was expired and compressed while chunks arrived and were read.
      expect(tally.replicasExpired).toBeGreaterThan(0);
      expect(tally.replicasCompressed).toBeGreaterThan(0);
      expect(tally.reads).toBeGreaterThan(50);
    });
  }
});
