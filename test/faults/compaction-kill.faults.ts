/**
 * Compaction killed mid-way: `chunkvault compact` (the pass in a process of its own) is
 * SIGKILLed again and again while it copies the live records out of packs that retention
 * emptied, each time once its new pack has appeared, then run to its end. After every kill
 * each chunk retention kept reads back exactly from wherever the catalog points; afterwards
 * every invariant holds and no pack is left that compaction should still rewrite.
 */
import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { makeTestEnv, openVault, runCli, spawnCli } from '../support/harness.js';
import { Acknowledgements, Rng, Workload, scenarioSeed } from './support/workload.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { FigureRecorder } from './support/figures.js';
import { WorkerFleet } from './support/worker-fleet.js';
import { queuesDrained } from './support/scenario-run.js';
import { scenarioState } from './support/scenario-state.js';

const DAY_MS = 24 * 3600 * 1000;
const REPRODUCE = 'npx vitest run --config vitest.faults.config.ts test/faults/compaction-kill.faults.ts';
const figures = new FigureRecorder('compaction-kill', 'SIGKILL `chunkvault compact` while it rewrites packs retention emptied, again and again; then let it finish', REPRODUCE);

const state = scenarioState(figures);

/** Every pack file under `dir`, relative. */
async function packsUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).filter((name) => name.endsWith('.pack')).sort();
}

describe('compaction killed while it rewrites packs', () => {
  const seed = scenarioSeed(707);
  it(`seed ${seed}: every replica retention kept stays readable after each kill, and every invariant holds`, async () => {
    const started = Date.now();
    const env = (state.env = await makeTestEnv({
      storage: { organization: { checkpoint_interval_chunks: 25 }, cleanup: { retention_days: 30, enable_auto_cleanup: false } },
      chunkvault: { packing: { max_chunk_bytes: 64 * 1024 } },
    }));
    const v = (state.vault = await openVault(env));
    const fleet = (state.fleet = new WorkerFleet(env));
    await fleet.start(2);
    const rng = new Rng(seed);
    const workload = new Workload({ seed, chunks: 300, maxBytes: 48 * 1024 });
    const acks = new Acknowledgements();
    const ingest = async (from: number, to: number): Promise<void> => {
      for (const tasks of workload.batches(50, undefined, from, to)) {
        const handle = await v.producer.store(tasks);
        acks.track(handle);
        acks.acknowledge(await handle.results({ timeoutMs: 120_000, pollIntervalMs: 50 }));
      }
    };
    // Two thirds stored first (retention will take them), a third after the cutoff.
    await ingest(0, 200);
    const cutoff = Date.now();
    await sleep(20);
    await ingest(200, 300);
    await queuesDrained(v);
    await fleet.stop(); // the workers seal their packs as they close

    const retention = await v.maintenance.runPass({ tasks: ['retention'], now: () => cutoff + 30 * DAY_MS });
    const retentionDeleted = new Set((retention.retention?.deleted ?? []).map((d) => `${d.chunkId}:${d.replicaId}`));
    const kept = workload.chunks.slice(200).map((c) => c.chunkId);

    const lockKey = `{${env.prefix}}:catalog:maintenance:lock`;
    const redis = new Redis(v.config.chunkvault.redis.url);
    let kills = 0;
    let killsMidCopy = 0;
    try {
      for (let attempt = 0; attempt < 6; attempt += 1) {
        const before = new Set(await packsUnder(env.basePath));
        const child = spawnCli(['compact', '--json', '--config', env.configPath]);
        // Wait for its new pack (it is copying), then let it run on a moment and kill it.
        let copying = false;
        while (child.exitCode === null && !copying) {
          copying = (await packsUnder(env.basePath)).some((p) => !before.has(p));
          if (!copying) await sleep(5);
        }
        if (!copying) break; // it ended without copying anything: nothing left to interrupt
        await sleep(rng.int(0, 60));
        if (child.exitCode !== null) break;
        child.kill('SIGKILL');
        await child.done;
        kills += 1;
        const after = await packsUnder(env.basePath);
        if ([...before].some((p) => after.includes(p)) && after.some((p) => !before.has(p))) killsMidCopy += 1;
        // The killed pass's lock would expire in 30 s; the next pass need not wait for it.
        await redis.del(lockKey);
        for (const chunkId of kept) expect((await v.getChunk(chunkId)).equals(workload.bytesOf(chunkId)), `${chunkId} after kill ${kills}`).toBe(true);
      }
    } finally {
      redis.disconnect();
    }
    const finish = await runCli(['compact', '--json', '--config', env.configPath]);
    expect(finish.code, finish.stderr).toBe(0);
    const leftover = await v.maintenance.runPass({ tasks: ['compaction'], dryRun: true });

    const report = await checkInvariants(v, workload, { acks, faultsInjected: kills, retentionDeleted });
    figures.add(report, Date.now() - started, { kills, killsMidCopy, replicasExpired: retentionDeleted.size, packsLeftToCompact: leftover.compaction?.packsCompacted ?? -1 });
    console.log(`[compaction-kill] seed ${seed}: ${kills} kills (${killsMidCopy} mid-copy), ${JSON.stringify(report.counts)}`);
    expectInvariants(report, REPRODUCE);
    expect(retentionDeleted.size).toBeGreaterThan(300);
    expect(kills).toBeGreaterThanOrEqual(2);
    expect(killsMidCopy).toBeGreaterThanOrEqual(1);
    expect(leftover.compaction).toMatchObject({ packsCompacted: 0 });
    for (const chunkId of kept) expect((await v.getChunk(chunkId)).equals(workload.bytesOf(chunkId))).toBe(true);
  });
});
