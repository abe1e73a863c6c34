/**
 * Compaction of a pack with damage in it (a real pack, flipped bytes inside one record): left
 * while a replica the catalog has as stored, or as corrupt awaiting its repair, lies in the
 * damage, or when the catalog cannot be walked to tell; compacted once scrub found the replica
 * and repair moved it to a new record, the other replicas moved to copies and readable.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import { parsePackedKey } from '../src/backends/pack/packed-key.js';
import { scanPack } from '../src/backends/pack/pack-scan.js';
import { keyRoot } from '../src/redis/redis-connection.js';
import { Compaction } from '../src/maintenance/compaction.js';
import { createLogger } from '../src/logging/logger.js';
import { makeTestEnv, openVault, seedTasks, waitFor, type TestEnv } from './support/harness.js';

const DAY = 24 * 3600 * 1000;
let env: TestEnv;
let vault: Chunkvault | undefined;

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  await env.cleanup();
});

describe('compaction of a damaged pack', () => {
  it('leaves it while a stored or corrupt replica lies in the damage, or the catalog cannot be walked; takes it once repair moved that replica', async () => {
    // Every pack with a dead byte is due, so only the damage decides.
    env = await makeTestEnv({ chunkvault: { packing: { max_chunk_bytes: 64 * 1024, compact_below: 1 } } });
    let v = (vault = await openVault(env));
    await v.startWorkers();
    const tasks = seedTasks(3, 2);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    expect(results.map((r) => r.status)).toEqual(Array(6).fill('stored'));
    // Closing seals the pack: no writer appends to it again. No workers now, so the repair waits.
    await v.close();
    vault = v = await openVault(env);
    const victim = results[2]!;
    const at = parsePackedKey(victim.storagePath)!;
    expect(results.every((r) => parsePackedKey(r.storagePath)!.pack === at.pack)).toBe(true);
    const file = path.join(env.basePath, at.pack);
    const bytes = await readFile(file);
    bytes[at.offset + at.length - 5]! ^= 0x55; // inside the victim's body
    await writeFile(file, bytes);
    expect((await scanPack(file)).damaged.map((d) => d.offset)).toEqual([at.offset]);

    // Stored, lying in the damage: left, and the report says which replica.
    const stored = (await v.maintenance.runPass({ tasks: ['compaction'] })).compaction!;
    expect(stored).toMatchObject({ packsCompacted: 0, packsSkipped: 1, damagedLeft: [{ backend: 'local', pack: at.pack }] });
    expect(stored.damagedLeft[0]!.reason).toMatch(new RegExp(`replica ${victim.replicaId} of ${victim.chunkId} \\(stored\\) lies in \\d+ damaged bytes at ${at.offset}`));
    await expect(readFile(file)).resolves.toBeDefined();

    // Found by scrub, corrupt until a worker repairs it: still left.
    expect((await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + DAY })).scrub).toMatchObject({ corruptFound: 1 });
    const corrupt = (await v.maintenance.runPass({ tasks: ['compaction'] })).compaction!;
    expect(corrupt.damagedLeft.map((d) => d.reason)).toEqual([expect.stringMatching(/\(corrupt\) lies in \d+ damaged bytes/)]);
    await expect(readFile(file)).resolves.toBeDefined();

    await v.startWorkers();
    await waitFor('the repair', async () => {
      const record = await v.catalog.getReplica(victim.chunkId, victim.replicaId);
      return record?.status === 'stored' && record.path !== victim.storagePath;
    });

    // Nothing lies in the damage now, but a pass that cannot walk the catalog cannot know that.
    const unreachable = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    unreachable.on('error', () => undefined); // refused, as meant
    try {
      const keyPrefix = `${keyRoot(v.config.chunkvault.redis.prefix)}:catalog`;
      const blind = new Compaction({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends: v.backends, logger: createLogger('silent'), redis: unreachable, keyPrefix });
      const result = await blind.run(false);
      expect(result).toMatchObject({ packsCompacted: 0, damagedLeft: [{ pack: at.pack, reason: expect.stringMatching(/could not be walked/) }] });
      await expect(readFile(file)).resolves.toBeDefined();
    } finally {
      unreachable.disconnect();
    }

    const dry = (await v.maintenance.runPass({ tasks: ['compaction'], dryRun: true })).compaction!;
    expect(dry).toMatchObject({ packsCompacted: 1, replicasMoved: 5, damagedLeft: [], items: [{ pack: at.pack, liveReplicas: 5 }] });
    await expect(readFile(file)).resolves.toBeDefined();
    const report = (await v.maintenance.runPass({ tasks: ['compaction'] })).compaction!;
    expect(report).toMatchObject({ packsCompacted: 1, replicasMoved: 5, damagedLeft: [] });
    await expect(readFile(file)).rejects.toThrow(/ENOENT/);
    for (const r of await Promise.all(results.map((r) => v.catalog.getReplica(r.chunkId, r.replicaId)))) {
      expect(r).toMatchObject({ status: 'stored' });
      expect(parsePackedKey(r!.path)!.pack).not.toBe(at.pack);
    }
    for (const t of tasks) expect(await v.getChunk(t.chunkId)).toEqual(t.chunkData);
    expect((await v.maintenance.runPass({ tasks: ['scrub'], now: () => Date.now() + 2 * DAY })).scrub).toMatchObject({ replicasChecked: 6, corruptFound: 0 });
  });
});
