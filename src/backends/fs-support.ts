/** Small helpers shared by the code that works on local files. */
import { access, link, mkdir, stat, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BackendIoError, NotFoundError, SizeMismatchError } from '../errors.js';

/** Whether `error` is a Node.js system error with this errno code (ENOENT, EEXIST...). */
export function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Whether a process with this pid runs on this host (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isErrno(error, 'EPERM');
  }
}

/** Names of files being written start with this; sweeps remove those of dead writers. */
export const TEMP_MARK = '.cvtmp~';
const HOST = hostname();
const PROCESS_TAG = Date.now().toString(36);
let tempCounter = 0;

/**
 * A temp file name for `finalName`, unique on this host: it carries the writer's pid and
 * host (so a sweep can tell whether its writer lives), the process's start time (a reused
 * pid never repeats a name) and a counter.
 */
export function tempNameFor(finalName: string): string {
  tempCounter += 1;
  // The final name is only there for people looking at the directory: cut to what a file
  // name can hold (255 bytes; the prefix alone is unique).
  return `${TEMP_MARK}${process.pid}~${HOST}~${PROCESS_TAG}-${tempCounter.toString(36)}~${finalName}`.slice(0, 255);
}

/** A small body as one buffer; refuses (without reading on) one longer than announced. */
export async function smallBodyOf(key: string, body: Readable | Uint8Array, sizeBytes: number): Promise<Uint8Array> {
  if (body instanceof Uint8Array) return body;
  const pieces: Buffer[] = [];
  let received = 0;
  for await (const piece of body) {
    received += (piece as Buffer).byteLength;
    if (received > sizeBytes) throw new SizeMismatchError(`storage key ${key}`, sizeBytes, received);
    pieces.push(piece as Buffer);
  }
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, received);
}

/**
 * mkdir -p; returns the first directory it created (undefined when all existed). Node's
 * recursive mkdir reports ENOENT for other failures (EROFS on a read-only filesystem, for
 * one), which would read as "retry later" and name the wrong cause, so on ENOENT the missing
 * directories are created one by one, which either works (one was removed meanwhile) or fails
 * with the real error.
 */
export async function mkdirs(dir: string): Promise<string | undefined> {
  try {
    return await mkdir(dir, { recursive: true });
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
  const missing: string[] = [];
  for (let current = dir; ; current = path.dirname(current)) {
    try {
      await stat(current);
      break;
    } catch (error) {
      if (!isErrno(error, 'ENOENT') || path.dirname(current) === current) throw error;
      missing.push(current);
    }
  }
  let first: string | undefined;
  for (const made of missing.reverse()) {
    try {
      await mkdir(made);
      first ??= made;
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
    }
  }
  return first;
}

/** Writes all of `bytes` at the handle's position. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset);
    offset += bytesWritten;
  }
}

const PERMANENT_ERRNOS = new Set(['EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR', 'ENAMETOOLONG', 'EINVAL']);

/** Keeps chunkvault errors as they are; wraps fs errors with the operation and key, retryable unless permanent. */
export function wrapFsError(error: unknown, operation: string): Error {
  if (error instanceof Error && 'retryable' in error) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new NotFoundError(`${operation}: no such object`, { cause: error });
  return new BackendIoError(`${operation}: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
    retryable: !(code !== undefined && PERMANENT_ERRNOS.has(code)),
  });
}

/** Hard-links `source` as `target`; false (nothing done) when they are on different filesystems. */
export async function linkOnSameFilesystem(source: string, target: string): Promise<boolean> {
  try {
    await link(source, target);
    return true;
  } catch (error) {
    if (isErrno(error, 'EXDEV')) return false;
    throw error;
  }
}

export async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}
