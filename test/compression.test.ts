/**
 * Compression of old data: old replicas are re-encoded beside the original, verified by
 * decoding, recorded, and only then is the original removed; reads stay byte-identical;
 * a crash at either end of the critical step recovers on the next pass with no garbage.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { openChunkvault, type Chunkvault } from '../src/app.js';
import { Compression } from '../src/maintenance/compression.js';
import { STORAGE_IDENTITY_KEY } from '../src/storage/storage-identity.js';
import { createLogger } from '../src/logging/logger.js';
import type { DistributionTask, StoredChunk } from '../src/domain/types.js';
import type { Config } from '../src/config/config.schema.js';
import { failingBackends, journalMetadata, makeTestEnv, openVault, runCli, seedTasks, waitFor, type TestEnv } from './support/harness.js';

const DAY = 24 * 3600 * 1000;
let env: TestEnv;
let vault: Chunkvault | undefined;

afterEach(async () => {
  await vault?.close();
  vault = undefined;
  await env.cleanup();
});

async function start(overrides: Record<string, unknown> = {}): Promise<Chunkvault> {
  env = await makeTestEnv({ storage: { cleanup: { compression_age_days: 7 } }, ...overrides });
  vault = await openVault(env);
  await vault.startWorkers();
  return vault;
}

/** `size` bytes of JSON lines, as training records and logs are: they compress, and better at higher levels. */
function structuredBytes(size: number): Buffer {
  const lines: string[] = [];
  for (let i = 0, length = 0; length < size; i++) {
    const line = `{"step":${i},"loss":${(2 / Math.log(i + 2)).toFixed(5)},"token":${(i * 2654435761) % 50_257},"split":"${i % 10 ? 'train' : 'eval'}"}\n`;
    lines.push(line);
    length += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, size);
}

/** chunkvault on this test's env with other maintenance settings, its workers started. */
async function openWith(maintenance: Record<string, unknown>): Promise<Chunkvault> {
  const config = { ...env.config, chunkvault: { ...env.config.chunkvault, maintenance: { ...env.config.chunkvault.maintenance, ...maintenance } } } as Config;
  const opened = await openChunkvault(config, { logger: createLogger('silent'), announceUnimplemented: false });
  await opened.startWorkers();
  return opened;
}

const exists = (file: string) => access(file).then(() => true, () => false);
const later = (results: StoredChunk[], days: number) => () => Math.max(...results.map((r) => Date.parse(r.storedAt))) + days * DAY + 1;

/** Every file under the data directory, relative, sorted. */
/** Files on the backend, but for the metadata journal (see metadataOf). */
async function filesOnDisk(): Promise<string[]> {
  const entries = await readdir(env.basePath, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(env.basePath, path.join(e.parentPath, e.name))).filter((f) => !f.startsWith('.chunkvault-journal/') && f !== STORAGE_IDENTITY_KEY).sort();
}

/** A replica's current metadata in the backend's journal (what reindex would use). */
async function metadataOf(chunkId: string, replicaId: string) {
  return (await journalMetadata(env.basePath)).get(`${chunkId}/${replicaId}`);
}

