/**
 * The invariant checker itself: on a clean run it finds nothing, and each kind of damage the
 * scenarios guard against (an acknowledged chunk gone, wrong bytes returned, a torn object, a
 * temp file, a lost manifest, an orphan object, a forgotten job, a counter moved by no record)
 * is reported under its invariant. Without this, a scenario passing could mean the checker
 * looks at nothing.
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../../src/app.js';
import { makeTestEnv, openVault, type TestEnv } from '../support/harness.js';
import { Acknowledgements, Workload } from './support/workload.js';
import { checkInvariants, expectInvariants } from './support/invariants.js';
import { acknowledge, submit } from './support/ingest.js';

let env: TestEnv | undefined;
let vault: Chunkvault | undefined;

afterEach(async () => {
  await vault?.close();
  await env?.cleanup();
  vault = env = undefined;
});

async function ingested(): Promise<{ v: Chunkvault; workload: Workload; acks: Acknowledgements }> {
  env = await makeTestEnv({ storage: { organization: { partition_by: 'flat', checkpoint_interval_chunks: 10 } } });
  vault = await openVault(env);
  await vault.startWorkers();
  const workload = new Workload({ seed: 7, chunks: 30, maxBytes: 64 * 1024, replicas: [2, 2] });
  const acks = new Acknowledgements();
  await acknowledge(await submit(vault, workload, acks), acks, 60_000);
  return { v: vault, workload, acks };
}

describe('the invariant checker', () => {
  it('finds nothing wrong after a clean run, and counts what it checked', async () => {
    const { v, workload, acks } = await ingested();
    const report = await checkInvariants(v, workload, { acks, faultsInjected: 0 });
    expectInvariants(report);
    expect(report.counts).toMatchObject({
      chunks: 30, replicas: 60, submittedReplicas: 60, acknowledgedChunks: 30, storedReplicas: 60, dataObjects: 60,
      checkpoints: 3, manifests: 3, acknowledgedLost: 0, corruptReturned: 0, stagedOrphansSwept: 0, stagedFilesLeft: 0,
    });
  });

  it('reports each kind of damage under its invariant, and expectInvariants fails naming the seed', async () => {
    const { v, workload, acks } = await ingested();
    const [lost, torn, wrong, unnamed] = workload.chunks;
    const base = env!.basePath;
    // a) an acknowledged chunk with every replica gone
    for (const r of lost!.replicas) await rm(path.join(base, `${lost!.chunkId}@${r.replicaId}.dat`));
    // a) wrong bytes that verify: both replicas rewritten and the catalog's checksum changed to match
    const other = Buffer.alloc(wrong!.sizeBytes, 0x5a);
    for (const r of wrong!.replicas) await writeFile(path.join(base, `${wrong!.chunkId}@${r.replicaId}.dat`), other);
    const redis = new Redis(env!.config.chunkvault.redis.url);
    await redis.hset(`{${env!.prefix}}:catalog:c:${wrong!.chunkId}`, 'checksum', createHash('md5').update(other).digest('hex'));
    // f) counters moved by no record: one replica too many stored, 5 bytes too few on local
    await redis.hincrby(`{${env!.prefix}}:catalog:stats`, 'replicas_stored', 1);
    await redis.hincrby(`{${env!.prefix}}:catalog:stats`, 'backend:local:bytes', -5);
    redis.disconnect();
    // b) a torn second replica (the first stays good, so reads never touch the torn one)
    await truncate(path.join(base, `${torn!.chunkId}@${torn!.replicas[1]!.replicaId}.dat`), 10);
    // b) a temp file of a live writer (this process), which no sweep may remove
    await writeFile(path.join(base, `.cvtmp~${process.pid}~${hostname()}~abc~x.dat`), 'partial');
    // b) a stored replica whose metadata a (dead) writer's journal says was deleted
    const forget = { format: 'chunkvault.replica-forgotten/1', chunkId: unnamed!.chunkId, replicaId: unnamed!.replicas[0]!.replicaId, path: `${unnamed!.chunkId}@${unnamed!.replicas[0]!.replicaId}.dat`, recordedAtMs: Date.now() };
    await writeFile(path.join(base, '.chunkvault-journal', `${hostname()}~${spawnSync(process.execPath, ['-e', '']).pid}~1~x~1.jsonl`), `${JSON.stringify(forget)}\n`);
    // c) a committed checkpoint's manifest gone
    const [first] = await v.checkpoints.list();
    await rm(path.join(base, first!.key));
    // d) a data object no record owns
    await copyFile(path.join(base, `${torn!.chunkId}@${torn!.replicas[0]!.replicaId}.dat`), path.join(base, `${torn!.chunkId}@${torn!.chunkId}-r9.dat`));
    // e) a replica handed over that the catalog never heard of
    acks.submitted.push({ chunkId: torn!.chunkId, replicaId: `${torn!.chunkId}-r7` });

    const report = await checkInvariants(v, workload, { acks, faultsInjected: 0 });
    expect(report.counts.acknowledgedLost).toBe(1);
    expect(report.counts.corruptReturned).toBe(1);
    expect(report.violations.acknowledged).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`^chunk ${lost!.chunkId} was acknowledged, now no good replica`)),
      expect.stringMatching(new RegExp(`^chunk ${wrong!.chunkId}: getChunk returned ${wrong!.sizeBytes} bytes that differ`)),
    ]));
    expect(report.violations.torn).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`${torn!.replicas[1]!.replicaId}\\.dat: 10 bytes on the backend`)),
      expect.stringMatching(/temp file left after the sweep: .*\.cvtmp~/),
      expect.stringMatching(new RegExp(`${unnamed!.replicas[0]!.replicaId}\\.dat: no metadata names it`)),
    ]));
    expect(report.violations.checkpoints).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`checkpoint ${first!.id}: its manifest .* is not on the backend`)),
      expect.stringMatching(/is stored but in no checkpoint/),
    ]));
    expect(report.violations.catalog).toEqual(expect.arrayContaining([
      expect.stringMatching(new RegExp(`${torn!.chunkId}-r9\\.dat: data object with no stored record`)),
      expect.stringMatching(new RegExp(`replica ${lost!.replicas[0]!.replicaId} of ${lost!.chunkId}: recorded stored at local:.*, but no such object`)),
      expect.stringMatching(new RegExp(`metadata of replica ${lost!.replicas[0]!.replicaId} names this object, which is not there`)),
    ]));
    expect(report.violations.jobs).toEqual([`replica ${torn!.chunkId}-r7 of ${torn!.chunkId}: no catalog record (handed to the producer, then forgotten)`]);
    const counterLine = (name: string) => report.violations.counters.find((line) => line.startsWith(`${name}: `))?.match(/recorded (-?\d+), counted (-?\d+)$/)?.slice(1).map(Number);
    expect(report.violations.counters).toHaveLength(2);
    const [storedRecorded, storedCounted] = counterLine('replicasStored')!;
    expect(storedRecorded).toBe(storedCounted! + 1);
    const [bytesRecorded, bytesCounted] = counterLine('backendBytes.local')!;
    expect(bytesRecorded).toBe(bytesCounted! - 5);
    expect(() => expectInvariants(report)).toThrow(/invariants violated \(seed 7; reproduce with FAULT_SEED=7\)[\s\S]*acknowledged chunks lost: 1, corrupt bytes returned: 1[\s\S]*c\) every stored chunk is in exactly one checkpoint: \d+ violation/);
    await rm(path.join(base, `.cvtmp~${process.pid}~${hostname()}~abc~x.dat`));
    expect((await readFile(path.join(base, `${torn!.chunkId}@${torn!.replicas[0]!.replicaId}.dat`))).byteLength).toBe(torn!.sizeBytes);
  });
});
