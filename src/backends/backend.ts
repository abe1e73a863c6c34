/**
 * The storage backend seam: the only way chunkvault touches stored bytes. A backend holds
 * objects under keys (relative, '/'-separated, validated by `assertSafeKey`).
 *
 * Failure rules every backend keeps:
 * - errors are ChunkvaultErrors with the key in the message and the original as `cause`;
 *   `retryable` tells whether trying again can help;
 * - nothing half-written is ever visible under a final key.
 */
import type { Readable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InvalidInputError } from '../errors.js';
import { HASH_SLICE_BYTES, checksumOfStream } from '../integrity/checksum.js';
import type { ChecksumAlgorithm } from '../domain/types.js';
import type { PackRecordHeader } from './pack/pack-format.js';
import type { PackScan } from './pack/pack-scan.js';
import type { PackedKey } from './pack/packed-key.js';

export interface PutOptions {
  /** Exact length the body must have. */
  sizeBytes: number;
  /** Digest the body must hash to; on mismatch nothing is stored. */
  checksum: string;
  algorithm: ChecksumAlgorithm;
}

/** What a put knows of the object it made. */
export interface PutReceipt {
  /**
   * The object's digest and size as its bytes read back from the backend once durable (the
   * file renamed into place afterwards, unchanged): what verify_on_write checks, so the caller
   * need not read the object again. Absent when the put did not read it back.
   */
  readBack?: { checksum: string; sizeBytes: number; /** Time the read-back took. */ seconds: number };
  /**
   * The object is a hard link to putFile's source (its `link` option), and so the very bytes
   * that were checked against the same checksum when the source was written (a staged file:
   * fsynced, checked, never written again). Reading them back would hash the same file once
   * more, so verify_on_write takes that check as the object's (README, Guarantees).
   */
  linkedToCheckedSource?: true;
}

/**
 * The pack files of a backend that keeps small replicas in packs (the local backend's
 * PackStore, src/backends/pack/pack-store.ts): what compaction reads and rewrites them with.
 */
export interface PackFiles {
  /** Walks the pack from its bytes: its records, damage, a torn tail, whether it is sealed. */
  scan(packKey: string): Promise<PackScan>;
  /** Whether no writer will append to the pack again (sealed, or its writer gone and the pack left alone). */
  isFree(packKey: string, scan: PackScan, modifiedAt: Date, staleAfterMs: number, now?: number): boolean;
  /** Cuts the torn tail of a pack no writer appends to any more. */
  cutTornTail(packKey: string): Promise<void>;
  /** Removes the pack durably; nothing when it is gone. */
  remove(packKey: string): Promise<void>;
  /** Appends a record to a pack in the directory of `key`; resolves with its packed key once durable. */
  append(key: string, header: PackRecordHeader, body: Uint8Array): Promise<string>;
  /** The checked body of the live record at `packed`. */
  body(packed: PackedKey): Promise<Buffer>;
}

/** What a packed record names, so the pack alone says whose bytes it holds (reindex, compaction). */
export interface PackedReplicaIds {
  chunkId: string;
  replicaId: string;
  /** The replica's metadata as its journal record has it, kept in the record's header too. */
  metadata?: Record<string, unknown>;
}

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  modifiedAt: Date;
}

export interface BackendUsage {
  totalSizeBytes: number;
  fileCount: number;
  /** Human-readable location (directory, bucket URL). */
  location: string;
}

/**
 * What a backend is, beyond the contract, that callers may choose behaviour by (never by its
 * class). Every field is optional: a backend declares only what holds for it.
 */
export interface BackendCapabilities {
  /**
   * The objects are files under this absolute directory of this host's filesystem: appending
   * to a file there and fdatasyncing it is far cheaper than creating an object, so per-replica
   * records are better kept in an append-only file in it than as an object each.
   */
  readonly localDirectory?: string;
}

export interface Backend {
  /** Name recorded in the catalog for replicas on this backend (e.g. "local"). */
  readonly name: string;

  /** What callers may rely on beyond this contract (see BackendCapabilities). */
  readonly capabilities: BackendCapabilities;

  /** Human-readable location (directory, bucket URL), for statistics and messages. */
  readonly location: string;

  /** The backend's pack files, where it keeps small replicas in packs (putPacked): what compaction works on. */
  readonly packs?: PackFiles;

  /**
   * Stores `body` under `key` atomically and durably: when it resolves, the complete object
   * is there and survives a crash. Replaces an existing object.
   * Throws ChecksumMismatchError / SizeMismatchError (not retryable) when the body does not
   * match `options`, leaving the key as it was; BackendIoError on I/O failure.
   */
  put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<PutReceipt | void>;

  /**
   * Optional, where the backend holds local files: stores a copy of the local file
   * `sourcePath` under `key` as `put` stores a body (atomic, durable, checked against
   * `options`), without its bytes passing through this process: a copy the kernel makes (a
   * reflink where the filesystem has them). With `link`, the object is a hard link to the
   * source instead when both are on one filesystem (a copy otherwise): no byte is written, so
   * the source must be durable already, must have been checked against `options.checksum`
   * when it was written, and must never change or be written again (staged files are all
   * that); such a link is not read back again (PutReceipt.linkedToCheckedSource). Throws as
   * `put` does, and NotFoundError when the source is gone.
   */
  putFile?(key: string, sourcePath: string, options: PutOptions & { link?: boolean }): Promise<PutReceipt>;

