/**
 * The behaviour every storage backend must show, tested only through the Backend interface
 * so the same suite runs against the local filesystem and every real cloud server.
 * A backend is done when this suite passes on it.
 *
 * `make` must return a backend that holds no objects (a fresh directory, bucket or prefix)
 * and a `cleanup` that closes it and removes whatever it stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checksumOfObject, type Backend, type PutOptions } from '../src/backends/backend.js';
import type { ChecksumAlgorithm } from '../src/domain/types.js';
import {
  ChecksumMismatchError,
  ChunkvaultError,
  InvalidInputError,
  NotFoundError,
  SizeMismatchError,
  type ErrorCode,
} from '../src/errors.js';
import { mulberry32 } from './support/random.js';

export interface BackendUnderTest {
  backend: Backend;
  cleanup: () => Promise<void>;
}

/** Keys that could escape a backend's root or name a hidden/temp file; all must be refused. */
export const UNSAFE_KEYS = ['../escape', 'a/../../b', '/abs/path', 'a//b', '.hidden', ''] as const;

const MiB = 1 << 20;
/** Larger than one 1 MiB hashing/writing slice, and not a multiple of it, so slicing is exercised. */
const LARGE_BYTES = 2 * MiB + 12_345;

export function itBehavesLikeABackend(name: string, make: () => Promise<BackendUnderTest>): void {
  describe(`${name} backend contract`, () => {
    let backend: Backend;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ backend, cleanup } = await make());
    });

    afterEach(async () => {
      await cleanup();
    });

    it('probe resolves on a usable backend and stores nothing', async () => {
      await backend.probe();
      const listed = [];
      for await (const object of backend.list('')) listed.push(object.key);
      expect(listed).toEqual([]);
    });

    it('get returns exactly the bytes put from a Uint8Array body (md5)', async () => {
      const key = 'datasets/web/shard-0001/chunk-000001.bin';
      const bytes = randomBytes(4096);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));
      expectSameBytes(await readAll(await backend.get(key)), bytes);
    });

    it('get returns exactly the bytes put from a Readable stream body (sha256)', async () => {
      const key = 'datasets/web/shard-0001/chunk-000002.bin';
      const bytes = randomBytes(100_000);
      await backend.put(key, streamOf(bytes, 7_001), optionsFor(bytes, 'sha256'));
      expectSameBytes(await readAll(await backend.get(key)), bytes);
    });

    it('round-trips a body larger than 1 MiB given as a Uint8Array', async () => {
      const key = 'large/from-array.bin';
      const bytes = randomBytes(LARGE_BYTES);
      await backend.put(key, bytes, optionsFor(bytes, 'sha256'));
      expectSameBytes(await readAll(await backend.get(key)), bytes);
      expect((await backend.head(key))?.sizeBytes).toBe(LARGE_BYTES);
    });

    it('round-trips a body larger than 1 MiB given as a stream of uneven pieces', async () => {
      const key = 'large/from-stream.bin';
      const bytes = randomBytes(LARGE_BYTES);
      await backend.put(key, streamOf(bytes, 300_007), optionsFor(bytes, 'md5'));
      expectSameBytes(await readAll(await backend.get(key)), bytes);
    });

    it('stores and returns an empty 0-byte object', async () => {
      const fromArray = 'empty/from-array.bin';
      const fromStream = 'empty/from-stream.bin';
      const empty = new Uint8Array(0);
      await backend.put(fromArray, empty, optionsFor(empty, 'md5'));
      await backend.put(fromStream, streamOf(empty, 1), optionsFor(empty, 'sha256'));

      for (const key of [fromArray, fromStream]) {
        expect((await readAll(await backend.get(key))).byteLength).toBe(0);
        expect((await backend.head(key))?.sizeBytes).toBe(0);
      }
    });

    it('put replaces an existing object', async () => {
      const key = 'replace/chunk.bin';
      const first = randomBytes(5_000);
      const second = randomBytes(3_000);
      await backend.put(key, first, optionsFor(first, 'md5'));
      await backend.put(key, second, optionsFor(second, 'md5'));

      expectSameBytes(await readAll(await backend.get(key)), second);
      expect((await backend.head(key))?.sizeBytes).toBe(second.byteLength);
      expect(await keysOf(backend, '')).toEqual([key]);
    });

    it('put with a wrong checksum rejects with ChecksumMismatchError and stores nothing under a new key', async () => {
      const key = 'checksum/new.bin';
      const bytes = randomBytes(LARGE_BYTES);
      const wrong = { ...optionsFor(bytes, 'sha256'), checksum: digestOf(randomBytes(16), 'sha256') };

      const error = await rejectionOf(backend.put(key, streamOf(bytes, 65_536), wrong));

      expectChunkvaultError(error, ChecksumMismatchError, 'E_CHECKSUM_MISMATCH', key);
      expect(await backend.head(key)).toBeUndefined();
      expect(await keysOf(backend, '')).toEqual([]);
    });

    it('put with a wrong checksum leaves an existing object as it was', async () => {
      const key = 'checksum/existing.bin';
      const original = randomBytes(2_000);
      await backend.put(key, original, optionsFor(original, 'md5'));
      const replacement = randomBytes(9_000);
      const wrong = { ...optionsFor(replacement, 'md5'), checksum: digestOf(original, 'md5') };

      const error = await rejectionOf(backend.put(key, replacement, wrong));

      expectChunkvaultError(error, ChecksumMismatchError, 'E_CHECKSUM_MISMATCH', key);
      expectSameBytes(await readAll(await backend.get(key)), original);
      expect((await backend.head(key))?.sizeBytes).toBe(original.byteLength);
      expect(await keysOf(backend, '')).toEqual([key]);
    });

    it('put with a body shorter than sizeBytes rejects with SizeMismatchError and stores nothing', async () => {
      const key = 'size/short.bin';
      const bytes = randomBytes(10_000);
      const options = { ...optionsFor(bytes, 'md5'), sizeBytes: bytes.byteLength + 1 };

      const error = await rejectionOf(backend.put(key, streamOf(bytes, 4_000), options));

      expectChunkvaultError(error, SizeMismatchError, 'E_SIZE_MISMATCH', key);
      expect(await backend.head(key)).toBeUndefined();
      expect(await keysOf(backend, '')).toEqual([]);
    });

    it('put with a body longer than sizeBytes rejects with SizeMismatchError and stores nothing', async () => {
      const fromArray = 'size/long-array.bin';
      const fromStream = 'size/long-stream.bin';
      const bytes = randomBytes(LARGE_BYTES);
      const options = { ...optionsFor(bytes, 'sha256'), sizeBytes: bytes.byteLength - 1 };

      const arrayError = await rejectionOf(backend.put(fromArray, bytes, options));
      const streamError = await rejectionOf(backend.put(fromStream, streamOf(bytes, 500_000), options));

      expectChunkvaultError(arrayError, SizeMismatchError, 'E_SIZE_MISMATCH', fromArray);
      expectChunkvaultError(streamError, SizeMismatchError, 'E_SIZE_MISMATCH', fromStream);
      expect(await backend.head(fromArray)).toBeUndefined();
      expect(await backend.head(fromStream)).toBeUndefined();
      expect(await keysOf(backend, '')).toEqual([]);
    });

    it('while a put is still receiving its body, readers see the previous state only', async () => {
      const fresh = 'in-flight/new.bin';
      const existing = 'in-flight/existing.bin';
      const original = randomBytes(1_000);
      await backend.put(existing, original, optionsFor(original, 'md5'));
      const next = randomBytes(LARGE_BYTES);
      const freshBody = new PassThrough();
      const existingBody = new PassThrough();
      const freshPut = backend.put(fresh, freshBody, optionsFor(next, 'md5'));
      const existingPut = backend.put(existing, existingBody, optionsFor(next, 'md5'));
      const half = next.byteLength >> 1;
      freshBody.write(next.subarray(0, half));
      existingBody.write(next.subarray(0, half));

      // Neither body has ended, so neither put can have completed, however far it got.
      expect(await backend.head(fresh)).toBeUndefined();
      await expect(backend.get(fresh)).rejects.toBeInstanceOf(NotFoundError);
      expectSameBytes(await readAll(await backend.get(existing)), original);
      expect(await keysOf(backend, '')).toEqual([existing]);

      freshBody.end(next.subarray(half));
      existingBody.end(next.subarray(half));
      await Promise.all([freshPut, existingPut]);
      expectSameBytes(await readAll(await backend.get(fresh)), next);
      expectSameBytes(await readAll(await backend.get(existing)), next);
    });

    it('concurrent puts of one key leave one complete body, never a mix', async () => {
      const key = 'concurrent/chunk.bin';
      const bodies = [randomBytes(LARGE_BYTES), randomBytes(LARGE_BYTES), randomBytes(LARGE_BYTES)];

      await Promise.all(bodies.map((bytes) => backend.put(key, streamOf(bytes, 131_072), optionsFor(bytes, 'md5'))));

      const stored = digestOf(await readAll(await backend.get(key)), 'sha256');
      expect(bodies.map((bytes) => digestOf(bytes, 'sha256'))).toContain(stored);
      expect(await keysOf(backend, '')).toEqual([key]);
    });

    it('head returns key, size and time of an existing object', async () => {
      const key = 'head/chunk.bin';
      const bytes = randomBytes(1_234);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));

      const info = await backend.head(key);

      expect(info).toMatchObject({ key, sizeBytes: 1_234 });
      expect(info?.modifiedAt).toBeInstanceOf(Date);
      expect(Number.isNaN(info?.modifiedAt.getTime())).toBe(false);
    });

    it('head returns undefined for a missing object', async () => {
      expect(await backend.head('head/missing.bin')).toBeUndefined();
      expect(await backend.head('no-such-dir/missing.bin')).toBeUndefined();
    });

    it('get of a missing key rejects with NotFoundError', async () => {
      const key = 'get/missing.bin';
      const error = await rejectionOf(backend.get(key));
      expectChunkvaultError(error, NotFoundError, 'E_NOT_FOUND', key);
    });

    it('getRange returns exactly the bytes of a range inside a larger object', async () => {
      const key = 'segments/segment-0001.bin';
      const bytes = seededBytes(17, LARGE_BYTES);
      await backend.put(key, bytes, optionsFor(bytes, 'sha256'));

      // A range inside the first MiB, one across the 1 MiB mark (a block or part boundary on
      // the large-body paths), a single byte, and the first bytes.
      for (const [offset, length] of [[70_001, 4_099], [MiB - 1_000, 5_000], [MiB + 12, 1], [0, 65_536]] as const) {
        const range = await backend.getRange(key, offset, length);
        expect(Buffer.isBuffer(range), `${offset}+${length}`).toBe(true);
        expectSameBytes(range, bytes.subarray(offset, offset + length));
      }
    });

    it('getRange reads a range that ends exactly at the end of the object, and the whole object', async () => {
      const key = 'segments/segment-0002.bin';
      const bytes = seededBytes(29, 100_003);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));

      expectSameBytes(await backend.getRange(key, bytes.byteLength - 777, 777), bytes.subarray(bytes.byteLength - 777));
      expectSameBytes(await backend.getRange(key, bytes.byteLength - 1, 1), bytes.subarray(bytes.byteLength - 1));
      expectSameBytes(await backend.getRange(key, 0, bytes.byteLength), bytes);
    });

    it('getRange of a range that runs past the end of the object rejects with SizeMismatchError', async () => {
      const key = 'segments/short.bin';
      const empty = 'segments/empty.bin';
      const bytes = seededBytes(31, 10_000);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));
      await backend.put(empty, new Uint8Array(0), optionsFor(new Uint8Array(0), 'md5'));

      // Ends one byte past the end; starts at the end; starts well past it (HTTP 416 on a server).
      for (const [offset, length] of [[9_990, 11], [10_000, 1], [50_000, 100]] as const) {
        expectChunkvaultError(await rejectionOf(backend.getRange(key, offset, length)), SizeMismatchError, 'E_SIZE_MISMATCH', key);
      }
      expectChunkvaultError(await rejectionOf(backend.getRange(empty, 0, 1)), SizeMismatchError, 'E_SIZE_MISMATCH', empty);
    });

    it('getRange of a missing key rejects with NotFoundError', async () => {
      for (const key of ['segments/missing.bin', 'no-such-dir/missing.bin']) {
        expectChunkvaultError(await rejectionOf(backend.getRange(key, 0, 10)), NotFoundError, 'E_NOT_FOUND', key);
      }
    });

    it('getRange of zero bytes returns an empty Buffer without reading, wherever it points', async () => {
      const key = 'segments/zero.bin';
      const bytes = seededBytes(37, 1_000);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));

      for (const offset of [0, 500, 1_000, 5_000]) expect((await backend.getRange(key, offset, 0)).byteLength, `at ${offset}`).toBe(0);
      expect((await backend.getRange('segments/missing.bin', 0, 0)).byteLength).toBe(0);
    });

    it('getRange refuses a negative, fractional or unsafe offset or length with InvalidInputError', async () => {
      const key = 'segments/invalid.bin';
      const bytes = seededBytes(41, 100);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));

      const invalid: [offset: number, length: number][] = [[-1, 10], [0, -1], [1.5, 10], [0, 2.5], [Number.NaN, 1], [0, Number.MAX_SAFE_INTEGER + 1], [Number.MAX_SAFE_INTEGER, 1]];
      for (const [offset, length] of invalid) {
        expectChunkvaultError(await rejectionOf(backend.getRange(key, offset, length)), InvalidInputError, 'E_INVALID_INPUT', key);
      }
    });

    it('checksumOfObject reads back the digest and size of what is stored, for empty, small and large objects, md5 and sha256', async () => {
      for (const [name, bytes] of [['empty', randomBytes(0)], ['small', randomBytes(70_001)], ['large', randomBytes(LARGE_BYTES)]] as const) {
        const key = `checksum/${name}.bin`;
        await backend.put(key, bytes, optionsFor(bytes, 'md5'));
        for (const algorithm of ['md5', 'sha256'] as const) {
          expect(await checksumOfObject(backend, key, algorithm), `${name} ${algorithm}`).toEqual({ checksum: digestOf(bytes, algorithm), sizeBytes: bytes.byteLength });
        }
      }
    });

    it('checksumOfObject of a missing key rejects with NotFoundError', async () => {
      const key = 'checksum/missing.bin';
      expectChunkvaultError(await rejectionOf(checksumOfObject(backend, key, 'sha256')), NotFoundError, 'E_NOT_FOUND', key);
    });

    it('delete removes the object', async () => {
      const key = 'delete/chunk.bin';
      const kept = 'delete/kept.bin';
      const bytes = randomBytes(100);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));
      await backend.put(kept, bytes, optionsFor(bytes, 'md5'));

      await backend.delete(key);

      expect(await backend.head(key)).toBeUndefined();
      await expect(backend.get(key)).rejects.toBeInstanceOf(NotFoundError);
      expect(await keysOf(backend, '')).toEqual([kept]);
    });

    it('delete of a missing key resolves without throwing', async () => {
      await expect(backend.delete('delete/never-stored.bin')).resolves.toBeUndefined();
      await expect(backend.delete('no-such-dir/never-stored.bin')).resolves.toBeUndefined();

      const key = 'delete/twice.bin';
      const bytes = randomBytes(10);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));
      await backend.delete(key);
      await expect(backend.delete(key)).resolves.toBeUndefined();
    });

    it('list(prefix) returns exactly the objects under the prefix, list("") all of them', async () => {
      const objects: Record<string, number> = {
        'ds-a/shard-1/chunk-1.bin': 11,
        'ds-a/shard-1/chunk-2.bin': 22,
        'ds-a/shard-2/chunk-1.bin': 33,
        'ds-ab/shard-1/chunk-1.bin': 44,
        'ds-b/chunk-1.bin': 55,
        'top-level.bin': 0,
      };
      for (const [key, size] of Object.entries(objects)) {
        const bytes = randomBytes(size);
        await backend.put(key, bytes, optionsFor(bytes, 'md5'));
      }

      expect(await keysOf(backend, 'ds-a/')).toEqual(['ds-a/shard-1/chunk-1.bin', 'ds-a/shard-1/chunk-2.bin', 'ds-a/shard-2/chunk-1.bin']);
      expect(await keysOf(backend, 'ds-a/shard-1/')).toEqual(['ds-a/shard-1/chunk-1.bin', 'ds-a/shard-1/chunk-2.bin']);
      expect(await keysOf(backend, 'ds-b/')).toEqual(['ds-b/chunk-1.bin']);
      expect(await keysOf(backend, 'nothing-here/')).toEqual([]);
      expect(await keysOf(backend, '')).toEqual(Object.keys(objects).sort());

      const listed = await collect(backend.list(''));
      for (const info of listed) {
        expect(info.sizeBytes).toBe(objects[info.key]);
        expect(info.modifiedAt).toBeInstanceOf(Date);
      }
    });

    it('list("") of an empty backend yields nothing', async () => {
      expect(await collect(backend.list(''))).toEqual([]);
    });

    it.each(UNSAFE_KEYS)('refuses the unsafe key %j in put, get, getRange, head and delete with InvalidInputError', async (key) => {
      const bytes = randomBytes(8);
      const refusals = [
        await rejectionOf(backend.put(key, bytes, optionsFor(bytes, 'md5'))),
        await rejectionOf(backend.get(key)),
        await rejectionOf(backend.getRange(key, 0, 8)),
        await rejectionOf(backend.getRange(key, 0, 0)),
        await rejectionOf(backend.head(key)),
        await rejectionOf(backend.delete(key)),
      ];

      for (const error of refusals) expectChunkvaultError(error, InvalidInputError, 'E_INVALID_INPUT', key);
      expect(await keysOf(backend, '')).toEqual([]);
    });

    it('usage counts the bytes and objects put', async () => {
      expect(await backend.usage()).toMatchObject({ totalSizeBytes: 0, fileCount: 0 });

      const sizes = [1_000, 0, LARGE_BYTES];
      for (const [index, size] of sizes.entries()) {
        const bytes = randomBytes(size);
        await backend.put(`usage/chunk-${index}.bin`, bytes, optionsFor(bytes, 'sha256'));
      }
      const afterPuts = await backend.usage();
      expect(afterPuts).toMatchObject({ totalSizeBytes: 1_000 + LARGE_BYTES, fileCount: 3 });
      expect(typeof afterPuts.location).toBe('string');
      expect(afterPuts.location.length).toBeGreaterThan(0);

      const smaller = randomBytes(10);
      await backend.put('usage/chunk-2.bin', smaller, optionsFor(smaller, 'md5'));
      expect(await backend.usage()).toMatchObject({ totalSizeBytes: 1_010, fileCount: 3 });

      await backend.delete('usage/chunk-0.bin');
      expect(await backend.usage()).toMatchObject({ totalSizeBytes: 10, fileCount: 2 });
    });

    it('sweepIncompleteWrites leaves complete objects alone', async () => {
      const key = 'sweep/complete.bin';
      const bytes = randomBytes(3_000);
      await backend.put(key, bytes, optionsFor(bytes, 'md5'));

      expect(await backend.sweepIncompleteWrites()).toBe(0);

      expectSameBytes(await readAll(await backend.get(key)), bytes);
      expect(await keysOf(backend, '')).toEqual([key]);
    });
  });
}

