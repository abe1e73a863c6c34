/**
 * Hostile job data. First the payload schemas of every job, checked directly against
 * mutated payloads: anything refused gets a reason naming the field, anything accepted names
 * only storage keys inside the backend root and the staging dir. Then real jobs with hostile
 * data added straight to the BullMQ queues and processed by a real worker pool: each fails
 * at once with its reason (no retries), the pool keeps working (a valid chunk stored after
 * them is readable), and nothing appears outside the backend root or the staging dir.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Job } from 'bullmq';
import type { Chunkvault } from '../../src/app.js';
import { LocalBackend } from '../../src/backends/local.backend.js';
import { PARTITION_STRATEGIES } from '../../src/config/config.schema.js';
import { JOBS, QUEUE_NAMES, type JobName } from '../../src/jobs/job-table.js';
import { describeIssues, replicaWriteDataSchema, type ReplicaWriteData } from '../../src/jobs/job-data.js';
import { dataKeyOf, metadataKeyOf } from '../../src/storage/storage-layout.js';
import { openVault, seedTasks, waitFor } from '../support/harness.js';
import { builtinsFingerprint, fuzzParameters, hostileString, mutated, nearValid, runsOf, show, timeoutFor } from './support/hostile.js';
import { makeSandbox, type Sandbox } from './support/sandbox.js';

const VALID: Record<JobName, Record<string, unknown>> = {
  'replica.write': {
    chunkId: 'chunk_1', replicaId: 'chunk_1_replica_0', taskId: 'task_1', targetNode: 'aws-node-1', cloudProvider: 'aws',
    checksum: 'd41d8cd98f00b204e9800998ecf8427e', algorithm: 'md5', sizeBytes: 0, stagedKey: 'chunk_1@0123456789abcdef', createdAtMs: Date.UTC(2026, 0, 1),
  },
  'chunk.finalize': { chunkId: 'chunk_1', stagedKey: 'chunk_1@0123456789abcdef', replicas: [{ replicaId: 'chunk_1_replica_0', generation: 0 }] },
  'replica.repair': { chunkId: 'chunk_1', replicaId: 'chunk_1_replica_0', sourceReplicaId: 'chunk_1_replica_1' },
  'maintenance.run': { tasks: ['retention'] },
};

const NEAR_VALID: Record<string, fc.Arbitrary<unknown>> = {
  chunkId: nearValid.id(), replicaId: nearValid.id(), taskId: nearValid.id(), targetNode: nearValid.id(), cloudProvider: nearValid.id(),
  sourceReplicaId: nearValid.id(), checksum: nearValid.checksum(), algorithm: fc.constantFrom('md5', 'sha256', 'MD5', 'crc32', ''),
  sizeBytes: nearValid.size(), createdAtMs: nearValid.time(),
  stagedKey: fc.oneof(nearValid.id(), fc.integer({ min: 250, max: 260 }).map((n) => 'k'.repeat(n)), fc.constantFrom('a..b', 'a@..', '_x', 'a/b', '#a')),
  replicas: fc.array(fc.record({ replicaId: nearValid.id(), generation: nearValid.size() }), { maxLength: 3 }),
  tasks: fc.array(fc.constantFrom('retention', 'compression', 'scrub', 'delete-all', '__proto__'), { maxLength: 4 }),
};

const JOB_NAMES = Object.keys(JOBS) as JobName[];

/** A valid payload with one field near-valid: reaches past the schema's first refusals into the handlers. */
function oneFieldOff(name: JobName): fc.Arbitrary<unknown> {
  return fc
    .constantFrom(...Object.keys(VALID[name]).filter((key) => NEAR_VALID[key]))
    .chain((key) => NEAR_VALID[key]!.map((value) => ({ ...VALID[name], [key]: value }) as unknown));
}
/** Hostile jobs put on the real queues per run. */
const JOB_RUNS = runsOf(120, 0.05);

