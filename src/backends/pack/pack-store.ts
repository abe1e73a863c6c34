/**
 * The packed replicas of one local backend: a PackWriter per directory (partition) that has
 * packs, made on first use, and the operations the backend's contract has on a packed key
 * (packed-key.ts). Packs live in the directories their replicas would have as files of their
 * own, so the seed's partitions hold them.
 */
import { Readable } from 'node:stream';
import type { ObjectInfo, PackedReplicaIds, PackFiles, PutOptions, PutReceipt } from '../backend.js';
import type { ChecksumAlgorithm } from '../../domain/types.js';
import { ChecksumMismatchError, SizeMismatchError } from '../../errors.js';
import { newHash } from '../../integrity/checksum.js';
import type { DurableDirectories } from '../durable-directories.js';
import type { PackLocation, PackRecordHeader } from './pack-format.js';
import { packedKeyOf, parsePackedKey, type PackedKey } from './packed-key.js';
import { bodyOfReplica, checkedRecord, markRecordDeleted, readPackRecord, recordInfo } from './pack-read.js';
import { packNameParts, PackWriter, SEAL_AFTER_IDLE_MS, THIS_HOST_TAG } from './pack-writer.js';
import { scanPack, sealPack, type PackScan } from './pack-scan.js';
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../directory-sync.js';
import { isErrno, processAlive } from '../fs-support.js';

/** A pack this size is closed and the next append starts another: small enough to rewrite when retention has emptied most of it. */
export const MAX_PACK_BYTES = 64 * 1024 * 1024;
/** Open packs (one per directory written to) kept at most; the longest unused is closed first. */
const MAX_OPEN_WRITERS = 64;

export interface PackStoreOptions {
  /** The absolute path of a key (the backend's own check that it stays inside the base path). */
  pathOf: (key: string) => string;
  basePath: string;
  directories: DurableDirectories;
  maxPackBytes?: number;
}

export class PackStore implements PackFiles {
  readonly #options: PackStoreOptions;
  /** Writers by directory key, least recently used first. */
  readonly #writers = new Map<string, PackWriter>();

  constructor(options: PackStoreOptions) {
    this.#options = options;
  }

