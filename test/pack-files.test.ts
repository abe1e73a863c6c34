/**
 * Pack files (issue 20's foundation): records appended with group commit, read back with one
 * pread and checked, walked from the bytes alone, a torn tail cut off and damage inside a
 * pack reported without cutting anything, a full disk failing only the appends it hit.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, open, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DurableDirectories } from '../src/backends/durable-directories.js';
import { encodeRecord, PACK_HEADER_BYTES, type PackLocation, type PackRecordHeader } from '../src/backends/pack/pack-format.js';
import { readPackedReplica } from '../src/backends/pack/pack-read.js';
import { scanPack, sealPack } from '../src/backends/pack/pack-scan.js';
import { packNameOf, packNameParts, PackWriter } from '../src/backends/pack/pack-writer.js';
import { BackendIoError, ChecksumMismatchError, InvalidInputError, NotFoundError } from '../src/errors.js';
import { LocalBackend } from '../src/backends/local.backend.js';
import { readAll } from './backend-contract.suite.js';
import { parsePackedKey } from '../src/backends/pack/packed-key.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cv-pack-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function replicaHeader(i: number, body: Uint8Array): PackRecordHeader {
  return { kind: 'replica', chunkId: `chunk-${i}`, replicaId: `r${i}`, checksum: `md5:${createHash('md5').update(body).digest('hex')}`, sizeBytes: body.byteLength };
}

function writerIn(dir: string, options: { maxPackBytes?: number } = {}): PackWriter {
  return new PackWriter({ dir, dirKey: '2026/12/06', directories: new DurableDirectories(), maxPackBytes: options.maxPackBytes ?? 64 * 1024 * 1024 });
}

const fileOf = (dir: string, location: PackLocation) => path.join(dir, path.basename(location.pack));
const refOf = (i: number, location: PackLocation) => ({ chunkId: `chunk-${i}`, replicaId: `r${i}`, offset: location.offset, length: location.length });

/** Three records of different sizes in one pack, closed; returns the pack's path, the bodies and their locations. */
async function threeRecords(dir: string): Promise<{ file: string; bodies: Buffer[]; locations: PackLocation[] }> {
  const writer = writerIn(dir);
  const bodies = [randomBytes(100), randomBytes(5000), randomBytes(700)];
  const locations = await Promise.all(bodies.map((b, i) => writer.append(replicaHeader(i, b), b)));
  await writer.close();
  return { file: fileOf(dir, locations[0]!), bodies, locations };
}

