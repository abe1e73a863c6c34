/**
 * Reindex's view of a backend's pack files: every live replica record in them (not marked
 * deleted, its CRC good), read from the disk alone, becomes the stored replica its header
 * describes (packed-metadata.ts). Damaged stretches and packs that cannot be read are problems
 * naming the pack and offset (but for a damaged record marked deleted: the bad copy a repair
 * replaced); a torn tail was never acknowledged and is passed over.
 *
 * A replica may have several live records: a compaction that died between copying its pack and
 * removing it, a repair or compression that died before marking the old record deleted, a write
 * retried after its append was durable. Any of them holds the replica's bytes; one is picked the
 * same way every time: the newest (by its pack's creation time, which the pack's name carries,
 * then its offset) of those that check out (with `verify`, re-hashed against the checksum;
 * without, the CRC the scan checked).
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import type { PackFiles } from '../backends/backend.js';
import { PACK_HEADER_BYTES, type ReplicaRecordHeader } from '../backends/pack/pack-format.js';
import type { PackScan, ScannedRecord } from '../backends/pack/pack-scan.js';
import { packNameParts } from '../backends/pack/pack-writer.js';
import { packedKeyOf } from '../backends/pack/packed-key.js';
import type { StoredReplicaInput } from '../catalog/catalog.js';
import { replicaOfPackedRecord } from '../catalog/packed-metadata.js';
import { replicaKey } from '../catalog/journal-entries.js';
import type { Sidecar } from '../catalog/sidecar.js';
import { describeError } from '../errors.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { decoded } from '../integrity/codecs.js';

export interface PackedReplicas {
  /** Every replica with a live record in some pack, by its key (replicaKey, as the journal's lines go by), whether or not one could be restored. */
  found: Set<string>;
  /** One stored replica per replica found whose record checks out. */
  replicas: Array<Omit<StoredReplicaInput, 'attempts'>>;
}

interface Candidate {
  pack: string;
  createdAtMs: number;
  record: ScannedRecord;
  header: ReplicaRecordHeader;
}

/**
 * The packed replicas in the packs `packKeys` of the backend `backend` (its `packs`): problems
 * go to `problems`, each naming `backend:<pack>` and the offset. `journal` holds the replicas'
 * journal lines, which complete records written before headers held all the metadata.
 */
export async function packedReplicas(
  packs: PackFiles, backend: string, packKeys: readonly string[], journal: ReadonlyMap<string, Sidecar>, verify: boolean, problems: string[],
): Promise<PackedReplicas> {
  const byReplica = new Map<string, Candidate[]>();
  for (const pack of packKeys) {
    let scan: PackScan;
    try {
      scan = await packs.scan(pack);
    } catch (error) {
      problems.push(`${backend}:${pack}: unreadable pack (${describeError(error)}); the replicas in it are not indexed`);
      continue;
    }
    if (scan.notAPack) {
      // Shorter than its header: its writer died creating it, before anything was appended.
      if (scan.sizeBytes >= PACK_HEADER_BYTES) problems.push(`${backend}:${pack}: not a pack (${scan.sizeBytes} bytes); nothing in it is indexed`);
      continue;
    }
    for (const damage of scan.damaged) {
      if (damage.deleted) continue; // a record marked deleted, damaged before or after: nothing to index there
      problems.push(`${backend}:${pack} at ${damage.offset}: ${damage.length} damaged bytes (${damage.problem}); a replica recorded there is not indexed`);
    }
    const createdAtMs = packNameParts(path.posix.basename(pack))?.createdAtMs ?? 0;
    for (const record of scan.records) {
      const { header } = record;
      if (record.deleted || header.kind !== 'replica') continue;
      const key = replicaKey(header);
      byReplica.set(key, [...(byReplica.get(key) ?? []), { pack, createdAtMs, record, header }]);
    }
  }
  const replicas: PackedReplicas['replicas'] = [];
  for (const [key, candidates] of byReplica) {
    const chosen = await pick(packs, backend, candidates, journal.get(key), verify, problems);
    if (chosen) replicas.push(chosen);
  }
  return { found: new Set(byReplica.keys()), replicas };
}

/** The replica from the newest of `candidates` that checks out; undefined (its problems reported) when none does. */
async function pick(
  packs: PackFiles, backend: string, candidates: Candidate[], journal: Sidecar | undefined, verify: boolean, problems: string[],
): Promise<Omit<StoredReplicaInput, 'attempts'> | undefined> {
  candidates.sort((a, b) => b.createdAtMs - a.createdAtMs || (a.pack < b.pack ? 1 : a.pack > b.pack ? -1 : 0) || b.record.offset - a.record.offset);
  const passedOver: string[] = [];
  for (const { pack, record, header } of candidates) {
    const where = packedKeyOf({ pack, ...record });
    const made = replicaOfPackedRecord(header, { backend, path: where, bodyLength: record.bodyLength }, journal);
    if ('problem' in made) {
      passedOver.push(`${backend}:${where}: ${made.problem}; not indexed`);
      continue;
    }
    const mismatch = verify ? await mismatchOf(packs, pack, record, made.replica) : undefined;
    if (mismatch) {
      // Bytes that pass their CRC but not their checksum were wrong when written: worth knowing even when an older copy is good.
      problems.push(`${backend}:${where}: ${mismatch}; not indexed`);
      continue;
    }
    return made.replica;
  }
  problems.push(...passedOver);
  return undefined;
}

/** Why the record's body does not decode to the replica's checksum and size, or undefined when it does. */
async function mismatchOf(packs: PackFiles, pack: string, record: ScannedRecord, replica: Omit<StoredReplicaInput, 'attempts'>): Promise<string | undefined> {
  try {
    const body = await packs.body({ pack, offset: record.offset, length: record.length });
    const actual = await checksumOfStream(decoded(Readable.from([body]), replica.codec ?? ''), replica.algorithm);
    if (actual.checksum === replica.checksum && actual.sizeBytes === replica.sizeBytes) return undefined;
    return `checksum ${actual.checksum} (${actual.sizeBytes} bytes), its header says ${replica.checksum} (${replica.sizeBytes} bytes)`;
  } catch (error) {
    return `unreadable (${describeError(error)})`;
  }
}
