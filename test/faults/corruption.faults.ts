/**
 * Silent corruption: after a real workload (a `chunkvault worker` process, thousands of
 * replicas of mixed sizes), stored replica files are damaged on disk behind chunkvault's back:
 * a byte flipped (same size: only a checksum tells), cut short, extended, or deleted; for a
 * few chunks every replica. Then:
 *
 *  - a scrub pass finds exactly the damaged replicas, no more and no fewer;
 *  - reads never return damaged bytes: the right bytes, or ChunkCorruptError exactly for the
 *    chunks with no good replica left;
 *  - repairs (the worker) rewrite every damaged replica byte-identical from a good one, and a
 *    second scrub finds nothing; the chunks with no good replica are stored again by their
 *    producer, which still has the bytes;
 *  - then every invariant holds.
 *
 * Round 1 scrubs first (scrub must find 100%); round 2 reads first (reads meet the damaged
 * bytes themselves), and the scrub after it finds the rest.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../../src/app.js';
import type { ReplicaRecord } from '../../src/domain/types.js';
import { ChunkCorruptError } from '../../src/errors.js';
import { makeTestEnv, openVault, startWorkerProcess, waitFor, type TestEnv } from '../support/harness.js';
import { DAMAGE_KINDS, damageFile, type Damage } from './support/disk-faults.js';
import { FigureRecorder } from './support/figures.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { acknowledge } from './support/ingest.js';
import { queuesDrained, runWorkload, stopWorker, type WorkerProcess } from './support/scenario-run.js';
import { Acknowledgements, Rng, scenarioSeed, Workload } from './support/workload.js';

const SEED = scenarioSeed(8_0801);
/**
 * 400 chunks (about 1,000 replicas): each round still damages some 60 replicas, a dozen or
 * more of each kind (flip, truncate, extend, delete), besides the chunks destroyed whole; 800
 * only doubled the reads, hashes and repairs (CI time), not what the scenario proves.
 */
const CHUNKS = 400;
/** Share of the stored replicas damaged per round, besides the chunks destroyed whole. */
const DAMAGED_SHARE = 0.06;
/** Chunks per round with every replica damaged. */
const DESTROYED_CHUNKS = 6;
const REPRODUCE = 'npx vitest run --config vitest.faults.config.ts test/faults/corruption.faults.ts';

const figures = new FigureRecorder('corruption', 'Silent corruption: stored replica files flipped, truncated, extended or deleted on disk; scrub, reads and repair', `FAULT_SEED=${SEED} ${REPRODUCE}`);
let env: TestEnv | undefined;
let vault: Chunkvault | undefined;
let worker: WorkerProcess | undefined;

afterEach(async () => {
  worker?.kill('SIGKILL');
  await worker?.done;
  worker = undefined;
  await vault?.close();
  vault = undefined;
  await env?.cleanup();
  env = undefined;
});

afterAll(async () => {
  await figures.write();
});

const member = (r: { chunkId: string; replicaId: string }) => `${r.chunkId}:${r.replicaId}`;
const sorted = (items: Iterable<string>) => [...items].sort();