/** Hex digest of `bytes`, computed independently of the code under test. */
export function digestOf(bytes: Uint8Array, algorithm: ChecksumAlgorithm): string {
  return createHash(algorithm).update(bytes).digest('hex');
}

/** `size` bytes drawn from a seeded generator: the same body on every run and backend, so a failing range can be replayed. */
export function seededBytes(seed: number, size: number): Buffer {
  const next = mulberry32(seed);
  const bytes = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 1) bytes[i] = Math.floor(next() * 256);
  return bytes;
}

export function optionsFor(bytes: Uint8Array, algorithm: ChecksumAlgorithm): PutOptions {
  return { sizeBytes: bytes.byteLength, checksum: digestOf(bytes, algorithm), algorithm };
}

/** A byte stream that delivers `bytes` in pieces of `pieceSize` (the last one shorter). */
export function streamOf(bytes: Uint8Array, pieceSize: number): Readable {
  function* pieces(): Generator<Buffer> {
    for (let offset = 0; offset < bytes.byteLength; offset += pieceSize) {
      yield Buffer.from(bytes.subarray(offset, offset + pieceSize));
    }
  }
  return Readable.from(pieces());
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of stream) pieces.push(Buffer.from(piece as Uint8Array));
  return Buffer.concat(pieces);
}

/** Listed keys under `prefix`, sorted because list() promises no order. */
export async function keysOf(backend: Backend, prefix: string): Promise<string[]> {
  return (await collect(backend.list(prefix))).map((info) => info.key).sort();
}

async function collect<T>(source: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of source) items.push(item);
  return items;
}

/** The value `promise` rejects with; fails the test if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the operation to reject, but it resolved');
}

/** Compares by length and digest so a mismatch of megabytes prints two short lines, not a dump. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  expect(digestOf(actual, 'sha256')).toBe(digestOf(expected, 'sha256'));
}

/** A failure rule of the seam: a ChunkvaultError of the given kind, not retryable, naming the key. */
function expectChunkvaultError(
  error: unknown,
  kind: abstract new (...args: never[]) => ChunkvaultError,
  code: ErrorCode,
  key: string,
): void {
  expect(error).toBeInstanceOf(kind);
  expect(error).toMatchObject({ code, retryable: false });
  expect((error as Error).message).toContain(key);
}