  /** Appends `body` to a pack in the directory of `key` (the key it would have as a file); resolves with its packed key once durable. */
  async append(key: string, header: PackRecordHeader, body: Uint8Array): Promise<string> {
    return packedKeyOf((await this.#appendTo(key, header, body)).location);
  }

  async #appendTo(key: string, header: PackRecordHeader, body: Uint8Array): Promise<{ location: PackLocation; writer: PackWriter }> {
    const slash = key.lastIndexOf('/');
    const writer = this.#writerFor(slash < 0 ? '' : key.slice(0, slash));
    return { location: await writer.append(header, body), writer };
  }

  /**
   * Backend.putPacked: `body` checked against `options` (nothing appended when it does not
   * match), appended to the pack of `key`'s directory, then read back once durable.
   */
  async putChecked(key: string, body: Uint8Array, options: PutOptions & PackedReplicaIds): Promise<{ key: string; receipt: PutReceipt }> {
    if (body.byteLength !== options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, body.byteLength);
    const actual = newHash(options.algorithm).update(body).digest('hex');
    if (actual !== options.checksum) throw new ChecksumMismatchError(`storage key ${key}`, options.checksum, actual);
    const { chunkId, replicaId, metadata } = options;
    const header: PackRecordHeader = { kind: 'replica', chunkId, replicaId, checksum: `${options.algorithm}:${actual}`, sizeBytes: body.byteLength, ...(metadata ? { metadata } : {}) };
    const { location, writer } = await this.#appendTo(key, header, body);
    const packedKey = packedKeyOf(location);
    const started = process.hrtime.bigint();
    // Through the writer's own handle while the pack is still open (no open and close per
    // replica), else from the file; either way one pread of the durable record, checked whole.
    const record = await writer.readBack(location);
    const what = `replica ${replicaId} in pack ${location.pack} at ${location.offset}`;
    const back = record ? bodyOfReplica(checkedRecord(record, location, what), { chunkId, replicaId }, what) : await this.body(parsePackedKey(packedKey)!);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { key: packedKey, receipt: { readBack: { checksum: newHash(options.algorithm).update(back).digest('hex'), sizeBytes: back.byteLength, seconds } } };
  }

  /** `length` bytes of the record's body from `offset` (Backend.getRange); SizeMismatchError when the body ends before. */
  async range(packed: PackedKey, key: string, offset: number, length: number): Promise<Buffer> {
    const body = await this.body(packed);
    if (offset + length > body.byteLength) throw new SizeMismatchError(`storage key ${key} at ${offset}`, length, Math.max(0, body.byteLength - offset));
    return body.subarray(offset, offset + length);
  }

  /** Digest and size of the record's body (Backend.checksumOf). */
  async checksum(packed: PackedKey, algorithm: ChecksumAlgorithm): Promise<{ checksum: string; sizeBytes: number }> {
    const body = await this.body(packed);
    return { checksum: newHash(algorithm).update(body).digest('hex'), sizeBytes: body.byteLength };
  }

  /** The record's body as a stream (one buffer). Throws NotFoundError / ChecksumMismatchError as readPackRecord. */
  async get(packed: PackedKey): Promise<Readable> {
    return Readable.from([await this.body(packed)], { objectMode: false });
  }

  async body(packed: PackedKey): Promise<Buffer> {
    return (await readPackRecord(this.#options.pathOf(packed.pack), packed)).body;
  }

  /** Size and the pack's time for a live record; undefined when it is deleted or not there. */
  async head(packed: PackedKey, key: string): Promise<ObjectInfo | undefined> {
    const info = await recordInfo(this.#options.pathOf(packed.pack), packed);
    return info && !info.deleted ? { key, sizeBytes: info.bodyLength, modifiedAt: info.modifiedAt } : undefined;
  }

  /** Marks the record deleted in its pack; nothing when it is not there. */
  async delete(packed: PackedKey): Promise<void> {
    await markRecordDeleted(this.#options.pathOf(packed.pack), packed);
  }

  /** Walks the pack `packKey` from its bytes (scanPack). */
  scan(packKey: string): Promise<PackScan> {
    return scanPack(this.#options.pathOf(packKey));
  }

  /**
   * Whether no writer will append to the pack `packKey` (scanned as `scan`, modified at
   * `modifiedAt`) again: its writer sealed it, or the writer its name names is gone: a dead
   * process of this host, or on another host one that has not touched it for `staleAfterMs`
   * (as temp files of other hosts are judged). A pack with no such name counts as another
   * host's. An unsealed pack must also have been left alone for twice the time after which a
   * live writer seals an idle pack: a writer taken for dead by mistake (two hosts of one name)
   * would be appending to it, or would have sealed it.
   */
  isFree(packKey: string, scan: PackScan, modifiedAt: Date, staleAfterMs: number, now = Date.now()): boolean {
    if (scan.sealed) return true;
    if (now - modifiedAt.getTime() < 2 * SEAL_AFTER_IDLE_MS) return false;
    const writer = packNameParts(path.posix.basename(packKey));
    if (writer?.hostTag === THIS_HOST_TAG) return !processAlive(writer.pid);
    return now - modifiedAt.getTime() > staleAfterMs;
  }

  /** Cuts the torn tail of a pack no writer appends to any more (sealPack). */
  async cutTornTail(packKey: string): Promise<void> {
    await sealPack(this.#options.pathOf(packKey));
  }

  /** Removes the pack `packKey` durably (its directory fsynced); nothing when it is gone. */
  async remove(packKey: string): Promise<void> {
    const file = this.#options.pathOf(packKey);
    try {
      await unlink(file);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return;
      throw error;
    }
    await syncDirectory(path.dirname(file));
  }

  /** Closes every open pack once its appends are durable. */
  async close(): Promise<void> {
    const writers = [...this.#writers.values()];
    this.#writers.clear();
    await Promise.all(writers.map((w) => w.close()));
  }

  #writerFor(dirKey: string): PackWriter {
    let writer = this.#writers.get(dirKey);
    if (writer) {
      this.#writers.delete(dirKey); // to the most recently used end
    } else {
      writer = new PackWriter({
        dir: dirKey ? this.#options.pathOf(dirKey) : this.#options.basePath,
        dirKey,
        directories: this.#options.directories,
        maxPackBytes: this.#options.maxPackBytes ?? MAX_PACK_BYTES,
      });
      if (this.#writers.size >= MAX_OPEN_WRITERS) {
        const [oldestKey, oldest] = this.#writers.entries().next().value!;
        this.#writers.delete(oldestKey);
        void oldest.close();
      }
    }
    this.#writers.set(dirKey, writer);
    return writer;
  }
}
