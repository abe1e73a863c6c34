/**
 * Whether compaction may take a pack with damage in it (pack-scan's `damaged`). Such a pack is
 * safe to rewrite once no replica the catalog has as stored, or as corrupt and waiting for its
 * repair, points anywhere in it but at a whole record compaction copies: scrub has found every
 * replica that lay in the damage and repair has moved it to a new record. A replica still in
 * the damage must stay where scrub finds it (and its bytes stay as evidence until repaired).
 *
 * The catalog has no index from packs to replicas, so this walks every replica record once
 * (replica-scan.ts) for all the damaged packs of a pass together. Fails closed: if the walk
 * fails, every pack is held.
 */
import type { PackScan } from '../backends/pack/pack-scan.js';
import { parsePackedKey } from '../backends/pack/packed-key.js';
import { CatalogKeys } from '../catalog/catalog-keys.js';
import { replicaLocations, type ReplicaLocation } from '../catalog/replica-scan.js';
import { describeError } from '../errors.js';
import type { RedisClient } from '../redis/redis-endpoint.js';

export interface DamagedPack {
  backend: string;
  pack: string;
  scan: PackScan;
  /** Packed keys of the records compaction would copy (those the catalog points at). */
  copied: ReadonlySet<string>;
}

/** Statuses of a replica whose path still matters: read from there, or to be repaired from there. */
const HOLDING_STATUSES: ReadonlySet<string> = new Set(['stored', 'corrupt']);

/**
 * The packs of `packs` that must be left, each with why; those not in the map may be
 * compacted. `keyPrefix` is the catalog's (CatalogKeys).
 */
export async function damagedPacksHeld(redis: RedisClient, keyPrefix: string, packs: readonly DamagedPack[]): Promise<Map<DamagedPack, string>> {
  const held = new Map<DamagedPack, string>();
  if (packs.length === 0) return held;
  const byPack = new Map(packs.map((p) => [`${p.backend}\0${p.pack}`, p]));
  const strays = new Map<DamagedPack, ReplicaLocation[]>();
  try {
    for await (const batch of replicaLocations(redis, new CatalogKeys(keyPrefix))) {
      for (const location of batch) {
        if (!HOLDING_STATUSES.has(location.status)) continue;
        const at = parsePackedKey(location.path);
        const pack = at && byPack.get(`${location.backend}\0${at.pack}`);
        if (pack && !pack.copied.has(location.path)) strays.set(pack, [...(strays.get(pack) ?? []), location]);
      }
    }
  } catch (error) {
    const reason = `the catalog could not be walked to tell that no replica lies in its damage: ${describeError(error)}`;
    return new Map(packs.map((p) => [p, reason]));
  }
  for (const [pack, locations] of strays) {
    const more = locations.length > 1 ? ` (and ${locations.length - 1} more replica(s))` : '';
    held.set(pack, `${whereItLies(pack.scan, locations[0]!)}${more}`);
  }
  return held;
}

/** Says where in the pack `location` points that compaction could not copy it from. */
function whereItLies(scan: PackScan, location: ReplicaLocation): string {
  const replica = `replica ${location.replicaId} of ${location.chunkId} (${location.status})`;
  const at = parsePackedKey(location.path)!;
  const damage = scan.damaged.find((d) => at.offset < d.offset + d.length && d.offset < at.offset + at.length);
  if (damage) return `${replica} lies in ${damage.length} damaged bytes at ${damage.offset} (${damage.problem})`;
  if (scan.tornTailAt !== undefined && at.offset + at.length > scan.tornTailAt) return `${replica} lies in the torn tail from ${scan.tornTailAt}`;
  return `${replica} points at ${location.path}, no whole record of the pack compaction copies`;
}
