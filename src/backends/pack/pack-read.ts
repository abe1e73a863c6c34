/**
 * Reading and deleting one packed record in place: one pread of its range, checked before its
 * body is handed out. The record must be whole (its CRC) and live; a caller that knows which
 * replica it wants also has the header checked against it, so a location that points at the
 * wrong offset reads as damage, never as another replica's bytes. The body's own checksum
 * (the replica's md5 or sha256) is the caller's to check, as for a replica in a file of its own.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { ChecksumMismatchError, NotFoundError } from '../../errors.js';
import { isErrno } from '../fs-support.js';
import { decodeRecord, decodeRecordPrefix, DELETED_RECORD_MAGIC, RECORD_PREFIX_BYTES, type ReplicaRecordHeader } from './pack-format.js';

/** Where a record is in its pack. */
export interface RecordRange {
  offset: number;
  length: number;
}

export interface PackedReplicaRef extends RecordRange {
  chunkId: string;
  replicaId: string;
}

/**
 * The live record at `at` in the pack at `file`: its header and body. Throws NotFoundError
 * when the pack is missing, ends before the record does or the record is marked deleted, and
 * ChecksumMismatchError when the bytes there are not a whole record of that length.
 */
export async function readPackRecord(file: string, at: RecordRange): Promise<{ header: ReplicaRecordHeader; body: Buffer }> {
  const handle = await openPack(file, 'r');
  let record: Buffer;
  try {
    record = await readRange(handle, at);
  } finally {
    await handle.close();
  }
  return checkedRecord(record, at, `record in pack ${file} at ${at.offset}`);
}

/**
 * The bytes read from `at` checked as a live replica record of exactly that length; the same
 * errors as readPackRecord, `what` naming the place in them.
 */
export function checkedRecord(record: Buffer, at: RecordRange, what: string): { header: ReplicaRecordHeader; body: Buffer } {
  if (record.byteLength < at.length) throw new NotFoundError(`${what}: the pack ends ${at.length - record.byteLength} bytes before the record does`);
  const decoded = decodeRecord(record);
  if ('invalid' in decoded) throw new ChecksumMismatchError(what, 'a whole record', decoded.invalid);
  if (decoded.length !== at.length) throw new ChecksumMismatchError(what, `a record of ${at.length} bytes`, `one of ${decoded.length}`);
  if (decoded.deleted) throw new NotFoundError(`${what}: deleted`);
  if (decoded.header.kind !== 'replica') throw new NotFoundError(`${what}: a ${decoded.header.kind} record, not a replica`);
  return { header: decoded.header, body: decoded.body };
}

/** As readPackRecord, for the replica `ref` names: a record of another replica is damage. */
export async function readPackedReplica(file: string, ref: PackedReplicaRef): Promise<Buffer> {
  return bodyOfReplica(await readPackRecord(file, ref), ref, `replica ${ref.replicaId} in pack ${file} at ${ref.offset}`);
}

/** The body of a checked record when its header names the replica `ids` names; a record of another replica is damage. */
export function bodyOfReplica({ header, body }: { header: ReplicaRecordHeader; body: Buffer }, ids: { chunkId: string; replicaId: string }, what: string): Buffer {
  if (header.chunkId !== ids.chunkId || header.replicaId !== ids.replicaId) {
    throw new ChecksumMismatchError(what, `${ids.chunkId}/${ids.replicaId}`, `a record of ${header.chunkId}/${header.replicaId}`);
  }
  return body;
}

/**
 * Marks the record at `at` deleted, durably (its magic rewritten, then fdatasync). Returns
 * false, changing nothing, when there is no record of that length there (the pack is gone,
 * shorter, or holds something else at that offset); marking a deleted record again is a
 * no-op that returns true.
 */
export async function markRecordDeleted(file: string, at: RecordRange): Promise<boolean> {
  const handle = await openPackIfThere(file, 'r+');
  if (!handle) return false;
  try {
    const prefix = await readRange(handle, { offset: at.offset, length: RECORD_PREFIX_BYTES });
    const decoded = decodeRecordPrefix(prefix);
    if ('invalid' in decoded || RECORD_PREFIX_BYTES + decoded.headerLength + decoded.bodyLength !== at.length) return false;
    if (decoded.deleted) return true;
    await handle.write(DELETED_RECORD_MAGIC, 0, DELETED_RECORD_MAGIC.byteLength, at.offset);
    await handle.datasync();
    return true;
  } finally {
    await handle.close();
  }
}

async function openPack(file: string, flags: 'r' | 'r+'): Promise<FileHandle> {
  try {
    return await open(file, flags);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) throw new NotFoundError(`pack ${file} is missing`, { cause: error });
    throw error;
  }
}

/** The pack open, or undefined when there is no such file. */
async function openPackIfThere(file: string, flags: 'r' | 'r+'): Promise<FileHandle | undefined> {
  try {
    return await openPack(file, flags);
  } catch (error) {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  }
}

/** Up to `at.length` bytes from `at.offset`; fewer only where the file ends. */
async function readRange(handle: FileHandle, at: RecordRange): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(at.length);
  let read = 0;
  while (read < at.length) {
    const { bytesRead } = await handle.read(bytes, read, at.length - read, at.offset + read);
    if (bytesRead === 0) break;
    read += bytesRead;
  }
  return bytes.subarray(0, read);
}

/** What the prefix at `at` says without reading the rest: the body's length and whether the record is deleted; undefined when no record of that length starts there or the pack is missing. */
export async function recordInfo(file: string, at: RecordRange): Promise<{ bodyLength: number; deleted: boolean; modifiedAt: Date } | undefined> {
  const handle = await openPackIfThere(file, 'r');
  if (!handle) return undefined;
  try {
    const decoded = decodeRecordPrefix(await readRange(handle, { offset: at.offset, length: RECORD_PREFIX_BYTES }));
    if ('invalid' in decoded || RECORD_PREFIX_BYTES + decoded.headerLength + decoded.bodyLength !== at.length) return undefined;
    const { size, mtime } = await handle.stat();
    if (size < at.offset + at.length) return undefined;
    return { bodyLength: decoded.bodyLength, deleted: decoded.deleted, modifiedAt: mtime };
  } finally {
    await handle.close();
  }
}
