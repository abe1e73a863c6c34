/**
 * Hashing large streams on worker threads: the digests are node:crypto's, slices keep their
 * order across many hashes at once, and a process waiting only on a digest gets it.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checksumOfStream, streamHash, THREAD_HASH_MIN_SLICE } from '../src/integrity/checksum.js';
import { hashFileOnThread } from '../src/integrity/hash-threads.js';

const ROOT = path.resolve(import.meta.dirname, '..');

async function* slicesOf(bytes: Buffer, size: number): AsyncIterable<Buffer> {
  for (let offset = 0; offset < bytes.byteLength; offset += size) yield bytes.subarray(offset, offset + size);
}

describe('hashing on worker threads', () => {
  it('gives node:crypto digests for streams of large and of small slices, sha256 and md5', async () => {
    for (const algorithm of ['sha256', 'md5'] as const) {
      for (const [bytes, slice] of [[randomBytes(9 * 1024 * 1024 + 17), 1 << 20], [randomBytes(100_000), 100_000], [randomBytes(THREAD_HASH_MIN_SLICE), THREAD_HASH_MIN_SLICE], [Buffer.alloc(0), 1]] as const) {
        const expected = createHash(algorithm).update(bytes).digest('hex');
        expect(await checksumOfStream(slicesOf(bytes, slice), algorithm), `${algorithm} ${bytes.byteLength}/${slice}`).toEqual({ checksum: expected, sizeBytes: bytes.byteLength });
      }
    }
  });

  it('keeps each hash\'s slices in order with twenty hashes fed at once, and a slice reused after update does not change the digest', async () => {
    const inputs = Array.from({ length: 20 }, () => randomBytes(6 * 1024 * 1024));
    const digests = await Promise.all(inputs.map(async (bytes) => {
      const hash = streamHash('sha256');
      const slice = Buffer.alloc(1 << 20);
      for (let offset = 0; offset < bytes.byteLength; offset += slice.byteLength) {
        bytes.copy(slice, 0, offset, offset + slice.byteLength);
        await hash.update(slice);
        slice.fill(0); // the caller's buffer is its own again as soon as update resolves
      }
      return hash.digest();
    }));
    expect(digests).toEqual(inputs.map((bytes) => createHash('sha256').update(bytes).digest('hex')));
  });

  it('hashes files whole on the threads, many at once, with node:crypto digests; a missing file fails with ENOENT', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-hash-files-'));
    try {
      const files = await Promise.all([0, 1, 1 << 20, 5 * (1 << 20) + 3, ...Array.from({ length: 8 }, (_, i) => 300_000 * (i + 1))].map(async (size, i) => {
        const bytes = randomBytes(size);
        const file = path.join(dir, `f${i}`);
        await writeFile(file, bytes);
        return { file, bytes };
      }));
      for (const algorithm of ['sha256', 'md5'] as const) {
        const digests = await Promise.all(files.map(({ file }) => hashFileOnThread(file, algorithm)));
        expect(digests).toEqual(files.map(({ bytes }) => ({ checksum: createHash(algorithm).update(bytes).digest('hex'), sizeBytes: bytes.byteLength })));
      }
      await expect(hashFileOnThread(path.join(dir, 'missing'), 'sha256')).rejects.toMatchObject({ code: 'ENOENT' });
      // The thread is still good after the failure.
      expect((await hashFileOnThread(files[3]!.file, 'md5')).checksum).toBe(createHash('md5').update(files[3]!.bytes).digest('hex'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('drops a hash whose stream failed, and reports the stream\'s error', async () => {
    async function* failing(): AsyncIterable<Buffer> {
      yield randomBytes(1 << 20);
      throw new Error('disk went away');
    }
    await expect(checksumOfStream(failing(), 'sha256')).rejects.toThrow('disk went away');
    // The thread is still good for the next hash.
    const bytes = randomBytes(3 << 20);
    expect((await checksumOfStream(slicesOf(bytes, 1 << 20), 'sha256')).checksum).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('lets a process that waits on nothing but a digest get it, and then exit (the hashing thread does not hold it)', () => {
    // The built module, run by plain node: nothing else (a loader thread) keeps the process up.
    const script = `
      import { streamHash } from ${JSON.stringify(path.join(ROOT, 'dist/integrity/checksum.js'))};
      const hash = streamHash('sha256');
      await hash.update(Buffer.alloc(4 << 20, 7));
      console.log(await hash.digest());
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe(createHash('sha256').update(Buffer.alloc(4 << 20, 7)).digest('hex'));
    expect(run.status).toBe(0);
  });
});
