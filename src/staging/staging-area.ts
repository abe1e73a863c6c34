/**
 * The staging area holds each chunk's bytes once, outside Redis, from the producer's call
 * until every replica of the chunk has ended. It is a directory used through the local
 * backend, so staged files get the same atomic, checksum-checked, durable writes.
 *
 * Staging is on the producer's filesystem: workers on other hosts need it mounted at the
 * same path (a shared volume).
 */
import type { Readable } from 'node:stream';
import type { ChecksumAlgorithm } from '../config/config.schema.js';
import { NotFoundError } from '../errors.js';
import { LocalBackend } from '../backends/local.backend.js';

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

  /** Streams staged bytes; throws NotFoundError naming the chunk when they are gone. */
  async open(stagedKey: string, chunkId: string): Promise<Readable> {
    try {
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
  async sweepOrphans(isReferenced: (stagedKey: string) => Promise<boolean>, olderThanMs: number, nowMs = Date.now()): Promise<number> {
    let freed = 0;
    for await (const object of this.#store.list('')) {
      if (nowMs - object.modifiedAt.getTime() <= olderThanMs || (await isReferenced(object.key))) continue;
      await this.#store.delete(object.key);
      freed += 1;
    }
    return freed;
  }
}
