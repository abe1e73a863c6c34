/**
 * The producer API with hostile tasks mixed into batches of valid ones, on a real vault with
 * a real worker pool: store() never throws for a bad task, each replica of a bad task comes
 * back failed with its reason, the valid tasks of the same batch are stored and read back
 * byte for byte, nothing is written outside the backend root or the staging dir, and
 * nothing reaches Object.prototype.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { rm } from 'node:fs/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../../src/app.js';
import type { DistributionTask } from '../../src/domain/types.js';
import { distributionTaskSchema } from '../../src/producer/task-schema.js';
import { openVault } from '../support/harness.js';
import { builtinsFingerprint, fuzzParameters, hostileValue, mutated, nearValid, runsOf, show, timeoutFor } from './support/hostile.js';
import { makeSandbox, type Sandbox } from './support/sandbox.js';

/** Batches of hostile and valid tasks stored per run. */
const BATCH_RUNS = runsOf(12, 0.005);

/** Valid ids that are also names of Object.prototype members: plain-object tables keyed by them break. */
const PROTOTYPE_NAMED_NODES = ['constructor', 'toString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf'];

function validTask(chunkId: string, bytes: Buffer, replicas: number, node: (j: number) => string): DistributionTask {
  return {
    taskId: `task_${chunkId}`, chunkId, chunkData: bytes, status: 'completed',
    replicas: Array.from({ length: replicas }, (_, j) => ({ replicaId: `${chunkId}_r${j}`, chunkId, targetNode: node(j), cloudProvider: 'aws', status: 'completed' })),
  };
}

/** Replicas store() reports for a task (eligible tasks' completed replicas), as the producer counts them. */
function reportedReplicas(task: unknown): number {
  const t = task as { status?: unknown; replicas?: unknown } | null | undefined;
  if (t?.status !== 'completed' || !Array.isArray(t.replicas)) return 0;
  return t.replicas.filter((r: { status?: unknown } | null | undefined) => r?.status === 'completed').length;
}

