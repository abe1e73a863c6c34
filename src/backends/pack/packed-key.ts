/**
 * The storage key of a packed replica: its pack's key, then '#', the record's offset, '=' and
 * its length, e.g. `2026/12/06/pack-mf3k2a-1c9e0f2a7b31.pack#16=4180`. The catalog records it
 * as any replica's path, so reads, scrub, checkpoint verify and repair reach a packed replica
 * through the backend as they reach a file. '#' and '=' are allowed in key segments but never
 * appear in a file the local backend writes, so a key is packed exactly when it parses here.
 */
import { PACK_SUFFIX, type PackLocation } from './pack-format.js';

const PACKED_KEY = /^(.*\.pack)#(\d{1,15})=(\d{1,15})$/;

export interface PackedKey {
  /** The pack's own key. */
  pack: string;
  offset: number;
  length: number;
}

export function packedKeyOf(location: Pick<PackLocation, 'pack' | 'offset' | 'length'>): string {
  return `${location.pack}#${location.offset}=${location.length}`;
}

/** The parts of a packed key, or undefined for any other key. */
export function parsePackedKey(key: string): PackedKey | undefined {
  const match = PACKED_KEY.exec(key);
  if (!match || !match[1]!.endsWith(PACK_SUFFIX)) return undefined;
  return { pack: match[1]!, offset: Number(match[2]), length: Number(match[3]) };
}