describe(`silent corruption of stored replicas (seed ${SEED}; reproduce: FAULT_SEED=${SEED} ${REPRODUCE})`, () => {
  it('is found by scrub to the last replica, never returned by reads, and repaired byte-identical', async () => {
    const started = Date.now();
    env = await makeTestEnv({
      storage: { organization: { checkpoint_interval_chunks: 200 }, cleanup: { enable_auto_cleanup: false } },
      chunkvault: {
        retry: { attempts: 3, backoff_ms: 50 },
        maintenance: { scrub_replicas_per_pass: 1_000_000, scrub_bytes_per_second: 1 << 30 },
      },
    });
    const workload = new Workload({ seed: SEED, chunks: CHUNKS, maxBytes: 256 * 1024 });
    vault = await openVault(env);
    worker = await startWorkerProcess(env);
    const acks = await runWorkload(vault, workload, 180_000);
    expect(acks.failed, 'no fault was injected yet: every replica stores').toEqual([]);
    await queuesDrained(vault);
    await stopWorker(worker);
    worker = undefined;

    const rng = new Rng(SEED ^ 0x5eed);
    const tally = { damaged: 0, scrubFound: 0, readFound: 0, readsCorruptError: 0, corruptReturned: 0, repaired: 0, restored: 0, byKind: {} as Record<string, number> };

    for (const round of [1, 2] as const) {
      const stored = await storedReplicas(vault, workload);
      const damage = await damageReplicas(env.basePath, stored, rng);
      tally.damaged += damage.all.length;
      for (const d of damage.all) tally.byKind[d.kind] = (tally.byKind[d.kind] ?? 0) + 1;
      const damaged = new Set(damage.all.map(member));
      const where = (r: string) => `${r} (${damage.all.find((d) => member(d) === r)?.detail ?? 'not damaged'})`;

      let readFound = new Set<string>();
      if (round === 2) {
        // Reads first: they meet the damaged bytes themselves and must never return them.
        const reads = await readEverything(vault, workload, damage.destroyed);
        tally.corruptReturned += reads.corruptReturned;
        tally.readsCorruptError += reads.corruptErrors;
        expect(reads.unexpected, 'reads that failed although a good replica was left, or succeeded with none').toEqual([]);
        expect(reads.corruptReturned, 'reads that returned bytes other than the chunk\'s').toBe(0);
        readFound = new Set((await storedReplicasIncludingCorrupt(vault, workload)).filter((r) => r.status === 'corrupt').map(member));
        expect(sorted(readFound).filter((r) => !damaged.has(r)), 'intact replicas a read marked corrupt').toEqual([]);
        tally.readFound += readFound.size;
      }

      const report = (await vault.maintenance.runPass({ tasks: ['scrub'] })).scrub!;
      const found = report.problems.map(member);
      expect(found.length, 'each replica reported once').toBe(new Set(found).size);
      // Exactly the damaged replicas the reads had not met already: none missed, none invented.
      expect(sorted(found).map(where)).toEqual(sorted([...damaged].filter((r) => !readFound.has(r))).map(where));
      expect(report.replicasChecked).toBe(stored.length - readFound.size);
      for (const problem of report.problems) {
        const kind = damage.all.find((d) => member(d) === member(problem))!.kind;
        expect(problem.problem, `${member(problem)} (${kind})`).toMatch(kind === 'delete' ? /missing/ : kind === 'flip' ? /checksum/ : /bytes, recorded/);
      }
      tally.scrubFound += found.length;

      if (round === 1) {
        // Scrub first: reads now skip the replicas scrub marked and serve from good ones.
        const reads = await readEverything(vault, workload, damage.destroyed);
        tally.corruptReturned += reads.corruptReturned;
        tally.readsCorruptError += reads.corruptErrors;
        expect(reads.unexpected).toEqual([]);
        expect(reads.corruptReturned).toBe(0);
      }

      // Repair: workers (in this process: the repair code is the same) rewrite every damaged
      // replica that has a good one left.
      const pool = await vault.startWorkers();
      const repairable = damage.all.filter((d) => !damage.destroyed.has(d.chunkId));
      await waitFor(`${repairable.length} damaged replicas repaired`, async () => {
        const records = await vault!.catalog.getReplicas(repairable);
        return records.every((r) => r?.status === 'stored');
      }, 120_000, 200);
      for (const d of repairable) expect((await readFile(d.file)).equals(workload.bytesOf(d.chunkId)), `${member(d)} rewritten byte-identical`).toBe(true);
      tally.repaired += repairable.length;

      // No good replica left: the chunk stays unreadable (corrupt, never wrong bytes) until its
      // producer, which still has the bytes, stores it again.
      for (const chunkId of damage.destroyed) await expect(vault.getChunk(chunkId)).rejects.toBeInstanceOf(ChunkCorruptError);
      const again = new Acknowledgements();
      const handle = await vault.producer.store(workload.chunks.filter((c) => damage.destroyed.has(c.chunkId)).map((c) => workload.task(c)));
      await acknowledge([handle], again, 60_000);
      expect(again.failed).toEqual([]);
      expect(again.acknowledgedChunks.size).toBe(damage.destroyed.size);
      tally.restored += damage.destroyed.size;

      await queuesDrained(vault);
      await pool.close(10_000);

      const clean = (await vault.maintenance.runPass({ tasks: ['scrub'] })).scrub!;
      expect(clean.problems, `round ${round}: a second scrub finds nothing`).toEqual([]);
      expect(clean.replicasChecked).toBe(stored.length);
    }

    const report = await checkInvariants(vault, workload, { acks, faultsInjected: tally.damaged });
    report.counts.corruptReturned += tally.corruptReturned;
    figures.add(report, Date.now() - started, {
      damagedByKind: tally.byKind,
      chunksDestroyedWhole: 2 * DESTROYED_CHUNKS,
      foundByScrub: tally.scrubFound,
      foundByReads: tally.readFound,
      missedByScrubAndReads: tally.damaged - tally.scrubFound - tally.readFound,
      readsRefusedNoGoodReplica: tally.readsCorruptError,
      repairedFromGoodReplica: tally.repaired,
      storedAgainByProducer: tally.restored,
    });
    expectInvariants(report, REPRODUCE);
    expect(tally.scrubFound + tally.readFound).toBe(tally.damaged);
  });
});

