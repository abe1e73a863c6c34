/**
 * Reading one packed record: one pread of its range, checked before its body is handed out.
 * The record must be whole (its CRC), and must be the replica the caller asked for (its
 * header names it): a catalog entry that points at the wrong offset reads as damage, never
 * as another replica's bytes. The body's own checksum (the replica's md5 or sha256) is the
 * caller's to check, as for a replica in a file of its own.
 */
import { open } from 'node:fs/promises';
import { ChecksumMismatchError, NotFoundError } from '../../errors.js';
import { isErrno } from '../fs-support.js';
import { decodeRecord } from './pack-format.js';

export interface PackedReplicaRef {
  chunkId: string;
  replicaId: string;
  offset: number;
  length: number;
}

/**
 * The body of the replica record at `ref` in the pack at `file`. Throws NotFoundError when
 * the pack is missing or ends before the record does, and ChecksumMismatchError when the
 * record is damaged or holds another replica.
 */
export async function readPackedReplica(file: string, ref: PackedReplicaRef): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) throw new NotFoundError(`pack ${file} is missing`, { cause: error });
    throw error;
  }
  const record = Buffer.allocUnsafe(ref.length);
  let read = 0;
  try {
    while (read < ref.length) {
      const { bytesRead } = await handle.read(record, read, ref.length - read, ref.offset + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
  } finally {
    await handle.close();
  }
  const what = `replica ${ref.replicaId} in pack ${file} at ${ref.offset}`;
  if (read < ref.length) throw new NotFoundError(`${what}: the pack ends ${ref.length - read} bytes before the record does`);
  const decoded = decodeRecord(record);
  if ('invalid' in decoded) throw new ChecksumMismatchError(what, 'a whole record', decoded.invalid);
  const { header } = decoded;
  if (header.kind !== 'replica' || header.chunkId !== ref.chunkId || header.replicaId !== ref.replicaId) {
    throw new ChecksumMismatchError(what, `${ref.chunkId}/${ref.replicaId}`, `a ${header.kind} record of ${header.chunkId}/${header.replicaId}`);
  }
  return decoded.body;
}
