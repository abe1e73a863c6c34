/**
 * Local filesystem backend. A put writes a temp file beside the final path, fsyncs it,
 * renames it into place and fsyncs the directory, so a crash leaves either the old state or
 * the complete new file. Temp files carry their writer's host and pid, so a starting worker
 * can remove those of dead writers without touching live ones.
 */
import {
  closeSync, constants as fsConstants, createReadStream, fdatasync, fstatSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeSync,
} from 'node:fs';
import { promisify } from 'node:util';
import { access, copyFile, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BackendIoError, ChecksumMismatchError, InvalidInputError, NotFoundError, SizeMismatchError } from '../errors.js';
import { HASH_SLICE_BYTES, newHash } from '../integrity/checksum.js';
import { hashFileOnThread } from '../integrity/hash-threads.js';
import type { ChecksumAlgorithm } from '../domain/types.js';
import { type Backend, type BackendCapabilities, type BackendUsage, type ObjectInfo, type PackedReplicaIds, type PutOptions, type PutReceipt, assertByteRange, piecesOf, usageFromListing } from './backend.js';
import { PackStore } from './pack/pack-store.js';
import { parsePackedKey } from './pack/packed-key.js';
import { assertSafeKey } from './storage-key.js';
import { syncDirectory } from './directory-sync.js';
import { DurableDirectories } from './durable-directories.js';
import { walkFiles } from './file-tree.js';
import { TEMP_MARK, exists, isErrno, linkOnSameFilesystem, processAlive, smallBodyOf, tempNameFor, wrapFsError, writeAll } from './fs-support.js';

/** Objects up to this size are written and read with synchronous calls (see #putSmall). */
const SMALL_IO_BYTES = 256 * 1024;
const fdatasyncAsync = promisify(fdatasync);

