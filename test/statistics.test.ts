/**
 * Statistics come from the catalog, yet must match what is on disk: checked after a mixed
 * workload with permanent failures (a genuinely full disk under one node) and a repair.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask } from '../src/domain/types.js';
import { makeTestEnv, openVault, runCli, waitFor, type TestEnv } from './support/harness.js';

let env: TestEnv;
let vault: Chunkvault | undefined;
const mounts: string[] = [];

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  for (const mount of mounts.splice(0)) execFileSync('umount', ['-l', mount]);
  await env.cleanup();
});

/** Replica data files on disk per node directory (partition_by: node), with their bytes. */
async function dataOnDisk(base: string): Promise<Record<string, { count: number; size_bytes: number }>> {
  const byNode: Record<string, { count: number; size_bytes: number }> = {};
  for (const entry of await readdir(base, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.dat')) continue;
    const full = path.join(entry.parentPath, entry.name);
    const node = path.relative(base, full).split(path.sep)[0]!;
    const slot = (byNode[node] ??= { count: 0, size_bytes: 0 });
    slot.count += 1;
    slot.size_bytes += (await stat(full)).size;
  }
  return byNode;
}

describe('statistics', () => {
  it('match the disk after a mixed workload with failures and a repair', async () => {
    env = await makeTestEnv({ storage: { organization: { partition_by: 'node', checkpoint_interval_chunks: 4 } }, chunkvault: { retry: { attempts: 1, backoff_ms: 10 } } });
    // gcp-node-1's directory is a full disk: every replica placed there fails for good.
    const fullDir = path.join(env.basePath, 'gcp-node-1');
    await mkdir(fullDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', fullDir]);
    mounts.push(fullDir);
    await writeFile(path.join(fullDir, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);

    vault = await openVault(env);
    await vault.startWorkers();
    const tasks: DistributionTask[] = Array.from({ length: 12 }, (_, i) => ({
      taskId: `t${i}`, chunkId: `c${i}`, chunkData: Buffer.alloc(10_000 + i * 1000, i), status: 'completed',
      replicas: [
        { replicaId: `c${i}_r0`, chunkId: `c${i}`, targetNode: 'aws-node-1', cloudProvider: 'aws', status: 'completed' },
        i % 3 === 0
          ? { replicaId: `c${i}_r1`, chunkId: `c${i}`, targetNode: 'gcp-node-1', cloudProvider: 'gcp', status: 'completed' }
          : { replicaId: `c${i}_r1`, chunkId: `c${i}`, targetNode: 'aws-node-2', cloudProvider: 'aws', status: 'completed' },
      ],
    }));
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
    expect(results.filter((r) => r.status === 'failed')).toHaveLength(4);

    // Corrupt one replica, read the chunk (repairs it from the other), wait for the repair.
    const victim = results.find((r) => r.replicaId === 'c1_r0')!;
    const file = path.join(env.basePath, victim.storagePath);
    const bytes = await readFile(file);
    bytes[10] = bytes[10]! ^ 0x01;
    await writeFile(file, bytes);
    expect((await vault.getChunk('c1')).equals(tasks[1]!.chunkData as Buffer)).toBe(true);
    await waitFor('the repair', async () => (await vault!.catalog.getReplica('c1', 'c1_r0'))?.status === 'stored');
    // Chunk completion and sealing follow the replicas asynchronously: wait until both have run
    // (12 chunks at an interval of 4 make three checkpoints).
    await waitFor('the queues to settle', async () => {
      const { chunks, replicas } = (await vault!.getStatistics()).queues;
      const busy = [chunks, replicas].reduce((sum, q) => sum + (q?.active ?? 1) + (q?.waiting ?? 1), 0);
      return busy === 0 && (await vault!.checkpoints.count()) === 3;
    });

    const stats = await vault.getStatistics();
    const disk = await dataOnDisk(env.basePath);
    const diskCount = Object.values(disk).reduce((s, n) => s + n.count, 0);
    const diskBytes = Object.values(disk).reduce((s, n) => s + n.size_bytes, 0);
    expect(stats.storage_by_node).toEqual(disk);
    expect(stats.backend_stats.local).toMatchObject({ file_count: diskCount, total_size_bytes: diskBytes, base_path: env.basePath });
    expect(stats.total_size_bytes).toBe(diskBytes);
    expect(stats.successful_stores).toBe(diskCount);
    expect(stats.total_replicas).toBe(20);
    expect(stats.failed_stores).toBe(4);
    expect(stats.total_chunks).toBe(12);
    expect(stats.degraded_chunks).toBe(4);
    expect(stats.chunks_by_status).toEqual({ pending: 0, stored: 8, degraded: 4, failed: 0, expired: 0 });
    expect(stats.corruptions_found).toBe(1);
    expect(stats.repairs_done).toBe(1);
    expect(stats.corrupt_replicas).toBe(0);
    expect(stats.storage_by_cloud).toEqual({ aws: { count: 20, size_bytes: diskBytes } });
    expect(stats.checkpoints_created).toBe(3);
    expect(stats.queues.replicas).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 4 });
    expect(stats.queues.chunks).toMatchObject({ waiting: 0, active: 0, waiting_children: 0 });

    const cli = await runCli(['stats', '--json', '--config', env.configPath]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toEqual(stats);
  });
});