describe('job payload schemas (property)', () => {
  const root = new LocalBackend({ basePath: '/srv/chunkvault-fuzz/data', staleTempAfterMs: 1 });
  const staging = new LocalBackend({ basePath: '/srv/chunkvault-fuzz/staging', staleTempAfterMs: 1 });

  for (const name of JOB_NAMES) {
    it(`${name}: refused with a reason, or accepted with keys inside the roots`, () => {
      const fingerprint = builtinsFingerprint();
      const counts = { refused: 0, accepted: 0 };
      fc.assert(
        fc.property(fc.oneof(mutated(VALID[name], NEAR_VALID), oneFieldOff(name)), (data) => {
          const parsed = JOBS[name].schema.safeParse(data);
          if (!parsed.success) {
            const reason = describeIssues(parsed.error);
            expect(reason.length, show(data)).toBeGreaterThan(0);
            expect(reason).toMatch(/^[\w.]+: /);
            counts.refused += 1;
            return;
          }
          counts.accepted += 1;
          const accepted = parsed.data as Record<string, unknown>;
          if (typeof accepted.stagedKey === 'string') {
            expect(() => staging.pathOf(accepted.stagedKey as string), `stagedKey of ${show(data)}`).not.toThrow();
          }
          if (name === 'replica.write') {
            const outside: string[] = [];
            for (const strategy of PARTITION_STRATEGIES) {
              const key = dataKeyOf(strategy, accepted as ReplicaWriteData);
              for (const k of [key, metadataKeyOf(key)]) if (!root.pathOf(k).startsWith(`${root.basePath}${path.sep}`)) outside.push(`${strategy}: ${k}`);
            }
            expect(outside, show(data)).toEqual([]);
          }
        }),
        fuzzParameters(1500),
      );
      expect(builtinsFingerprint()).toBe(fingerprint);
      console.info(`${name} schema fuzz: ${JSON.stringify(counts)}`);
    }, timeoutFor(runsOf(1500), 2));
  }

  it('regression: payloads that passed the schema but could never be processed are refused', () => {
    const write = VALID['replica.write'];
    // A time past year 9999 has no date partition (toISOString threw a RangeError, and the job was retried).
    expect(replicaWriteDataSchema.safeParse({ ...write, createdAtMs: 8.7e15 }).success).toBe(false);
    expect(replicaWriteDataSchema.safeParse({ ...write, createdAtMs: Date.UTC(9999, 11, 31) }).success).toBe(true);
    // "<id>..dat" is not a storage key: a replica id ending with "." could never be stored.
    expect(describeIssues(replicaWriteDataSchema.safeParse({ ...write, replicaId: 'r.' }).error!)).toMatch(/replicaId: must not end with "."/);
    // The staging area refuses ".." and names longer than 255 characters.
    for (const stagedKey of ['a..b', 'k'.repeat(256)]) {
      expect(JOBS['chunk.finalize'].schema.safeParse({ ...VALID['chunk.finalize'], stagedKey }).success, stagedKey).toBe(false);
      expect(replicaWriteDataSchema.safeParse({ ...write, stagedKey }).success, stagedKey).toBe(false);
    }
  });
});

