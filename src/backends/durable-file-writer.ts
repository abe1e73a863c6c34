/**
 * How the local backend writes a file: a temp file beside the final path, fsynced, renamed
 * into place and the directory fsynced, so a crash leaves either the old state or the complete
 * new file. Temp files are named by tempNameFor (their writer's host and pid), so the backend's
 * sweep can remove those of dead writers without touching live ones. Kept apart from
 * LocalBackend, which decides which keys are files at all (a packed key never is) and reads them.
 */
import { closeSync, constants as fsConstants, fdatasync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import { copyFile, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BackendIoError, ChecksumMismatchError, NotFoundError, SizeMismatchError } from '../errors.js';
import { newHash } from '../integrity/checksum.js';
import { hashFileOnThread } from '../integrity/hash-threads.js';
import type { ChecksumAlgorithm } from '../domain/types.js';
import { type PutOptions, type PutReceipt, piecesOf } from './backend.js';
import { syncDirectory } from './directory-sync.js';
import type { DurableDirectories } from './durable-directories.js';
import { exists, isErrno, linkOnSameFilesystem, smallBodyOf, tempNameFor, wrapFsError, writeAll } from './fs-support.js';

/** Objects up to this size are written (see #putSmall) and read (LocalBackend.get and checksumOf) with synchronous calls. */
export const SMALL_IO_BYTES = 256 * 1024;
const fdatasyncAsync = promisify(fdatasync);

/** A temp file written and hashed by DurableFileWriter.writeHashed, not yet durable or named. */
export interface HashedTempFile {
  /** Digest of the file as it read back. */
  checksum: string;
  sizeBytes: number;
  /** Makes it durable (fdatasync) and names it `key` (a rename, the directory fsynced). Once. */
  place(key: string): Promise<void>;
  /** Removes it; nothing of it was made durable. Never throws. */
  discard(): Promise<void>;
}

export interface DurableFileWriterOptions {
  /** Where writeHashed makes its temp files. */
  basePath: string;
  /** The absolute path of a key (the backend's own check that it stays inside the base path). */
  pathOf: (key: string) => string;
  /** The backend's own, shared with its packs, so writers into one new directory wait for the same fsyncs. */
  directories: DurableDirectories;
}

export class DurableFileWriter {
  readonly #basePath: string;
  readonly #pathOf: (key: string) => string;
  readonly #dirs: DurableDirectories;

  constructor(options: DurableFileWriterOptions) {
    this.#basePath = options.basePath;
    this.#pathOf = options.pathOf;
    this.#dirs = options.directories;
  }

  /** Backend.put of `key` as the file `finalPath`: streamed into a temp file beside it, checked, renamed into place. */
  async put(key: string, finalPath: string, body: Readable | Uint8Array, options: PutOptions): Promise<PutReceipt | void> {
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
  async putFile(key: string, finalPath: string, sourcePath: string, options: PutOptions & { link?: boolean }): Promise<PutReceipt> {
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
    const tempPath = path.join(this.#basePath, tempNameFor(nameHint));
    let handle: FileHandle | undefined;
    const discard = async (): Promise<void> => {
      await handle?.close().catch(() => undefined);
      handle = undefined;
      await unlink(tempPath).catch(() => undefined);
    };
    try {
      handle = await this.#createTemp(this.#basePath, tempPath);
      await writeAll(handle, bytes);
      const { checksum, sizeBytes } = await hashFileOnThread(tempPath, algorithm);
      if (sizeBytes !== bytes.byteLength) throw new SizeMismatchError(`temp file ${tempPath}`, bytes.byteLength, sizeBytes);
      const place = async (key: string): Promise<void> => {
        const finalPath = this.#pathOf(key);
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
