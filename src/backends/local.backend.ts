/**
 * Local filesystem backend. Each object is a file under basePath, written by DurableFileWriter
 * (a temp file beside the final path, fsynced, renamed into place and the directory fsynced, so
 * a crash leaves either the old state or the complete new file); small replicas may instead be
 * records in pack files (PackStore), reached by their packed keys. Temp files carry their
 * writer's host and pid, so a starting worker can remove those of dead writers without
 * touching live ones.
 */
import { closeSync, constants as fsConstants, createReadStream, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { access, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BackendIoError, InvalidInputError, SizeMismatchError } from '../errors.js';
import { HASH_SLICE_BYTES, newHash } from '../integrity/checksum.js';
import { hashFileOnThread } from '../integrity/hash-threads.js';
import type { ChecksumAlgorithm } from '../domain/types.js';
import { type Backend, type BackendCapabilities, type BackendUsage, type ObjectInfo, type PackedReplicaIds, type PutOptions, type PutReceipt, assertByteRange, usageFromListing } from './backend.js';
import { PackStore } from './pack/pack-store.js';
import { parsePackedKey } from './pack/packed-key.js';
import { assertSafeKey } from './storage-key.js';
import { DurableDirectories } from './durable-directories.js';
import { DurableFileWriter, SMALL_IO_BYTES, type HashedTempFile } from './durable-file-writer.js';
import { walkFiles } from './file-tree.js';
import { TEMP_MARK, isErrno, processAlive, wrapFsError } from './fs-support.js';

export interface LocalBackendOptions {
  basePath: string;
  /** Its name in the catalog and in messages (default "local"; the staging directory's store is another). */
  name?: string;
  /**
   * Temp files of writers on other hosts (or with a name that cannot be parsed) older than
   * this are swept. Temp files of this host are swept exactly when their writer's pid is dead.
   */
  staleTempAfterMs: number;
}

export class LocalBackend implements Backend {
  readonly name: string;
  readonly basePath: string;
  readonly #staleTempAfterMs: number;
  readonly #host = hostname();
  readonly #dirs = new DurableDirectories();
  readonly #files: DurableFileWriter;
  readonly #packs: PackStore;
  /** Backend.packs. */
  get packs(): PackStore {
    return this.#packs;
  }

  readonly capabilities: BackendCapabilities;

  constructor(options: LocalBackendOptions) {
    this.name = options.name ?? 'local';
    this.basePath = path.resolve(options.basePath);
    this.#staleTempAfterMs = options.staleTempAfterMs;
    this.capabilities = { localDirectory: this.basePath };
    this.#files = new DurableFileWriter({ basePath: this.basePath, pathOf: (key) => this.pathOf(key), directories: this.#dirs });
    this.#packs = new PackStore({ pathOf: (key) => this.pathOf(key), basePath: this.basePath, directories: this.#dirs });
  }

  get location(): string {
    return this.basePath;
  }

  /** Absolute path of `key`; throws InvalidInputError if it is unsafe or would leave basePath. */
  pathOf(key: string): string {
    assertSafeKey(key);
    const full = path.resolve(this.basePath, ...key.split('/'));
    if (!full.startsWith(this.basePath + path.sep)) {
      throw new InvalidInputError(`storage key ${JSON.stringify(key)} resolves outside ${this.basePath}`);
    }
    return full;
  }

  async put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<PutReceipt | void> {
    const finalPath = this.pathOf(key);
    refuseFileAt(key);
    return this.#files.put(key, finalPath, body, options);
  }

  /** As `put`, from the local file `sourcePath` (Backend.putFile): a hard link to it or a copy the kernel makes (DurableFileWriter.putFile). */
  async putFile(key: string, sourcePath: string, options: PutOptions & { link?: boolean }): Promise<PutReceipt> {
    const finalPath = this.pathOf(key);
    refuseFileAt(key);
    return this.#files.putFile(key, finalPath, sourcePath, options);
  }

  /** A new temp file of `bytes` in the base directory, with their digest as it read back, placed or discarded later (DurableFileWriter.writeHashed). */
  async writeHashed(bytes: Uint8Array, algorithm: ChecksumAlgorithm, nameHint: string): Promise<HashedTempFile> {
    return this.#files.writeHashed(bytes, algorithm, nameHint);
  }

  /** Backend.putPacked: the body checked, appended to its directory's pack (PackStore), then read back. */
  async putPacked(key: string, body: Uint8Array, options: PutOptions & PackedReplicaIds): Promise<{ key: string; receipt: PutReceipt }> {
    this.pathOf(key);
    return this.#packs.putChecked(key, body, options).catch((error: unknown) => Promise.reject(wrapFsError(error, `put ${key} in a pack`)));
  }

  async get(key: string): Promise<Readable> {
    const packed = parsePackedKey(key);
    if (packed) return this.#packs.get(packed).catch((error: unknown) => Promise.reject(wrapFsError(error, `get ${key}`)));
    const full = this.pathOf(key);
    try {
      // Small objects are read at once with synchronous calls (a few µs each here, against
      // ~50 µs of main-thread time per call through the thread pool); large ones stream.
      const fd = openSync(full, 'r');
      let streaming = false;
      try {
        const { size } = fstatSync(fd);
        if (size > SMALL_IO_BYTES) {
          streaming = true;
          return createReadStream('', { fd, highWaterMark: HASH_SLICE_BYTES });
        }
        const bytes = Buffer.allocUnsafe(size);
        let offset = 0;
        for (let n; offset < size && (n = readSync(fd, bytes, offset, size - offset, offset)) > 0; ) offset += n;
        return Readable.from([bytes.subarray(0, offset)], { objectMode: false });
      } finally {
        if (!streaming) closeSync(fd);
      }
    } catch (error) {
      throw wrapFsError(error, `get ${key}`);
    }
  }

  /** A large object is read and hashed on a hashing thread; a small one here, at once. */
  async checksumOf(key: string, algorithm: ChecksumAlgorithm): Promise<{ checksum: string; sizeBytes: number }> {
    const full = this.pathOf(key);
    try {
      const packed = parsePackedKey(key);
      if (packed) return await this.#packs.checksum(packed, algorithm);
      if (statSync(full).size > SMALL_IO_BYTES) return await hashFileOnThread(full, algorithm);
      const bytes = readFileSync(full);
      return { checksum: newHash(algorithm).update(bytes).digest('hex'), sizeBytes: bytes.byteLength };
    } catch (error) {
      throw wrapFsError(error, `checksum ${key}`);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const full = this.pathOf(key);
    try {
      const packed = parsePackedKey(key);
      if (packed) return await this.#packs.head(packed, key);
      const info = await stat(full);
      return info.isFile() ? { key, sizeBytes: info.size, modifiedAt: info.mtime } : undefined;
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return undefined;
      throw wrapFsError(error, `head ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Only the directory the prefix names is walked (checkpoint listings never touch chunk data).
    const slash = prefix.lastIndexOf('/');
    const within = slash < 0 ? '' : prefix.slice(0, slash);
    for await (const entry of walkFiles(this.basePath, within ? this.pathOf(within) : this.basePath)) {
      if (entry.temp) continue;
      if (!entry.key.startsWith(prefix)) continue;
      yield { key: entry.key, sizeBytes: entry.sizeBytes, modifiedAt: entry.modifiedAt };
    }
  }

  async delete(key: string): Promise<void> {
    const full = this.pathOf(key);
    try {
      const packed = parsePackedKey(key);
      if (packed) return await this.#packs.delete(packed);
      await unlink(full);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return;
      throw wrapFsError(error, `delete ${key}`);
    }
  }

  usage(): Promise<BackendUsage> {
    return usageFromListing(this);
  }

  /**
   * The base path need not exist yet (the first put creates it), but it, or else its nearest
   * existing ancestor, must be a directory this process may write to.
   */
  async probe(): Promise<void> {
    let dir = this.basePath;
    for (;;) {
      try {
        const info = await stat(dir);
        if (!info.isDirectory()) throw new BackendIoError(`probe ${this.basePath}: ${dir} is not a directory`, { retryable: false });
        await access(dir, fsConstants.W_OK | fsConstants.X_OK);
        return;
      } catch (error) {
        if (isErrno(error, 'ENOENT') && path.dirname(dir) !== dir) {
          dir = path.dirname(dir);
          continue;
        }
        throw wrapFsError(error, `probe ${this.basePath}`);
      }
    }
  }

  async sweepIncompleteWrites(): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for await (const entry of walkFiles(this.basePath, this.basePath)) {
      if (!entry.temp) continue;
      const [pidText, host] = entry.name.slice(TEMP_MARK.length).split('~');
      const pid = Number(pidText);
      const thisHost = host === this.#host && Number.isInteger(pid) && pid > 0;
      const abandoned = thisHost ? !processAlive(pid) : now - entry.modifiedAt.getTime() > this.#staleTempAfterMs;
      if (abandoned) {
        await unlink(entry.fullPath).catch((error: unknown) => {
          if (!isErrno(error, 'ENOENT')) throw wrapFsError(error, `sweep ${entry.fullPath}`);
        });
        removed += 1;
      }
    }
    return removed;
  }

  /** Closes the open packs once their appends are durable; holds no other files between calls. */
  async close(): Promise<void> {
    await this.#packs.close();
  }

  /** `length` bytes of `key` from `offset`, read at once (small ranges: a chunk in a staged segment). */
  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const full = this.pathOf(key);
    assertByteRange(key, offset, length);
    // As on the object stores, where it saves a request: nothing to read, so the file is not opened.
    if (length === 0) return Buffer.alloc(0);
    try {
      const packed = parsePackedKey(key);
      if (packed) return await this.#packs.range(packed, key, offset, length);
      const fd = openSync(full, 'r');
      try {
        const bytes = Buffer.allocUnsafe(length);
        let done = 0;
        for (let n; done < length && (n = readSync(fd, bytes, done, length - done, offset + done)) > 0; ) done += n;
        if (done !== length) throw new SizeMismatchError(`storage key ${key} at ${offset}`, length, done);
        return bytes;
      } finally {
        closeSync(fd);
      }
    } catch (error) {
      if (error instanceof SizeMismatchError) throw error;
      throw wrapFsError(error, `get ${key}`);
    }
  }
}

/** A packed record's key names a record, never a file: writing a file under it would shadow nothing and hide the record's damage. */
function refuseFileAt(key: string): void {
  if (parsePackedKey(key)) throw new InvalidInputError(`storage key ${key} names a record in a pack: it is written with putPacked, never as a file`);
}
