/**
 * The staging area holds each chunk's bytes once, outside Redis, from the producer's call
 * until every replica of the chunk has ended. It is a directory used through the local
 * backend, so staged files get the same atomic, checksum-checked, durable writes.
 *
 * Small chunks are staged many to a file (a segment, `_seg#<random>`): creating a file is
 * the dearest filesystem call on the disks measured (docs/BENCHMARKS.md), and a segment
 * costs one creation, fdatasync and rename for up to SEGMENT_BYTES of chunks. Its replica
 * jobs name the segment and their chunk's offset in it; the catalog tracks which of its
 * chunks have not ended, and the job that ends the last one frees the file. Large chunks
 * keep a file each (`<chunkId>@<tag>`), as do chunks staged by a foreign producer.
 *
 * Staging is on the producer's filesystem: workers on other hosts need it mounted at the
 * same path (a shared volume).
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ChecksumAlgorithm } from '../domain/types.js';
import { NotFoundError } from '../errors.js';
import { LocalBackend } from '../backends/local.backend.js';

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

export class StagingArea {
  readonly #store: LocalBackend;

  constructor(dir: string, staleTempAfterMs: number) {
    this.#store = new LocalBackend({ basePath: dir, staleTempAfterMs });
  }

  get dir(): string {
    return this.#store.basePath;
  }

  /** Stages `bytes` under `stagedKey`, checking they still hash to `checksum` (the caller's buffer may have changed). */
  async stage(stagedKey: string, bytes: Uint8Array, checksum: string, algorithm: ChecksumAlgorithm): Promise<void> {
    await this.#store.put(stagedKey, bytes, { sizeBytes: bytes.byteLength, checksum, algorithm });
  }

  /**
   * Stages small chunks in one new segment, checking each still hashes to its checksum.
   * Returns the segment's name and each chunk's offset in it.
   */
  async stageSegment(parts: ReadonlyArray<{ bytes: Uint8Array; checksum: string; algorithm: ChecksumAlgorithm }>): Promise<{ segment: string; offsets: number[] }> {
    const segment = `${SEGMENT_MARK}${randomBytes(12).toString('hex')}`;
    return { segment, offsets: await this.#store.putParts(segment, parts) };
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
      if (error instanceof NotFoundError) {
        throw new NotFoundError(`staged bytes of chunk ${chunkId} are gone (${stagedKey} in ${this.dir})`, { cause: error });
      }
      throw error;
    }
  }

  /** Frees a chunk's staged bytes; does nothing if they are already gone. */
  async release(stagedKey: string): Promise<void> {
    await this.#store.delete(stagedKey);
  }

  async sweepIncompleteWrites(): Promise<number> {
    return this.#store.sweepIncompleteWrites();
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
      if (nowMs - object.modifiedAt.getTime() <= olderThanMs || (await isReferenced(object.key))) continue;
      await this.#store.delete(object.key);
      await onFreed(object.key);
      freed += 1;
    }
    return freed;
  }
}