describe('producer.store with hostile tasks (real vault and workers)', () => {
  let sandbox: Sandbox;
  let vault: Chunkvault;

  beforeAll(async () => {
    sandbox = await makeSandbox();
    vault = await openVault(sandbox.env);
    await vault.startWorkers();
  });

  afterAll(async () => {
    await vault?.close();
    await sandbox?.cleanup();
  });

  it('refuses each hostile task with a reason and stores the valid ones of the same batch', async () => {
    const before = await sandbox.snapshot();
    const fingerprint = builtinsFingerprint();
    const template = validTask('tmpl', Buffer.from('template'), 2, (j) => `node-${j}`);
    const replicaTemplate = template.replicas[0]! as unknown as Record<string, unknown>;
    const near: Record<string, fc.Arbitrary<unknown>> = {
      taskId: nearValid.id(), chunkId: nearValid.id(), status: fc.constantFrom('completed', 'COMPLETED', 'pending', ''),
      chunkData: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constantFrom('bytes as a string', [1, 2, 3], new Uint16Array(3), new ArrayBuffer(4), new DataView(new ArrayBuffer(2)), Buffer.alloc(0))),
      replicas: fc.array(
        mutated(replicaTemplate, { replicaId: nearValid.id(), chunkId: fc.constantFrom('tmpl', 'other'), targetNode: nearValid.id(), cloudProvider: nearValid.id(), status: fc.constant('completed') }, { outsideDir: sandbox.outside }),
        { maxLength: 3 },
      ).map((rs) => [...rs, { ...replicaTemplate }]),
    };
    const hostileTask = fc.oneof(
      { weight: 6, arbitrary: mutated(template as unknown as Record<string, unknown>, near, { outsideDir: sandbox.outside }) },
      { weight: 1, arbitrary: hostileValue({ outsideDir: sandbox.outside }) },
    );
    const batchArbitrary = fc.record({
      hostile: fc.array(hostileTask, { minLength: 1, maxLength: 6 }),
      validSizes: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5000 })), { minLength: 1, maxLength: 3 }),
      order: fc.array(fc.nat(), { maxLength: 10 }),
    });
    const seed = fuzzParameters(0).seed!;
    const batches = fc.sample(batchArbitrary, { seed, numRuns: BATCH_RUNS });
    const figures = { batches: batches.length, hostileTasks: 0, validTasks: 0, refusedReplicas: 0, storedReplicas: 0 };

    for (const [b, batch] of batches.entries()) {
      const valid = batch.validSizes.map((size, i) => validTask(`ok_${b}_${i}_${randomBytes(3).toString('hex')}`, randomBytes(size), 2, (j) => PROTOTYPE_NAMED_NODES[(b + i + j) % PROTOTYPE_NAMED_NODES.length]!));
      // Mix the valid tasks in among the hostile ones, in a generated order.
      const tasks: unknown[] = [...batch.hostile];
      for (const [i, task] of valid.entries()) tasks.splice((batch.order[i] ?? 0) % (tasks.length + 1), 0, task);
      const context = `batch ${b} (seed ${seed}): ${show(batch.hostile)}`;

      const handle = await vault.producer.store(tasks as DistributionTask[]);
      const results = await handle.results({ timeoutMs: 30_000 });
      expect(results.length, context).toBe(tasks.reduce((n: number, t) => n + reportedReplicas(t), 0));
      for (const task of valid) {
        for (const replica of task.replicas) {
          const result = results.find((r) => r.chunkId === task.chunkId && r.replicaId === replica.replicaId);
          expect(result?.status, `${context}: ${task.chunkId}/${replica.replicaId}: ${result?.error}`).toBe('stored');
        }
        expect((await vault.getChunk(task.chunkId)).equals(task.chunkData), context).toBe(true);
      }
      for (const task of batch.hostile) {
        figures.hostileTasks += 1;
        const eligible = (task as { status?: unknown } | null)?.status === 'completed';
        if (!eligible) continue;
        const replicas = (task as { replicas?: unknown }).replicas;
        const completed = Array.isArray(replicas) ? replicas.filter((r: { status?: unknown } | null) => r?.status === 'completed') : [];
        if (distributionTaskSchema.safeParse({ ...(task as object), replicas: completed }).success) continue;
        // An invalid task: every replica it reported failed, with the reason.
        const chunkId = (task as { chunkId?: unknown }).chunkId;
        for (const r of results.filter((x) => x.chunkId === chunkId && !valid.some((v) => v.chunkId === chunkId))) {
          if (r.status === 'stored') continue; // the same chunk id from a valid task elsewhere in the batch
          expect(r.error, `${context}: ${r.replicaId}`).toBeTruthy();
        }
      }
      figures.validTasks += valid.length;
      figures.refusedReplicas += results.filter((r) => r.status === 'failed').length;
      figures.storedReplicas += results.filter((r) => r.status === 'stored').length;
      for (const r of results.filter((x) => x.status === 'failed')) expect(r.error, context).toMatch(/\S/);
    }

    // Statistics keyed by node names that are also Object.prototype members count them like any other.
    const stats = await vault.getStatistics();
    for (const node of PROTOTYPE_NAMED_NODES) {
      expect(Object.hasOwn(stats.storage_by_node, node), `storage_by_node.${node}`).toBe(true);
      expect(stats.storage_by_node[node]!.count).toBeGreaterThan(0);
    }
    expect(await sandbox.escapedSince(before)).toEqual([]);
    expect(builtinsFingerprint()).toBe(fingerprint);
    console.info(`producer fuzz: ${JSON.stringify(figures)}`);
  }, timeoutFor(BATCH_RUNS, 500));

  it('regression: a task whose ids cannot be turned into text is refused, and the rest of the batch is stored', async () => {
    const ok = validTask(`ok_null_proto_${randomBytes(3).toString('hex')}`, randomBytes(100), 1, () => 'n1');
    const hostile = { taskId: Object.create(null), chunkId: Object.create(null), chunkData: Buffer.from('x'), status: 'completed', replicas: [{ replicaId: Object.create(null), chunkId: Symbol('c'), targetNode: Object.create(null), cloudProvider: 'aws', status: 'completed' }] };
    const handle = await vault.producer.store([hostile as unknown as DistributionTask, ok]);
    const results = await handle.results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status).sort()).toEqual(['failed', 'stored']);
    expect(results.find((r) => r.status === 'failed')!.error).toMatch(/^invalid task/);
  });

  it('regression: a replica id ending with "." is refused by the producer (its file would be "<id>..dat")', async () => {
    const task = validTask(`dot_${randomBytes(3).toString('hex')}`, randomBytes(10), 1, () => 'n1');
    task.replicas[0]!.replicaId = 'r.';
    const results = await (await vault.producer.store([task])).results({ timeoutMs: 10_000 });
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'failed' });
    expect(results[0]!.error).toMatch(/replicas\.0\.replicaId: must not end with "\."/);
  });

  it('regression: an empty chunk is stored, read back, and read past a missing replica', async () => {
    const task = validTask(`empty_${randomBytes(3).toString('hex')}`, Buffer.alloc(0), 2, (j) => `node-${j}`);
    const results = await (await vault.producer.store([task])).results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status)).toEqual(['stored', 'stored']);
    expect((await vault.getChunk(task.chunkId)).length).toBe(0);
    // One replica gone: the read takes the other one and marks the missing one (leaving the stored counters by 0 bytes).
    await rm(path.join(sandbox.env.basePath, results[0]!.storagePath));
    expect((await vault.getChunk(task.chunkId)).length).toBe(0);
    const records = await vault.catalog.listReplicas(task.chunkId);
    expect(records.find((r) => r.replicaId === results[0]!.replicaId)?.status).toMatch(/corrupt|stored/);
  });
});
