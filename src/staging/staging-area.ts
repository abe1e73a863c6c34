/**
 * The staging area holds each chunk's bytes once, outside Redis, from the producer's call
 * until every replica of the chunk has ended (the claim-check pattern: jobs carry only the
 * key). It is a backend: a local directory every producing and writing host mounts, or a
 * prefix in a bucket (chunkvault.staging.backend), so hosts need share nothing but Redis and
 * the buckets. Staged bytes get the same atomic, checksum-checked, durable writes as replicas.
 *
 * Small chunks are staged many to an object (a segment, `_seg#<random>`): creating a file is
 * the dearest filesystem call on the disks measured (docs/BENCHMARKS.md), and a request the
 * dearest thing on a bucket; a segment costs one of each for up to SEGMENT_BYTES of chunks.
 * Its replica jobs name the segment and their chunk's offset in it (a ranged read); the
 * catalog tracks which of its chunks have not ended, and the job that ends the last one frees
 * it. Large chunks keep an object each (`<chunkId>@<tag>`), as do chunks staged by a foreign
 * producer.
 */
import { hash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Config } from '../config/config.schema.js';
import type { ChecksumAlgorithm } from '../domain/types.js';
import { ChecksumMismatchError, NotFoundError, StagedBytesGoneError } from '../errors.js';
import type { Backend } from '../backends/backend.js';
import type { HashedTempFile } from '../backends/durable-file-writer.js';
import { LocalBackend } from '../backends/local.backend.js';
import { CLOUD_BACKEND_KINDS } from '../backends/cloud-backends.js';
import { normaliseKeyPrefix } from '../backends/cloud-support.js';
import { RESERVED_KEY_PREFIX } from '../storage/storage-layout.js';

/** Chunks up to this size are staged in segments. */
export const SEGMENT_CHUNK_MAX_BYTES = 256 * 1024;
/** A segment is closed once it holds this many bytes (written with synchronous calls: keep it small). */
export const SEGMENT_BYTES = 1024 * 1024;
/** ... or this many chunks. */
export const SEGMENT_CHUNKS = 256;
const SEGMENT_MARK = '_seg#';

/** Whether `stagedKey` names a segment (chunk ids cannot start with '_', so no chunk's own file can). */
export function isSegment(stagedKey: string): boolean {
  return stagedKey.startsWith(SEGMENT_MARK);
}

/** The store staged bytes live in, as configured: the staging directory, or a prefix of a cloud block's bucket. */
export function stagingStoreOf(config: Config): Backend {
  const staging = config.chunkvault.staging;
  const staleTempAfterMs = config.chunkvault.worker.stale_temp_after_ms;
  // Named apart from the replica backends: its storage marker is recorded under this name.
  if (staging.backend === 'local') return new LocalBackend({ name: 'staging-local', basePath: staging.dir, staleTempAfterMs });
  const kind = CLOUD_BACKEND_KINDS.find((candidate) => candidate.name === staging.backend)!;
  const block = config.storage.backends.cloud[kind.name]!;
  const keyPrefix = normaliseKeyPrefix(block.key_prefix, `storage.backends.cloud.${kind.name}`) + normaliseKeyPrefix(staging.key_prefix, 'chunkvault.staging');
  return kind.open({ ...block, key_prefix: keyPrefix, max_size_gb: 0 }, `staging-${kind.name}`).backend;
}

export class StagingArea {
  readonly #store: Backend;

  /** `store`: where staged bytes live (stagingStoreOf). */
  constructor(store: Backend) {
    this.#store = store;
  }

  /** The store's location (a directory, or a bucket URL and prefix), for messages. */
  get location(): string {
    return this.#store.location;
  }

  /** The store itself (its checks at start, and tests that look inside it). */
  get store(): Backend {
    return this.#store;
  }

  /** Stages `bytes` under `stagedKey`, checking they still hash to `checksum` (the caller's buffer may have changed). */
  async stage(stagedKey: string, bytes: Uint8Array, checksum: string, algorithm: ChecksumAlgorithm): Promise<void> {
    await this.#store.put(stagedKey, bytes, { sizeBytes: bytes.byteLength, checksum, algorithm });
  }