describe('pack files', () => {
  it('appends records that read back whole, each with the header it was written with', async () => {
    const dir = path.join(root, '2026', '12', '06');
    const { file, bodies, locations } = await threeRecords(dir);
    expect(new Set(locations.map((l) => l.pack))).toEqual(new Set([`2026/12/06/${path.basename(file)}`]));
    for (const [i, body] of bodies.entries()) {
      expect(locations[i]!.bodyLength).toBe(body.byteLength);
      expect(await readPackedReplica(file, refOf(i, locations[i]!))).toEqual(body);
    }
    const scan = await scanPack(file);
    expect(scan.records.slice(0, 3).map((r) => [r.offset, r.length, r.bodyOffset, r.header])).toEqual(
      locations.map((l, i) => [l.offset, l.length, l.bodyOffset, replicaHeader(i, bodies[i]!)]));
    // Closing the writer sealed the pack: a seal record after the last one, nothing after it.
    expect(scan.records.at(-1)?.header).toMatchObject({ kind: 'seal' });
    expect(scan).toMatchObject({ damaged: [], sizeBytes: (await stat(file)).size, sealed: true });
    expect(scan.tornTailAt).toBeUndefined();
  });

  it('makes appends that arrive together durable with far fewer fdatasyncs than appends (group commit)', async () => {
    const dir = path.join(root, 'p');
    const writer = writerIn(dir);
    const bodies = Array.from({ length: 300 }, (_, i) => randomBytes(64 + i));
    const locations = await Promise.all(bodies.map((b, i) => writer.append(replicaHeader(i, b), b)));
    // A second wave while nothing is queued, then one more append on its own.
    const later = await Promise.all(bodies.slice(0, 40).map((b, i) => writer.append(replicaHeader(i, b), b)));
    await writer.close();
    expect(writer.counts.appends).toBe(340);
    expect(writer.counts.commits).toBeLessThanOrEqual(4);
    const all = [...locations, ...later].sort((a, b) => a.offset - b.offset);
    for (let k = 1; k < all.length; k++) expect(all[k]!.offset).toBe(all[k - 1]!.offset + all[k - 1]!.length);
    expect(all[0]!.offset).toBe(PACK_HEADER_BYTES);
    for (const [i, body] of bodies.entries()) expect(await readPackedReplica(fileOf(dir, locations[i]!), refOf(i, locations[i]!))).toEqual(body);
  });

  it('starts a new pack when the open one is full; a record larger than a pack gets one of its own', async () => {
    const dir = path.join(root, 'p');
    const writer = writerIn(dir, { maxPackBytes: 4096 });
    const bodies = [...Array.from({ length: 12 }, () => randomBytes(1000)), randomBytes(10_000)];
    const locations: PackLocation[] = [];
    for (const [i, body] of bodies.entries()) locations.push(await writer.append(replicaHeader(i, body), body));
    await writer.close();
    const packs = await readdir(dir);
    expect(packs.length).toBe(writer.counts.packsStarted);
    expect(packs.length).toBeGreaterThanOrEqual(5);
    for (const name of packs) expect((await stat(path.join(dir, name))).size <= 4096 || name === path.basename(locations[12]!.pack)).toBe(true);
    for (const [i, body] of bodies.entries()) expect(await readPackedReplica(fileOf(dir, locations[i]!), refOf(i, locations[i]!))).toEqual(body);
  });

  it('names a pack by when, on which host and by which process it was started, and reads the first packs\' longer names too', () => {
    const parts = { createdAtMs: 1_796_610_000_000, hostTag: '0a7c9c', pid: 4_194_304 };
    const name = packNameOf({ ...parts, random: 'beef' });
    expect(name.length).toBeLessThanOrEqual(31);
    expect(packNameParts(name)).toEqual(parts);
    expect(packNameParts('pack-mxclum9d-0a7c9cdf-27011-fb95a3b6.pack')).toEqual({ createdAtMs: parseInt('mxclum9d', 36), hostTag: '0a7c9cdf', pid: 27011 });
    expect(packNameParts('notes.pack')).toBeUndefined();
  });

  it('refuses appends after close, having made every earlier one durable', async () => {
    const dir = path.join(root, 'p');
    const writer = writerIn(dir);
    const body = randomBytes(10);
    const pending = writer.append(replicaHeader(0, body), body);
    await writer.close();
    await expect(pending).resolves.toMatchObject({ bodyLength: 10 });
    await expect(writer.append(replicaHeader(1, body), body)).rejects.toBeInstanceOf(BackendIoError);
  });

  it('finds a torn tail after the last whole record and cuts it off when sealing; the records before it still read', async () => {
    const dir = path.join(root, 'p');
    const { file, bodies, locations } = await threeRecords(dir);
    const whole = (await stat(file)).size;
    const next = Buffer.concat(encodeRecord(replicaHeader(9, randomBytes(3000)), randomBytes(3000)));
    await appendFile(file, next.subarray(0, 1234)); // a crash mid-append
    expect((await scanPack(file)).tornTailAt).toBe(whole);
    await sealPack(file);
    expect((await stat(file)).size).toBe(whole);
    const again = await scanPack(file);
    expect(again.tornTailAt).toBeUndefined();
    expect(again.records.filter((r) => r.header.kind === 'replica')).toHaveLength(3);
    for (const [i, body] of bodies.entries()) expect(await readPackedReplica(file, refOf(i, locations[i]!))).toEqual(body);
  });

  it('reports flipped bytes inside a pack as a damaged record, never as a tail to cut, and refuses to read that record', async () => {
    const dir = path.join(root, 'p');
    const { file, bodies, locations } = await threeRecords(dir);
    const size = (await stat(file)).size;
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([0xff ^ bodies[1]![77]!]), 0, 1, locations[1]!.bodyOffset + 77);
    await handle.close();
    const scan = await sealPack(file);
    expect((await stat(file)).size).toBe(size);
    expect(scan.tornTailAt).toBeUndefined();
    expect(scan.damaged).toEqual([{ offset: locations[1]!.offset, length: locations[1]!.length, problem: 'record CRC mismatch' }]);
    expect(scan.records.flatMap((r) => (r.header.kind === 'replica' ? [r.header.replicaId] : []))).toEqual(['r0', 'r2']);
    await expect(readPackedReplica(file, refOf(1, locations[1]!))).rejects.toBeInstanceOf(ChecksumMismatchError);
    expect(await readPackedReplica(file, refOf(0, locations[0]!))).toEqual(bodies[0]);
    expect(await readPackedReplica(file, refOf(2, locations[2]!))).toEqual(bodies[2]);
  });

  it('never hands out another replica\'s bytes for a wrong location, and says a pack cut short is missing the record', async () => {
    const dir = path.join(root, 'p');
    const { file, locations } = await threeRecords(dir);
    await expect(readPackedReplica(file, { ...refOf(1, locations[1]!), offset: locations[0]!.offset, length: locations[0]!.length })).rejects.toBeInstanceOf(ChecksumMismatchError);
    await expect(readPackedReplica(file, { ...refOf(1, locations[1]!), offset: locations[1]!.offset + 3 })).rejects.toBeInstanceOf(ChecksumMismatchError);
    await truncate(file, locations[2]!.offset + 10);
    await expect(readPackedReplica(file, refOf(2, locations[2]!))).rejects.toBeInstanceOf(NotFoundError);
    expect((await scanPack(file)).tornTailAt).toBe(locations[2]!.offset);
    await unlink(file);
    await expect(readPackedReplica(file, refOf(0, locations[0]!))).rejects.toBeInstanceOf(NotFoundError);
  });

  it('fails only the appends a full disk hit, retryably; once space is freed appends go on in a new pack and every earlier record reads', async () => {
    const mountPoint = path.join(root, 'small');
    await mkdir(mountPoint);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mountPoint]).status).toBe(0);
    try {
      const filler = path.join(mountPoint, 'someone-elses-data');
      await writeFile(filler, Buffer.alloc(64 * 1024, 1));
      const dir = path.join(mountPoint, 'p');
      const writer = writerIn(dir);
      const stored: Array<{ i: number; body: Buffer; location: PackLocation }> = [];
      let failure: unknown;
      for (let i = 0; i < 100 && !failure; i++) {
        const body = randomBytes(16 * 1024);
        try {
          stored.push({ i, body, location: await writer.append(replicaHeader(i, body), body) });
        } catch (error) {
          failure = error;
        }
      }
      expect(failure).toBeInstanceOf(BackendIoError);
      expect(failure).toMatchObject({ retryable: true, message: expect.stringMatching(/ENOSPC/) });
      expect(stored.length).toBeGreaterThan(3);
      const firstPack = fileOf(dir, stored[0]!.location);
      const scan = await scanPack(firstPack);
      expect(scan.tornTailAt).toBeUndefined(); // what the failed append wrote was cut off again
      expect(scan.records).toHaveLength(stored.length);

      await unlink(filler); // space comes back
      const body = randomBytes(16 * 1024);
      const after = await writer.append(replicaHeader(500, body), body);
      await writer.close();
      expect(after.pack).not.toBe(stored[0]!.location.pack); // the pack a write failed in is not used again
      expect(writer.counts.packsStarted).toBe(2);
      expect(await readPackedReplica(fileOf(dir, after), refOf(500, after))).toEqual(body);
      for (const { i, body: b, location } of stored) expect(await readPackedReplica(fileOf(dir, location), refOf(i, location))).toEqual(b);
    } finally {
      spawnSync('umount', ['-l', mountPoint]);
    }
  });

  it('is what the local backend\'s putPacked writes to, and its packed keys read, head, range, hash and delete as objects do', async () => {
    const backend = new LocalBackend({ basePath: path.join(root, 'data'), staleTempAfterMs: 60_000 });
    try {
      const body = randomBytes(3000);
      const md5 = createHash('md5').update(body).digest('hex');
      const options = { sizeBytes: body.byteLength, checksum: md5, algorithm: 'md5' as const, chunkId: 'c1', replicaId: 'r1' };
      await expect(backend.putPacked('2026/12/06/c1@r1.dat', body, { ...options, checksum: '0'.repeat(32) })).rejects.toBeInstanceOf(ChecksumMismatchError);
      await expect(readdir(path.join(root, 'data', '2026', '12', '06'))).rejects.toThrow(/ENOENT/); // nothing was appended
      const { key, receipt } = await backend.putPacked('2026/12/06/c1@r1.dat', body, options);
      expect(receipt.readBack).toMatchObject({ checksum: md5, sizeBytes: 3000 });
      expect(parsePackedKey(key)?.pack).toMatch(/^2026\/12\/06\/[^/]+\.pack$/);
      expect(await readAll(await backend.get(key))).toEqual(body);
      expect(await backend.getRange(key, 100, 50)).toEqual(body.subarray(100, 150));
      await expect(backend.getRange(key, 2990, 20)).rejects.toThrow(/expected|size/i);
      expect(await backend.checksumOf(key, 'md5')).toEqual({ checksum: md5, sizeBytes: 3000 });
      expect(await backend.head(key)).toMatchObject({ key, sizeBytes: 3000 });
      await expect(backend.put(key, body, options)).rejects.toBeInstanceOf(InvalidInputError);

      await backend.delete(key);
      await backend.delete(key);
      expect(await backend.head(key)).toBeUndefined();
      await expect(backend.get(key)).rejects.toBeInstanceOf(NotFoundError);
      await backend.delete('2026/12/06/pack-gone-000000000000.pack#16=100'); // no such pack: nothing to do
      const scan = await scanPack(path.join(root, 'data', parsePackedKey(key)!.pack));
      expect(scan.records.map((r) => [r.header.kind, r.deleted])).toEqual([['replica', true]]);
    } finally {
      await backend.close();
    }
  });
});

