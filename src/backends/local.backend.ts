/**
 * Local filesystem backend. A put writes a temp file beside the final path, fsyncs it,
 * renames it into place and fsyncs the directory, so a crash leaves either the old state or
 * the complete new file. Temp files carry their writer's host and pid, so a starting worker
 * can remove those of dead writers without touching live ones.
 */
import { constants as fsConstants, type Dirent } from 'node:fs';
import { mkdir, open, opendir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { BackendIoError, ChecksumMismatchError, InvalidInputError, NotFoundError, SizeMismatchError } from '../errors.js';
import { HASH_SLICE_BYTES, newHash } from '../integrity/checksum.js';
import type { Backend, BackendUsage, ObjectInfo, PutOptions } from './backend.js';
import { assertSafeKey } from './storage-key.js';

const TEMP_MARK = '.cvtmp~';

export interface LocalBackendOptions {
  basePath: string;
  /**
   * Temp files of writers on other hosts (or with a name that cannot be parsed) older than
   * this are swept. Temp files of this host are swept exactly when their writer's pid is dead.
   */
  staleTempAfterMs: number;
}

export class LocalBackend implements Backend {
  readonly name = 'local';
  readonly basePath: string;
  readonly #staleTempAfterMs: number;
  readonly #host = hostname();

  constructor(options: LocalBackendOptions) {
    this.basePath = path.resolve(options.basePath);
    this.#staleTempAfterMs = options.staleTempAfterMs;
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

  async put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    const finalPath = this.pathOf(key);
    const dir = path.dirname(finalPath);
    const tempPath = path.join(dir, `${TEMP_MARK}${process.pid}~${this.#host}~${randomBytes(6).toString('hex')}~${path.basename(finalPath)}`);
    let handle: FileHandle | undefined;
    try {
      await this.#ensureDir(dir);
      handle = await open(tempPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
      const hash = newHash(options.algorithm);
      let written = 0;
      for await (const piece of slices(body)) {
        written += piece.byteLength;
        if (written > options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, written);
        hash.update(piece);
        await writeAll(handle, piece);
      }
      if (written !== options.sizeBytes) throw new SizeMismatchError(`storage key ${key}`, options.sizeBytes, written);
      const actual = hash.digest('hex');
      if (actual !== options.checksum) throw new ChecksumMismatchError(`storage key ${key}`, options.checksum, actual);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await rename(tempPath, finalPath);
      await fsyncDir(dir);
    } catch (error) {
      if (!(body instanceof Uint8Array)) body.destroy();
      await handle?.close().catch(() => undefined);
      await unlink(tempPath).catch(() => undefined);
      // ENOENT here means a directory or temp file vanished under us (e.g. swept): worth retrying.
      if (isErrno(error, 'ENOENT')) throw new BackendIoError(`put ${key}: ${(error as Error).message}`, { cause: error, retryable: true });
      throw wrapFsError(error, `put ${key}`);
    }
  }

  async get(key: string): Promise<Readable> {
    const full = this.pathOf(key);
    try {
      const handle = await open(full, 'r');
      return handle.createReadStream({ highWaterMark: HASH_SLICE_BYTES });
    } catch (error) {
      throw wrapFsError(error, `get ${key}`);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const full = this.pathOf(key);
    try {
      const info = await stat(full);
      return info.isFile() ? { key, sizeBytes: info.size, modifiedAt: info.mtime } : undefined;
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return undefined;
      throw wrapFsError(error, `head ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const entry of this.#walk()) {
      if (entry.temp) continue;
      if (!entry.key.startsWith(prefix)) continue;
      yield { key: entry.key, sizeBytes: entry.sizeBytes, modifiedAt: entry.modifiedAt };
    }
  }

  async delete(key: string): Promise<void> {
    const full = this.pathOf(key);
    try {
      await unlink(full);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return;
      throw wrapFsError(error, `delete ${key}`);
    }
  }

  async usage(): Promise<BackendUsage> {
    let totalSizeBytes = 0;
    let fileCount = 0;
    for await (const entry of this.list('')) {
      totalSizeBytes += entry.sizeBytes;
      fileCount += 1;
    }
    return { totalSizeBytes, fileCount, location: this.basePath };
  }

  async sweepIncompleteWrites(): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for await (const entry of this.#walk()) {
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

  async close(): Promise<void> {}

  /** mkdir -p that also fsyncs the parent of every directory it creates, so new paths survive a crash. */
  async #ensureDir(dir: string): Promise<void> {
    const firstCreated = await mkdir(dir, { recursive: true });
    if (firstCreated === undefined) return;
    let current = dir;
    const created: string[] = [];
    while (current.length >= firstCreated.length) {
      created.push(current);
      current = path.dirname(current);
    }
    for (const made of created) await fsyncDir(path.dirname(made));
  }

  async *#walk(): AsyncIterable<{ key: string; name: string; fullPath: string; temp: boolean; sizeBytes: number; modifiedAt: Date }> {
    const pending = [this.basePath];
    while (pending.length) {
      const dir = pending.pop()!;
      let entries: AsyncIterable<Dirent>;
      try {
        entries = await opendir(dir);
      } catch (error) {
        if (isErrno(error, 'ENOENT') && dir === this.basePath) return;
        throw wrapFsError(error, `list ${dir}`);
      }
      for await (const entry of entries) {
        const fullPath = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          pending.push(fullPath);
        } else if (entry.isFile()) {
          let info;
          try {
            info = await stat(fullPath);
          } catch (error) {
            if (isErrno(error, 'ENOENT')) continue; // renamed or removed while walking
            throw wrapFsError(error, `list ${fullPath}`);
          }
          const key = path.relative(this.basePath, fullPath).split(path.sep).join('/');
          yield { key, name: entry.name, fullPath, temp: entry.name.startsWith(TEMP_MARK), sizeBytes: info.size, modifiedAt: info.mtime };
        }
      }
    }
  }
}

async function* slices(body: Readable | Uint8Array): AsyncIterable<Uint8Array> {
  if (body instanceof Uint8Array) {
    for (let offset = 0; offset < body.byteLength; offset += HASH_SLICE_BYTES) {
      yield body.subarray(offset, offset + HASH_SLICE_BYTES);
      if (offset + HASH_SLICE_BYTES < body.byteLength) await yieldToLoop();
    }
    return;
  }
  for await (const piece of body) yield piece as Uint8Array;
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset);
    offset += bytesWritten;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isErrno(error, 'EPERM');
  }
}

function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

const PERMANENT_ERRNOS = new Set(['EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR', 'ENAMETOOLONG', 'EINVAL']);

/** Keeps chunkvault errors as they are; wraps fs errors with the operation and key, retryable unless permanent. */
function wrapFsError(error: unknown, operation: string): Error {
  if (error instanceof Error && 'retryable' in error) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new NotFoundError(`${operation}: no such object`, { cause: error });
  return new BackendIoError(`${operation}: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
    retryable: !(code !== undefined && PERMANENT_ERRNOS.has(code)),
  });
}
