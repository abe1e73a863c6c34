/**
 * The pack file: many small replicas appended to one file, as restic's packs and SeaweedFS's
 * volumes hold many blobs, so that a small replica does not cost a file of its own.
 *
 *   file header   "CVPK" | u16 version (1) | u16 0 | u64 created at (ms since the epoch, BE)
 *   record        "CVRC" | u32 header length H | u32 body length B | u32 CRC-32 of header and body
 *                 | H bytes of header (UTF-8 JSON: what the record is) | B bytes of body
 *
 * A deleted record keeps its place and bytes; only its magic becomes "CVRD" (one 4-byte
 * write, as Haystack flags a deleted needle in its volume file), so it is told from a live
 * one by the pack alone, and compaction later drops it. The CRC does not cover the magic.
 *
 * Records follow one another with nothing between them. Each carries what is needed to
 * rebuild the catalog from the disk alone (its header names the chunk and replica and holds
 * the replica's metadata), and a CRC-32 over header and body, so a reader that walks a pack
 * tells a record that was written whole from a torn or damaged one without the catalog. The
 * replica's own checksum (md5 or sha256 of the body) is in the header; the CRC is only for
 * finding record boundaries.
 *
 * Big-endian integers, as on the wire. A record's location is the offset of its first byte
 * and its length (PackLocation); its body starts RECORD_PREFIX_BYTES + H bytes in.
 */
import { crc32 } from 'node:zlib';

export const PACK_MAGIC = Buffer.from('CVPK', 'latin1');
export const RECORD_MAGIC = Buffer.from('CVRC', 'latin1');
export const DELETED_RECORD_MAGIC = Buffer.from('CVRD', 'latin1');
/** The three bytes both magics start with. */
export const RECORD_MAGIC_STEM = Buffer.from('CVR', 'latin1');
export const PACK_VERSION = 1;
export const PACK_HEADER_BYTES = 16;
export const RECORD_PREFIX_BYTES = 16;
/** Bound on a record header: it holds ids and metadata, never data. */
export const MAX_RECORD_HEADER_BYTES = 64 * 1024;
/** Packs end in this; nothing else a backend stores does. */
export const PACK_SUFFIX = '.pack';

/** A record of a replica's bytes, named, with the metadata reindex needs. */
export interface ReplicaRecordHeader {
  kind: 'replica';
  chunkId: string;
  replicaId: string;
  checksum: string;
  sizeBytes: number;
  metadata?: Record<string, unknown>;
}

/**
 * What a record is: a replica's bytes, or the seal its writer appends when it is done with the
 * pack (rotated, or closed at shutdown): after a seal nothing is ever appended, so the pack
 * may be compacted while its writer lives on.
 */
export type PackRecordHeader = ReplicaRecordHeader | { kind: 'seal'; sealedAtMs: number };

/** Where a record is: its pack (a storage key), the offset of its first byte, its whole length, and where its body starts and how long it is. */
export interface PackLocation {
  pack: string;
  offset: number;
  length: number;
  bodyOffset: number;
  bodyLength: number;
}

/** The 16 bytes every pack starts with. */
export function packHeader(createdAtMs: number): Buffer {
  const header = Buffer.alloc(PACK_HEADER_BYTES);
  PACK_MAGIC.copy(header, 0);
  header.writeUInt16BE(PACK_VERSION, 4);
  header.writeBigUInt64BE(BigInt(createdAtMs), 8);
  return header;
}

/** Whether `bytes` start as a pack of a version this code reads. */
export function isPackHeader(bytes: Uint8Array): boolean {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return b.byteLength >= PACK_HEADER_BYTES && b.subarray(0, 4).equals(PACK_MAGIC) && b.readUInt16BE(4) === PACK_VERSION;
}

/** A record as the pieces to write: its prefix with the CRC, its header, its body (not copied). */
export function encodeRecord(header: PackRecordHeader, body: Uint8Array): Buffer[] {
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  if (headerBytes.byteLength > MAX_RECORD_HEADER_BYTES) throw new RangeError(`pack record header of ${headerBytes.byteLength} bytes: at most ${MAX_RECORD_HEADER_BYTES}`);
  const prefix = Buffer.alloc(RECORD_PREFIX_BYTES);
  RECORD_MAGIC.copy(prefix, 0);
  prefix.writeUInt32BE(headerBytes.byteLength, 4);
  prefix.writeUInt32BE(body.byteLength, 8);
  prefix.writeUInt32BE(crc32(body, crc32(headerBytes)), 12);
  return [prefix, headerBytes, Buffer.from(body.buffer, body.byteOffset, body.byteLength)];
}

/** What a record's prefix says, or why it cannot be a record's start. */
export type RecordPrefix = { headerLength: number; bodyLength: number; crc: number; deleted: boolean } | { invalid: string };

export function decodeRecordPrefix(prefix: Uint8Array): RecordPrefix {
  const b = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  if (b.byteLength < RECORD_PREFIX_BYTES) return { invalid: 'short record prefix' };
  const magic = b.subarray(0, 4);
  const deleted = magic.equals(DELETED_RECORD_MAGIC);
  if (!deleted && !magic.equals(RECORD_MAGIC)) return { invalid: 'no record magic' };
  const headerLength = b.readUInt32BE(4);
  if (headerLength === 0 || headerLength > MAX_RECORD_HEADER_BYTES) return { invalid: `record header length ${headerLength}` };
  return { headerLength, bodyLength: b.readUInt32BE(8), crc: b.readUInt32BE(12), deleted };
}

/**
 * A whole record (prefix, header, body) at the start of `record` checked: its CRC, and a
 * header that parses as one. Returns the header, the body (a view into `record`), the
 * record's whole length and whether it is marked deleted, or why it is not a good record.
 */
export function decodeRecord(record: Uint8Array): { header: PackRecordHeader; body: Buffer; length: number; deleted: boolean } | { invalid: string } {
  const prefix = decodeRecordPrefix(record);
  if ('invalid' in prefix) return prefix;
  const b = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  const end = RECORD_PREFIX_BYTES + prefix.headerLength + prefix.bodyLength;
  if (b.byteLength < end) return { invalid: `record of ${end} bytes, ${b.byteLength} there` };
  const headerBytes = b.subarray(RECORD_PREFIX_BYTES, RECORD_PREFIX_BYTES + prefix.headerLength);
  const body = b.subarray(RECORD_PREFIX_BYTES + prefix.headerLength, end);
  if (crc32(body, crc32(headerBytes)) !== prefix.crc) return { invalid: 'record CRC mismatch' };
  let header: PackRecordHeader;
  try {
    header = JSON.parse(headerBytes.toString('utf8')) as PackRecordHeader;
  } catch {
    return { invalid: 'record header is not JSON' };
  }
  if (header?.kind !== 'replica' && header?.kind !== 'seal') return { invalid: 'record header of no known kind' };
  return { header, body, length: end, deleted: prefix.deleted };
}