describe('hostile jobs on the real queues, real worker pool', () => {
  let sandbox: Sandbox;
  let vault: Chunkvault;

  beforeAll(async () => {
    sandbox = await makeSandbox({ chunkvault: { retry: { attempts: 3, backoff_ms: 20 } } });
    vault = await openVault(sandbox.env);
    await vault.startWorkers();
  });

  afterAll(async () => {
    await vault?.close();
    await sandbox?.cleanup();
  });

  it('regression: a replica job whose time has no date partition fails at once, not after retries', async () => {
    const data = { ...VALID['replica.write'], chunkId: 'far_future', replicaId: 'far_future_r0', createdAtMs: 8.7e15 };
    const job = await vault.queue(QUEUE_NAMES.replicas).add('replica.write', data, { attempts: 3, backoff: { type: 'fixed', delay: 20 } });
    await waitFor('the job to fail', async () => (await job.getState()) === 'failed');
    const failed = (await Job.fromId(vault.queue(QUEUE_NAMES.replicas), job.id!))!;
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toMatch(/^invalid replica job data: createdAtMs: must be a time before the year 10000/);
  });

  it('every hostile job fails at once with its reason; the pool keeps storing; nothing escapes the roots', async () => {
    const before = await sandbox.snapshot();
    const fingerprint = builtinsFingerprint();
    // One field near-valid and the rest valid reaches past the schema into the handlers.
    const oneField = fc.constantFrom(...JOB_NAMES).chain((name) => oneFieldOff(name).map((data) => ({ queue: JOBS[name].queue as string, name, data })));
    const jobArbitrary = fc.oneof(
      { weight: 4, arbitrary: oneField },
      { weight: 8, arbitrary: fc.constantFrom(...JOB_NAMES).chain((name) => mutated(VALID[name], NEAR_VALID, { outsideDir: sandbox.outside, jsonOnly: true }).map((data) => ({ queue: JOBS[name].queue as string, name, data }))) },
      { weight: 1, arbitrary: fc.record({ queue: fc.constantFrom(...Object.values(QUEUE_NAMES)), name: fc.oneof(hostileString(), fc.constantFrom(...JOB_NAMES)), data: fc.constantFrom(...Object.values(VALID)) }) },
    );
    const seed = fuzzParameters(0).seed!;
    const cases = fc.sample(jobArbitrary, { seed, numRuns: JOB_RUNS });

    const added: Array<{ job: Job; queue: string; name: string; data: unknown }> = [];
    for (const c of cases) {
      const job = await vault.queue(c.queue).add(c.name, c.data, { attempts: 3, backoff: { type: 'fixed', delay: 20 } });
      added.push({ job, ...c });
    }
    await waitFor('every hostile job to end', async () => {
      const states = await Promise.all(added.map(({ job }) => job.getState()));
      return states.every((state) => state === 'completed' || state === 'failed');
    }, 60_000, 100);
    // Read once every job has ended, so each record is final.
    const outcomes = await Promise.all(added.map(async ({ job, queue }) => {
      const fresh = (await Job.fromId(vault.queue(queue), job.id!))!;
      return { fresh, state: await fresh.getState() };
    }));

    const summary = { failed: 0, completed: 0 };
    for (const [i, { fresh, state }] of outcomes.entries()) {
      const { name, queue, data } = added[i]!;
      const context = `case ${i} (seed ${seed}): ${queue}/${show(name)} ${show(data)}`;
      const handled = (JOBS as Record<string, { queue: string }>)[name]?.queue === queue && Object.hasOwn(JOBS, name);
      const valid = handled && JOBS[name as JobName].schema.safeParse(data).success;
      if (state === 'completed') {
        summary.completed += 1;
        // Only well-formed data completes, and then only the jobs that may legitimately do nothing harmful.
        expect(valid, `${context} completed`).toBe(true);
        expect(['chunk.finalize', 'maintenance.run'], context).toContain(name);
        continue;
      }
      summary.failed += 1;
      expect(fresh.failedReason, context).toBeTruthy();
      expect(fresh.attemptsMade, `${context}: retried (${fresh.failedReason})`).toBe(1);
      if (!handled) expect(fresh.failedReason, context).toMatch(/^no handler for job/);
      else if (!valid) expect(fresh.failedReason, context).toMatch(/^invalid (replica|chunk|repair|maintenance) job data: \w/);
    }
    expect(summary.failed).toBeGreaterThan(cases.length / 2);
    console.info(`job fuzz: ${cases.length} hostile jobs, ${JSON.stringify(summary)}`);

    // The pool still works: a valid chunk stored after all of that is readable.
    const [task] = seedTasks(1, 2, `after_hostile_${randomBytes(3).toString('hex')}`);
    const results = await (await vault.producer.store([task!])).results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status)).toEqual(['stored', 'stored']);
    expect((await vault.getChunk(task!.chunkId)).equals(task!.chunkData)).toBe(true);

    expect(await sandbox.escapedSince(before)).toEqual([]);
    expect(builtinsFingerprint()).toBe(fingerprint);
  }, timeoutFor(JOB_RUNS, 50));
});