describe('compression of old data', () => {
  it('re-encodes old replicas, keeps reads byte-identical, and skips data that does not shrink', async () => {
    const v = await start();
    const tasks: DistributionTask[] = [...seedTasks(3, 2), ...seedTasks(1, 2, 'noise')];
    tasks[3]!.chunkData = randomBytes(20_000);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const before = await v.getStatistics();
    const report = await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });
    expect(report.compression).toMatchObject({ codec: 'zstd', replicasCompressed: 6, skippedNoGain: 2, recovered: 0 });

    const files = await filesOnDisk();
    for (const r of results) {
      const compressed = !r.chunkId.startsWith('noise');
      expect(files.includes(r.storagePath)).toBe(!compressed);
      expect(files.includes(`${r.storagePath}.zst`)).toBe(compressed);
      const record = await v.catalog.getReplica(r.chunkId, r.replicaId);
      expect(record).toMatchObject({ status: 'stored', codec: compressed ? 'zstd' : '', checksum: r.checksum, sizeBytes: r.sizeBytes });
    }
    for (const task of tasks) expect((await v.getChunk(task.chunkId)).equals(task.chunkData as Buffer)).toBe(true);

    const stats = await v.getStatistics();
    let onDisk = 0;
    for (const f of files.filter((f) => /\.dat(\.zst)?$/.test(f))) onDisk += (await stat(path.join(env.basePath, f))).size;
    expect(stats.total_size_bytes).toBe(onDisk);
    expect(stats.backend_stats.local!.total_size_bytes).toBe(onDisk);
    expect(stats.bytes_saved_by_compression).toBe(before.total_size_bytes - onDisk);
    expect(stats.compressed_replicas).toBe(6);
    expect(stats.successful_stores).toBe(8);

    // Nothing left to do on the next pass.
    expect((await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 8) })).compression!.replicasCompressed).toBe(0);
  });

  it('leaves data younger than compression_age_days alone', async () => {
    const v = await start();
    const results = await (await v.producer.store(seedTasks(2, 1))).results({ timeoutMs: 30_000 });
    const report = await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 6) });
    expect(report.compression!.replicasCompressed).toBe(0);
    for (const r of results) expect(await exists(path.join(env.basePath, r.storagePath))).toBe(true);
  });

  // The bytes of a compressed replica are the codec's standard format: anyone can get the chunk
  // back with the usual tool, chunkvault or not. Levels other than the default, one chunk
  // larger than the codec's stream buffer, one small.
  for (const [codec, level, suffix, tool] of [
    ['gzip', 9, '.gz', ['gzip', '-d', '-c']],
    ['brotli', 9, '.br', ['brotli', '-d', '-c']],
    ['zstd', 19, '.zst', ['zstd', '-d', '-c', '-q']],
  ] as const) {
    it(`${codec} replicas decode with \`${tool.join(' ')}\` to the chunk's exact bytes`, async () => {
      const v = await start({ chunkvault: { maintenance: { compression_codec: codec, compression_level: level } } });
      const tasks = seedTasks(2, 1);
      tasks[1]!.chunkData = structuredBytes(3 * 1024 * 1024 + 17);
      const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
      const report = await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });
      expect(report.compression).toMatchObject({ codec, replicasCompressed: 2 });
      for (const [i, r] of results.entries()) {
        const file = path.join(env.basePath, `${r.storagePath}${suffix}`);
        const decodedByTool = execFileSync(tool[0], [...tool.slice(1), file], { maxBuffer: 64 * 1024 * 1024 });
        expect(decodedByTool.equals(tasks[i]!.chunkData as Buffer)).toBe(true);
        expect((await stat(file)).size).toBeLessThan(r.sizeBytes);
        expect((await v.getChunk(r.chunkId)).equals(tasks[i]!.chunkData as Buffer)).toBe(true);
      }
    });
  }

  it('the level setting reaches the codec: zstd 19 stores less than zstd 1', async () => {
    env = await makeTestEnv({ storage: { cleanup: { compression_age_days: 7 } } });
    const sizes: number[] = [];
    for (const level of [1, 19]) {
      vault = await openWith({ compression_codec: 'zstd', compression_level: level });
      const tasks = seedTasks(1, 1, `level${level}`);
      tasks[0]!.chunkData = structuredBytes(1024 * 1024);
      const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
      sizes.push((await vault.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) })).compression!.bytesAfter);
      await vault.close();
      vault = undefined;
    }
    expect(sizes[1]).toBeLessThan(sizes[0]!);
  });

  it('replicas compressed with gzip and brotli keep reading, scrubbing and repairing after the codec changes to zstd', async () => {
    env = await makeTestEnv({ storage: { cleanup: { compression_age_days: 7 } } });
    const tasks = [...seedTasks(1, 2, 'gz'), ...seedTasks(1, 2, 'br'), ...seedTasks(1, 2, 'zs')];
    const allResults: StoredChunk[] = [];
    for (const [i, codec] of (['gzip', 'brotli', 'zstd'] as const).entries()) {
      vault = await openWith({ compression_codec: codec });
      const results = await (await vault.producer.store([tasks[i]!])).results({ timeoutMs: 30_000 });
      allResults.push(...results);
      const report = await vault.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });
      expect(report.compression).toMatchObject({ codec, replicasCompressed: 2 });
      if (codec !== 'zstd') {
        await vault.close();
        vault = undefined;
      }
    }
    const v = vault!;
    expect((await filesOnDisk()).filter((f) => f.endsWith('.dat.gz') || f.endsWith('.dat.br') || f.endsWith('.dat.zst')).map((f) => path.extname(f)).sort())
      .toEqual(['.br', '.br', '.gz', '.gz', '.zst', '.zst']);
    for (const task of tasks) expect((await v.getChunk(task.chunkId)).equals(task.chunkData as Buffer)).toBe(true);
    expect((await v.maintenance.runPass({ tasks: ['scrub'] })).scrub).toMatchObject({ replicasChecked: 6, corruptFound: 0 });

    // A damaged gzip replica is noticed on read, the chunk served from its other replica, and
    // the damaged one rewritten (as plain data, which the next pass compresses with zstd).
    const gz = allResults.find((r) => r.chunkId === 'gz_0')!;
    await writeFile(path.join(env.basePath, `${gz.storagePath}.gz`), Buffer.from('not gzip'));
    expect((await v.getChunk('gz_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
    await waitFor('the repair', async () => (await v.catalog.getReplica('gz_0', gz.replicaId))?.status === 'stored' && (await v.catalog.getReplica('gz_0', gz.replicaId))?.codec === '');
  });

  it('recovers from a crash after the catalog switched but before the original was removed', async () => {
    const v = await start();
    const tasks = seedTasks(1, 1);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const original = results[0]!.storagePath;
    const crashing = new Compression({ config: v.config, catalog: v.catalog, metadata: v.metadata, backends: failingBackends(v.config, 'delete', /\.dat$/), logger: createLogger('silent') });
    await expect(crashing.run(later(results, 7)(), false)).rejects.toThrow(/simulated crash/);
    // Mid-way: both objects exist; the catalog already reads the compressed one.
    expect(await filesOnDisk()).toEqual(expect.arrayContaining([original, `${original}.zst`]));
    expect((await v.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))!.codec).toBe('zstd');
    expect((await v.getChunk('chunk_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);

    const report = await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });
    expect(report.compression!.recovered).toBe(1);
    expect(await filesOnDisk()).toEqual([`${original}.zst`]);
    expect(await metadataOf('chunk_0', 'chunk_0_replica_0')).toMatchObject({ path: `${original}.zst`, codec: 'zstd' });
    expect((await v.getChunk('chunk_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
  });

  it('recovers from a crash after the compressed object was written but before the catalog switched', async () => {
    const v = await start();
    const tasks = seedTasks(1, 1);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    const original = results[0]!.storagePath;
    // The pass dies as the catalog is to switch: the journal already names the compressed object.
    const dying = new Proxy(v.catalog, {
      get: (target, prop) => (prop === 'recordCompressed' ? () => Promise.reject(new Error('simulated crash')) : (Reflect.get(target, prop) as (...a: unknown[]) => unknown).bind(target)),
    });
    const crashing = new Compression({ config: v.config, catalog: dying, metadata: v.metadata, backends: v.backends, logger: createLogger('silent') });
    await expect(crashing.run(later(results, 7)(), false)).rejects.toThrow(/simulated crash/);
    expect(await filesOnDisk()).toEqual(expect.arrayContaining([original, `${original}.zst`]));
    expect(await metadataOf('chunk_0', 'chunk_0_replica_0')).toMatchObject({ path: `${original}.zst`, codec: 'zstd' });
    expect((await v.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))!.codec).toBe('');
    expect((await v.getChunk('chunk_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);

    // The next pass removes the leftover, then compresses the replica properly.
    const report = await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });
    expect(report.compression).toMatchObject({ recovered: 1, replicasCompressed: 1 });
    expect(await filesOnDisk()).toEqual([`${original}.zst`]);
    expect(await metadataOf('chunk_0', 'chunk_0_replica_0')).toMatchObject({ path: `${original}.zst`, codec: 'zstd' });
  });

  it('repairs a corrupt compressed replica from another one, as plain data', async () => {
    const v = await start();
    const tasks = seedTasks(1, 2);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });
    const zst = path.join(env.basePath, `${results[0]!.storagePath}.zst`);
    const bytes = await readFile(zst);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0xff; // inside the zstd frame's content checksum
    await writeFile(zst, bytes);

    expect((await v.getChunk('chunk_0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
    await waitFor('the repair', async () => (await v.getStatistics()).repairs_done === 1);
    const record = await v.catalog.getReplica('chunk_0', 'chunk_0_replica_0');
    expect(record).toMatchObject({ status: 'stored', codec: '', path: results[0]!.storagePath });
    expect(await exists(zst)).toBe(false);
    expect((await readFile(path.join(env.basePath, results[0]!.storagePath))).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
    // Its metadata names the plain object again, so a reindex would find it.
    expect(await metadataOf('chunk_0', 'chunk_0_replica_0')).toMatchObject({ path: results[0]!.storagePath, codec: '' });
  });

  it('keeps checkpoint verify, scrub, retention and reindex working on compressed replicas', async () => {
    const v = await start({ storage: { cleanup: { compression_age_days: 7, retention_days: 30 }, organization: { checkpoint_interval_chunks: 2 } } });
    const tasks = seedTasks(2, 1);
    const results = await (await v.producer.store(tasks)).results({ timeoutMs: 30_000 });
    await waitFor('a checkpoint', async () => (await v.checkpoints.count()) === 1);
    await v.maintenance.runPass({ tasks: ['compression'], now: later(results, 7) });

    expect((await v.checkpoints.verify('cp-00000001')).problems).toEqual([]);
    expect((await v.maintenance.runPass({ tasks: ['scrub'] })).scrub).toMatchObject({ replicasChecked: 2, corruptFound: 0 });

    // Reindex after a flush of this test's keys finds the compressed replicas again.
    const redis = new Redis(env.config.chunkvault.redis.url);
    const keys = await redis.keys(`{${env.prefix}}:catalog:*`);
    await redis.del(...keys);
    redis.disconnect();
    const report = await v.reindex({ verify: true });
    expect(report).toMatchObject({ restored: 2, problems: [] });
    expect((await v.catalog.getReplica('chunk_0', 'chunk_0_replica_0'))!.codec).toBe('zstd');
    expect((await v.getChunk('chunk_1')).equals(tasks[1]!.chunkData as Buffer)).toBe(true);

    const expired = await v.maintenance.runPass({ tasks: ['retention'], now: later(results, 31) });
    expect(expired.retention!.replicasDeleted).toBe(2);
    expect((await filesOnDisk()).filter((f) => !f.startsWith('_chunkvault/'))).toEqual([]);
    expect(await journalMetadata(env.basePath)).toEqual(new Map()); // retention journalled what it deleted
  });

  it('`compress --dry-run` shows what `compress` then compresses', async () => {
    await start({ storage: { cleanup: { compression_age_days: 0 } } });
    await (await vault!.producer.store(seedTasks(2, 1))).results({ timeoutMs: 30_000 });
    await vault!.close();
    vault = undefined;
    const dry = await runCli(['compress', '--dry-run', '--config', env.configPath]);
    expect(dry.code).toBe(0);
    const real = await runCli(['compress', '--config', env.configPath]);
    expect(real.code).toBe(0);
    const planned = dry.stdout.split('\n').filter((l) => l.startsWith('would compress ')).map((l) => l.replace('would compress ', ''));
    const done = real.stdout.split('\n').filter((l) => l.startsWith('compressed ')).map((l) => l.replace('compressed ', ''));
    expect(planned).toHaveLength(2);
    expect(done).toEqual(planned);
  });
});