/** Every stored replica of the workload, from the catalog. */
async function storedReplicas(vault: Chunkvault, workload: Workload): Promise<ReplicaRecord[]> {
  return (await storedReplicasIncludingCorrupt(vault, workload)).filter((r) => r.status === 'stored');
}

async function storedReplicasIncludingCorrupt(vault: Chunkvault, workload: Workload): Promise<ReplicaRecord[]> {
  const out: ReplicaRecord[] = [];
  for (const chunk of workload.chunks) out.push(...(await vault.catalog.listReplicas(chunk.chunkId)));
  return out;
}

/**
 * Damages a seeded sample: every replica of DESTROYED_CHUNKS chunks, and DAMAGED_SHARE of
 * the other stored replicas (never all of a chunk's), each in a random way.
 */
async function damageReplicas(basePath: string, stored: readonly ReplicaRecord[], rng: Rng): Promise<{ all: Damage[]; destroyed: Set<string> }> {
  const byChunk = new Map<string, ReplicaRecord[]>();
  for (const r of stored) byChunk.set(r.chunkId, [...(byChunk.get(r.chunkId) ?? []), r]);
  const chunkIds = [...byChunk.keys()];
  const destroyed = new Set<string>();
  while (destroyed.size < DESTROYED_CHUNKS) destroyed.add(rng.pick(chunkIds));
  const all: Damage[] = [];
  for (const [chunkId, replicas] of byChunk) {
    const victims = destroyed.has(chunkId) ? replicas : replicas.filter(() => rng.next() < DAMAGED_SHARE);
    if (!destroyed.has(chunkId) && victims.length === replicas.length) victims.pop();
    for (const r of victims) {
      const file = path.join(basePath, ...r.path.split('/'));
      const kind = rng.pick(DAMAGE_KINDS);
      all.push({ chunkId, replicaId: r.replicaId, file, kind, detail: `${kind}: ${await damageFile(file, kind, rng)}` });
    }
  }
  return { all, destroyed };
}

/** Reads every chunk: right bytes for all but `destroyed`, ChunkCorruptError for those. */
async function readEverything(vault: Chunkvault, workload: Workload, destroyed: ReadonlySet<string>): Promise<{ corruptReturned: number; corruptErrors: number; unexpected: string[] }> {
  let corruptReturned = 0;
  let corruptErrors = 0;
  const unexpected: string[] = [];
  for (const chunk of workload.chunks) {
    try {
      const bytes = await vault.getChunk(chunk.chunkId);
      if (!bytes.equals(workload.bytesOf(chunk.chunkId))) corruptReturned += 1;
      if (destroyed.has(chunk.chunkId)) unexpected.push(`${chunk.chunkId}: read succeeded with every replica damaged`);
    } catch (error) {
      if (error instanceof ChunkCorruptError) corruptErrors += 1;
      if (!(error instanceof ChunkCorruptError) || !destroyed.has(chunk.chunkId)) unexpected.push(`${chunk.chunkId}: ${(error as Error).message}`);
    }
  }
  return { corruptReturned, corruptErrors, unexpected };
}