/** A temp file written and hashed by LocalBackend.writeHashed, not yet durable or named. */
export interface HashedTempFile {
  /** Digest of the file as it read back. */
  checksum: string;
  sizeBytes: number;
  /** Makes it durable (fdatasync) and names it `key` (a rename, the directory fsynced). Once. */
  place(key: string): Promise<void>;
  /** Removes it; nothing of it was made durable. Never throws. */
  discard(): Promise<void>;
}

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
    this.#packs = new PackStore({ pathOf: (key) => this.pathOf(key), basePath: this.basePath, directories: this.#dirs });
  }

  /** Absolute path of `key`; throws InvalidInputError if it is unsafe or would leave basePath. */
  get location(): string {
    return this.basePath;
  }

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
    const dir = path.dirname(finalPath);
    const tempPath = path.join(dir, tempNameFor(path.basename(finalPath)));
    if (options.sizeBytes <= SMALL_IO_BYTES) return this.#putSmall(key, finalPath, tempPath, body, options);
    let handle: FileHandle | undefined;
    try {
      handle = await this.#createTemp(dir, tempPath);
      let written = 0;
      for await (const piece of piecesOf(body)) {
        written += piece.byteLength;
        if (written > options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, written);
        await writeAll(handle, piece);
      }
      if (written !== options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, written);
      await handle.datasync();
      await handle.close();
      handle = undefined;
      return await this.#checkAndRename(key, tempPath, finalPath, options);
    } catch (error) {
      if (!(body instanceof Uint8Array)) body.destroy();
      await handle?.close().catch(() => undefined);
      await unlink(tempPath).catch(() => undefined);
      // ENOENT here means a directory or temp file vanished under us (e.g. swept): worth retrying.
      if (isErrno(error, 'ENOENT')) throw new BackendIoError(`put ${key}: ${(error as Error).message}`, { cause: error, retryable: true });
      throw wrapFsError(error, `put ${key}`);
    }
  }

  /**
   * As `put`, from the local file `sourcePath` (Backend.putFile): a hard link to it with
   * `link` (a copy when it is on another filesystem), else a copy the kernel makes
   * (copy_file_range, or a reflink), fdatasynced and then read back and checked. A link is
   * the source's own bytes, checked when the source was written: only its size is checked.
   * Either way the temp file is then renamed into place and its directory fsynced.
   */
  async putFile(key: string, sourcePath: string, options: PutOptions & { link?: boolean }): Promise<PutReceipt> {
    const finalPath = this.pathOf(key);
    refuseFileAt(key);
    const dir = path.dirname(finalPath);
    const tempPath = path.join(dir, tempNameFor(path.basename(finalPath)));
    try {
      const linked = await this.#dirs.creatingIn(dir, async () => options.link === true && (await linkOnSameFilesystem(sourcePath, tempPath)));
      if (linked) {
        const { size } = await stat(tempPath);
        if (size !== options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, size);
        await this.#renameDurably(tempPath, finalPath);
        return { linkedToCheckedSource: true };
      }
      await this.#dirs.creatingIn(dir, () => copyFile(sourcePath, tempPath, fsConstants.COPYFILE_FICLONE));
      const handle = await open(tempPath, 'r');
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
      return await this.#checkAndRename(key, tempPath, finalPath, options);
    } catch (error) {
      await unlink(tempPath).catch(() => undefined);
      if (isErrno(error, 'ENOENT')) {
        if (!(await exists(sourcePath))) throw new NotFoundError(`put ${key}: ${sourcePath} is gone`, { cause: error });
        throw new BackendIoError(`put ${key}: ${(error as Error).message}`, { cause: error, retryable: true });
      }
      throw wrapFsError(error, `put ${key}`);
    }
  }

  /**
   * Writes `bytes` to a new temp file in the base directory and reads it back, hashing it on a
   * hashing thread: one digest of the bytes as the file holds them, for a caller that does not
   * know it yet (the staging area's large chunks). It becomes durable and named only with
   * `place`, after the caller has used the digest; `discard` costs no disk write. A temp file a
   * crash leaves is swept as an incomplete write. `nameHint` only helps a person reading the directory.
   */
  async writeHashed(bytes: Uint8Array, algorithm: ChecksumAlgorithm, nameHint: string): Promise<HashedTempFile> {
    const tempPath = path.join(this.basePath, tempNameFor(nameHint));
    let handle: FileHandle | undefined;
    const discard = async (): Promise<void> => {
      await handle?.close().catch(() => undefined);
      handle = undefined;
      await unlink(tempPath).catch(() => undefined);
    };
    try {
      handle = await this.#createTemp(this.basePath, tempPath);
      await writeAll(handle, bytes);
      const { checksum, sizeBytes } = await hashFileOnThread(tempPath, algorithm);
      if (sizeBytes !== bytes.byteLength) throw new SizeMismatchError(`temp file ${tempPath}`, bytes.byteLength, sizeBytes);
      const place = async (key: string): Promise<void> => {
        const finalPath = this.pathOf(key);
        try {
          if (!handle) throw new Error(`${tempPath} was placed or discarded already`);
          await handle.datasync();
          await handle.close();
          handle = undefined;
          await this.#dirs.creatingIn(path.dirname(finalPath), () => this.#renameDurably(tempPath, finalPath));
        } catch (error) {
          await discard();
          throw wrapFsError(error, `put ${key}`);
        }
      };
      return { checksum, sizeBytes, place, discard };
    } catch (error) {
      await discard();
      throw wrapFsError(error, `write ${tempPath}`);
    }
  }

  /**
   * The last steps of a put, once the temp file is durable: read it back and hash it on a
   * hashing thread (no byte copied on this thread), rename it into place only if it matches,
   * fsync the directory. The read-back is the receipt's (verify_on_write needs no other).
   */
  async #checkAndRename(key: string, tempPath: string, finalPath: string, options: PutOptions): Promise<PutReceipt> {
    const started = process.hrtime.bigint();
    const actual = await hashFileOnThread(tempPath, options.algorithm);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (actual.checksum !== options.checksum) throw new ChecksumMismatchError(`storage key ${key}`, options.checksum, actual.checksum);
    if (actual.sizeBytes !== options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, actual.sizeBytes);
    await this.#renameDurably(tempPath, finalPath);
    return { readBack: { ...actual, seconds } };
  }

  async #renameDurably(tempPath: string, finalPath: string): Promise<void> {
    await rename(tempPath, finalPath);
    await syncDirectory(path.dirname(finalPath));
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

  /**
   * The same put for bodies up to SMALL_IO_BYTES, with the cheap calls made synchronously
   * (creating, writing, closing and renaming a small file take microseconds in the kernel,
   * a thread-pool round trip each otherwise); the fsyncs stay asynchronous.
   */
  async #putSmall(key: string, finalPath: string, tempPath: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    return this.#writeSmall(key, finalPath, tempPath, async () => {
      const bytes = await smallBodyOf(key, body, options.sizeBytes);
      if (bytes.byteLength !== options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, bytes.byteLength);
      const actual = newHash(options.algorithm).update(bytes).digest('hex');
      if (actual !== options.checksum) throw new ChecksumMismatchError(`storage key ${key}`, options.checksum, actual);
      return bytes;
    }, body);
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

  /** Creates, writes, fdatasyncs and renames a small file with synchronous calls but for the fsyncs; `bytesOf` gives (and checks) its content. */
  async #writeSmall(key: string, finalPath: string, tempPath: string, bytesOf: () => Promise<Uint8Array>, body?: Readable | Uint8Array): Promise<void> {
    const dir = path.dirname(finalPath);
    let fd: number | undefined;
    try {
      const bytes = await bytesOf();
      fd = await this.#dirs.creatingIn(dir, () => openSync(tempPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644));
      for (let offset = 0; offset < bytes.byteLength; ) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
      await fdatasyncAsync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(tempPath, finalPath);
      await syncDirectory(dir);
    } catch (error) {
      if (body !== undefined && !(body instanceof Uint8Array)) body.destroy();
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(tempPath);
      } catch {
        // not created, or already gone
      }
      if (isErrno(error, 'ENOENT')) throw new BackendIoError(`put ${key}: ${(error as Error).message}`, { cause: error, retryable: true });
      throw wrapFsError(error, `put ${key}`);
    }
  }

  /** Opens a new temp file in `dir`, making `dir` first where needed. */
  #createTemp(dir: string, tempPath: string): Promise<FileHandle> {
    return this.#dirs.creatingIn(dir, () => open(tempPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644));
  }
}

/** A packed record's key names a record, never a file: writing a file under it would shadow nothing and hide the record's damage. */
function refuseFileAt(key: string): void {
  if (parsePackedKey(key)) throw new InvalidInputError(`storage key ${key} names a record in a pack: it is written with putPacked, never as a file`);
}
