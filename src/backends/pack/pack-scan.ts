/**
 * Walking a pack from its bytes alone, without the catalog: which records are whole, where a
 * damaged stretch lies between good records, and where a torn tail starts. Reindex rebuilds
 * the catalog from this; sealing a pack cuts its torn tail off.
 *
 * A bad record is told apart from a torn tail by what follows it: if a good record starts
 * somewhere after it, the bytes between are damage inside the pack (flipped bits, a bad
 * sector) and are reported, never cut off; if none does, everything from it on is the tail
 * that a crash or a failed write left, which no acknowledged replica can lie in, unless its
 * own last record was damaged later: the two look alike on disk. Such a replica is then
 * found missing by scrub and repaired from another replica.
 */
import { open, readFile } from 'node:fs/promises';
import { decodeRecord, decodeRecordPrefix, isPackHeader, PACK_HEADER_BYTES, RECORD_MAGIC_STEM, RECORD_PREFIX_BYTES, type PackRecordHeader } from './pack-format.js';

export interface ScannedRecord {
  /** Marked deleted (its replica no longer counts; compaction drops it). */
  deleted: boolean;
  offset: number;
  length: number;
  bodyOffset: number;
  bodyLength: number;
  header: PackRecordHeader;
}

export interface PackScan {
  /** The file's size when read. */
  sizeBytes: number;
  records: ScannedRecord[];
  /**
   * Stretches between good records that hold no good record. `deleted`: the stretch is exactly
   * one record marked deleted (its prefix intact, the rest damaged): no replica lies there now
   * (a damaged record a repair replaced, then marked).
   */
  damaged: Array<{ offset: number; length: number; problem: string; deleted?: true }>;
  /** Where the torn tail starts (the end of the last good record), if the file has one. */
  tornTailAt?: number;
  /** Set when the file does not start as a pack: nothing in it was read. */
  notAPack?: true;
  /** Its writer sealed it: its last record is a seal, with nothing after it. */
  sealed: boolean;
}

/** Reads the pack at `file` whole (packs are bounded by the writer's maxPackBytes) and walks it. */
export async function scanPack(file: string): Promise<PackScan> {
  const bytes = await readFile(file);
  return scanPackBytes(bytes);
}

export function scanPackBytes(bytes: Buffer): PackScan {
  if (!isPackHeader(bytes)) return { sizeBytes: bytes.byteLength, records: [], damaged: [], notAPack: true, sealed: false };
  const scan: PackScan = { sizeBytes: bytes.byteLength, records: [], damaged: [], sealed: false };
  let offset = PACK_HEADER_BYTES;
  while (offset < bytes.byteLength) {
    const decoded = decodeRecord(bytes.subarray(offset));
    if ('header' in decoded) {
      const { length, body, header, deleted } = decoded;
      scan.records.push({ deleted, offset, length, bodyOffset: offset + length - body.byteLength, bodyLength: body.byteLength, header });
      offset += length;
      continue;
    }
    const next = nextGoodRecord(bytes, offset + 1);
    if (next === undefined) {
      scan.tornTailAt = offset;
      break;
    }
    const prefix = decodeRecordPrefix(bytes.subarray(offset));
    const oneDeletedRecord = !('invalid' in prefix) && prefix.deleted && RECORD_PREFIX_BYTES + prefix.headerLength + prefix.bodyLength === next - offset;
    scan.damaged.push({ offset, length: next - offset, problem: decoded.invalid, ...(oneDeletedRecord ? { deleted: true as const } : {}) });
    offset = next;
  }
  scan.sealed = scan.tornTailAt === undefined && scan.records.at(-1)?.header.kind === 'seal';
  return scan;
}

/** The offset of the first good record at or after `from`, if any. */
function nextGoodRecord(bytes: Buffer, from: number): number | undefined {
  for (let at = bytes.indexOf(RECORD_MAGIC_STEM, from); at !== -1; at = bytes.indexOf(RECORD_MAGIC_STEM, at + 1)) {
    if ('header' in decodeRecord(bytes.subarray(at))) return at;
  }
  return undefined;
}

/**
 * Cuts a pack's torn tail off, durably, so it can be kept as it is. For packs no writer has
 * open: a writer's own pack is never sealed under it (packs are never reopened for appending,
 * so a pack whose writer died is free). Returns the scan it acted on.
 */
export async function sealPack(file: string): Promise<PackScan> {
  const scan = await scanPack(file);
  if (scan.tornTailAt === undefined || scan.notAPack) return scan;
  const handle = await open(file, 'r+');
  try {
    await handle.truncate(scan.tornTailAt);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return scan;
}