  /**
   * Stages a large chunk whose checksum is not known yet, where staging is a local directory:
   * writes `bytes` to a new file there and reads it back, hashing it once on a hashing thread.
   * That digest is the chunk's checksum: the bytes as staged, from which every replica is made
   * and against which each is verified (a caller that changes its buffer meanwhile gets the
   * bytes that were staged, never a checksum the staged file does not match). The caller names
   * the file with `place(stagedKey)`, which also makes it durable, or drops it with `discard()`.
   * Undefined for a bucket: hash the bytes there, then `stage` them.
   */
  async stageHashed(bytes: Uint8Array, algorithm: ChecksumAlgorithm, chunkId: string): Promise<HashedTempFile | undefined> {
    if (!(this.#store instanceof LocalBackend)) return undefined;
    return this.#store.writeHashed(bytes, algorithm, chunkId);
  }

  /**
   * Stages small chunks in one new segment, checking each still hashes to its checksum.
   * Returns the segment's name and each chunk's offset in it.
   */
  async stageSegment(parts: ReadonlyArray<{ bytes: Uint8Array; checksum: string; algorithm: ChecksumAlgorithm }>): Promise<{ segment: string; offsets: number[] }> {
    const segment = `${SEGMENT_MARK}${randomBytes(12).toString('hex')}`;
    const whole = Buffer.allocUnsafe(parts.reduce((sum, part) => sum + part.bytes.byteLength, 0));
    const offsets: number[] = [];
    let offset = 0;
    for (const [i, part] of parts.entries()) {
      // Checked on the copy that is written: the caller's buffer may change under us.
      whole.set(part.bytes, offset);
      const actual = hash(part.algorithm, whole.subarray(offset, offset + part.bytes.byteLength), 'hex');
      if (actual !== part.checksum) throw new ChecksumMismatchError(`storage key ${segment}, part ${i}`, part.checksum, actual);
      offsets.push(offset);
      offset += part.bytes.byteLength;
    }
    await this.#store.put(segment, whole, { sizeBytes: whole.byteLength, checksum: hash('sha256', whole, 'hex'), algorithm: 'sha256' });
    return { segment, offsets };
  }

  /**
   * Staged bytes of a chunk: its own file as a stream, or (given `offset`) its `sizeBytes`
   * in a segment. Throws NotFoundError naming the chunk when they are gone.
   */
  async open(stagedKey: string, chunkId: string, offset?: number, sizeBytes = 0): Promise<Readable | Buffer> {
    try {
      if (offset !== undefined) return await this.#store.getRange(stagedKey, offset, sizeBytes);
      return await this.#store.get(stagedKey);
    } catch (error) {
      throw this.goneAs(error, stagedKey, chunkId);
    }
  }

  /** `error`, or when it is a NotFoundError, a StagedBytesGoneError saying that chunk `chunkId`'s staged bytes are gone. */
  goneAs(error: unknown, stagedKey: string, chunkId: string): unknown {
    if (!(error instanceof NotFoundError)) return error;
    return new StagedBytesGoneError(`staged bytes of chunk ${chunkId} are gone (${stagedKey} in ${this.location})`, { cause: error });
  }

  /**
   * The local file holding a chunk's own staged bytes, when staging is a local directory;
   * undefined for a segment or a bucket. For a backend's putFile: the bytes need not pass
   * through the worker. The file is durable, checked, and never written again.
   */
  localFileOf(stagedKey: string): string | undefined {
    if (isSegment(stagedKey) || !(this.#store instanceof LocalBackend)) return undefined;
    return this.#store.pathOf(stagedKey);
  }

  /** Frees a chunk's staged bytes; does nothing if they are already gone. */
  async release(stagedKey: string): Promise<void> {
    await this.#store.delete(stagedKey);
  }

  async sweepIncompleteWrites(): Promise<number> {
    return this.#store.sweepIncompleteWrites();
  }

  async close(): Promise<void> {
    await this.#store.close();
  }

  /**
   * Frees staged bytes no job will ever release: older than `olderThanMs` (a producer may be
   * between staging and queuing) and not `isReferenced` by a job that may still read them (the
   * worker that ended the chunk died before freeing them, the producer died before queuing,
   * or Redis lost the jobs). Returns the number freed.
   */
  async sweepOrphans(
    isReferenced: (stagedKey: string) => Promise<boolean>,
    olderThanMs: number,
    nowMs = Date.now(),
    onFreed: (stagedKey: string) => Promise<void> = async () => undefined,
  ): Promise<number> {
    let freed = 0;
    for await (const object of this.#store.list('')) {
      // The store's own marker (storage identity) is no staged chunk.
      if (object.key.startsWith(RESERVED_KEY_PREFIX)) continue;
      if (nowMs - object.modifiedAt.getTime() <= olderThanMs || (await isReferenced(object.key))) continue;
      await this.#store.delete(object.key);
      await onFreed(object.key);
      freed += 1;
    }
    return freed;
  }
}
