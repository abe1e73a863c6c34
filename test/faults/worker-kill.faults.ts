/**
 * Worker processes killed with SIGKILL at seeded random moments, again and again, while a
 * producer ingests; each killed worker is restarted. Then every invariant must hold: what
 * was acknowledged reads back exactly, nothing torn or temp is left, every stored chunk is in
 * exactly one checkpoint, the catalog matches the disk, and no replica job was lost.
 */
import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../../src/app.js';
import { makeTestEnv, openVault, type TestEnv } from '../support/harness.js';
import { Acknowledgements, Rng, Workload, scenarioSeed } from './support/workload.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { FigureRecorder } from './support/figures.js';
import { WorkerFleet } from './support/worker-fleet.js';
import { acknowledge, submit } from './support/ingest.js';
import { queuesDrained } from './support/scenario-run.js';

const figures = new FigureRecorder('worker-kill', 'SIGKILL a random one of 3 `chunkvault worker` processes at random moments while ingesting; restart it');
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

describe('worker processes killed with SIGKILL at random moments', () => {
  // The third run keeps replicas up to 64 KiB in pack files: a kill lands mid-append too.
  for (const [run, [fallbackSeed, packing]] of ([[101, 0], [202, 0], [303, 64 * 1024]] as const).entries()) {
    const seed = scenarioSeed(fallbackSeed);
    const packed = packing > 0 ? ', small replicas in pack files' : '';
    it(`run ${run + 1} (seed ${seed}${packed}): every invariant holds after repeated kills and restarts`, async () => {
      const started = Date.now();
      env = await makeTestEnv({
        storage: { organization: { checkpoint_interval_chunks: 25 }, performance: { max_concurrent_writes: 8 } },
        chunkvault: { retry: { attempts: 8, backoff_ms: 50 }, packing: { max_chunk_bytes: packing }, worker: { concurrency: 8 } },
      });
      vault = await openVault(env);
      fleet = new WorkerFleet(env);
      const rng = new Rng(seed);
      // 250 chunks in ten batches of 25: each batch still waits for its kill, so a run has
      // the same 8 or more kills among writes as with 500; more chunks per batch only made
      // the ingest and the check longer (CI time), not the kills more or different.
      const workload = new Workload({ seed, chunks: 250, maxBytes: 256 * 1024 });
      const acks = new Acknowledgements();

      await fleet.start(3);
      const ingest = (async () => {
        // Ten batches, each queued only once there were as many kills as batches before it
        // (up to 8): the kills land among writes however fast the workers are.
        const handles = await submit(vault!, workload, acks, {
          batch: 25,
          beforeBatch: async (index) => {
            while (fleet!.kills < Math.min(index, 8)) await sleep(25);
          },
        });
        await acknowledge(handles, acks, 200_000);
      })();
      const kills = await fleet.chaos(rng, ingest, { minMs: 150, maxMs: 900, maxKills: 30 });
      await ingest;
      // Acknowledged is not finished: chunk jobs (staging release, checkpoints) may still run.
      await queuesDrained(vault);
      await fleet.stop();

      const report = await checkInvariants(vault, workload, { acks, faultsInjected: kills });
      const tornWritesSwept = fleet.tempFilesRemovedAtStart() + report.counts.tempFilesSwept;
      figures.add(report, Date.now() - started, { kills, restarts: fleet.restarts, workers: 3, tempFilesOfKilledWritesSwept: tornWritesSwept });
      console.log(`[worker-kill] seed ${seed}: ${kills} kills, ${tornWritesSwept} temp files of killed writes swept, ${JSON.stringify(report.counts)}`);
      expectInvariants(report, 'npx vitest run --config vitest.faults.config.ts test/faults/worker-kill.faults.ts');
      // The scenario must have done what it claims: faults, and acknowledged work to protect.
      expect(kills).toBeGreaterThanOrEqual(8);
      // Only a kill between a chunk's end and the freeing of its bytes leaves them to the
      // sweep: at most the writes in flight on each killed worker, never the rule.
      expect(report.counts.stagedOrphansSwept).toBeLessThanOrEqual(kills * 8);
      expect(report.counts.acknowledgedChunks).toBeGreaterThan(workload.chunks.length * 0.9);
      const packFiles = (await readdir(env.basePath, { recursive: true })).filter((name) => name.endsWith('.pack'));
      if (packing > 0) expect(packFiles.length).toBeGreaterThan(0);
      else expect(packFiles).toEqual([]);
    });
  }
});