  /**
   * Optional, where the backend keeps small objects in pack files (the local backend, for
   * replicas up to `chunkvault.packing.max_chunk_bytes`): stores `body` as a record appended
   * to a pack in the directory `key` names (the key it would have as an object of its own),
   * checked against `options` first (nothing is appended when it does not match), durable when
   * it resolves (appends waiting together share one fdatasync), and read back once durable
   * (receipt.readBack). Resolves with the key the record is reached by from then on: `get`,
   * `getRange`, `head` and `checksumOf` read it, `delete` marks it deleted in its pack. A retry
   * appends another record; one nothing points at is dropped when its pack is compacted.
   */
  putPacked?(key: string, body: Uint8Array, options: PutOptions & PackedReplicaIds): Promise<{ key: string; receipt: PutReceipt }>;

  /** Streams the object. Throws NotFoundError when there is none; BackendIoError otherwise. */
  get(key: string): Promise<Readable>;

  /**
   * Exactly `length` bytes of the object from byte `offset`, read into one Buffer: meant for
   * small ranges (a chunk staged inside a larger object), since the whole range is buffered;
   * stream a large object with `get`. A zero-length range resolves with an empty Buffer
   * without reading the store, whether or not the object is there.
   * Throws NotFoundError when the object does not exist; SizeMismatchError (not retryable)
   * when it ends before `offset + length`, also when it ends before `offset`;
   * InvalidInputError when `offset` or `length` is not a non-negative safe integer;
   * BackendIoError otherwise (`retryable` says whether trying again can help).
   */
  getRange(key: string, offset: number, length: number): Promise<Buffer>;

  /**
   * Reads the object back and hashes it, where the backend can do that cheaper than streaming
   * it through the caller (the local backend hashes a large file on a hashing thread). Throws
   * as `get` does. Use `checksumOfObject`, which falls back to hashing `get`'s stream.
   */
  checksumOf?(key: string, algorithm: ChecksumAlgorithm): Promise<{ checksum: string; sizeBytes: number }>;

  /** Size and time of the object, or undefined when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /** Every object whose key starts with `prefix` ("" for all), in no set order. Temp files are never listed. */
  list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Removes the object; does not throw when it does not exist. */
  delete(key: string): Promise<void>;

  /** Bytes and objects held, for statistics. */
  usage(): Promise<BackendUsage>;

  /**
   * Cheap check that the backend is usable now (for readiness probes): reachable, its bucket,
   * container or directory there, the credentials accepted. Changes nothing. Throws a
   * BackendIoError (or the SDK's error wrapped as one) naming what is wrong.
   */
  probe(): Promise<void>;

  /**
   * Removes leftovers of writes that died mid-way (crashed process). Safe to call while
   * other writers run: only what no live writer can still own is removed.
   * Returns the number removed.
   */
  sweepIncompleteWrites(): Promise<number>;

  close(): Promise<void>;
}

/** Refuses a range `getRange` cannot mean: a negative, fractional or unsafe offset or length (a negative file position would read from the start). */
export function assertByteRange(key: string, offset: number, length: number): void {
  for (const [name, value] of [['offset', offset], ['length', length]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new InvalidInputError(`getRange ${key}: ${name} must be a non-negative integer, not ${value}`);
    }
  }
  if (!Number.isSafeInteger(offset + length)) throw new InvalidInputError(`getRange ${key}: the range ${offset}+${length} ends beyond any object`);
}

/** `usage()` for a backend that can only list: every object's size, summed (one full listing). */
export async function usageFromListing(backend: Pick<Backend, 'list' | 'location'>): Promise<BackendUsage> {
  let totalSizeBytes = 0;
  let fileCount = 0;
  for await (const info of backend.list('')) {
    totalSizeBytes += info.sizeBytes;
    fileCount += 1;
  }
  return { totalSizeBytes, fileCount, location: backend.location };
}

/** Prefix `probeByListing` lists under: reserved (ids start with a letter or digit), never written. */
const PROBE_PREFIX = '_chunkvault/probe/';

/** `probe()` for a backend that can list: one listing request, which fails when the store is unreachable, missing or refuses the credentials. */
export async function probeByListing(backend: Pick<Backend, 'list'>): Promise<void> {
  for await (const _object of backend.list(PROBE_PREFIX)) break;
}

/** Digest and size of the object under `key` as it reads back now (see Backend.checksumOf). */
export async function checksumOfObject(backend: Backend, key: string, algorithm: ChecksumAlgorithm): Promise<{ checksum: string; sizeBytes: number }> {
  if (backend.checksumOf) return backend.checksumOf(key, algorithm);
  return checksumOfStream(await backend.get(key), algorithm);
}

/**
 * The body as pieces: a Uint8Array in 1 MiB slices with a yield to the event loop between
 * them (so hashing a large body never blocks a worker), a stream as it comes.
 */
export async function* piecesOf(body: Readable | Uint8Array): AsyncIterable<Uint8Array> {
  if (body instanceof Uint8Array) {
    for (let offset = 0; offset < body.byteLength; offset += HASH_SLICE_BYTES) {
      yield body.subarray(offset, offset + HASH_SLICE_BYTES);
      if (offset + HASH_SLICE_BYTES < body.byteLength) await yieldToLoop();
    }
    return;
  }
  for await (const piece of body) yield typeof piece === 'string' ? Buffer.from(piece) : (piece as Uint8Array);
}
