/**
 * Compaction: rewrites pack files that retention (or repairs, or retried writes) left mostly
 * dead, so their space comes back. A pack qualifies when no writer will append to it again
 * (sealed, or its writer gone) and its live records, those the catalog points at, take less
 * than `packing.compact_below` of its bytes. Its live records are copied into a pack of the
 * same directory, each replica's metadata and then its catalog record moved to the copy (only
 * where it still points at the original), and the pack is removed last.
 *
 * Crash-safe at every step: until the pack is removed every replica is readable where the
 * catalog says, old pack or new; a copy the catalog never came to point at is a dead record of
 * the new pack, dropped when that is compacted in turn. Fails closed: a listing, scan or read
 * error stops the pass. A pack with damage in it is taken only once no replica the catalog has
 * lies in the damage (scrub found and repair moved every one): the due damaged packs of a pass
 * wait for one walk of the catalog that tells (damaged-packs.ts); where a replica still lies
 * there, or the walk fails, the pack is left and the report says why.
 */
import type { Backend } from '../backends/backend.js';
import { PACK_HEADER_BYTES, PACK_SUFFIX } from '../backends/pack/pack-format.js';
import { packedKeyOf } from '../backends/pack/packed-key.js';
import type { PackScan, ScannedRecord } from '../backends/pack/pack-scan.js';
import type { ReplicaRecord } from '../domain/types.js';
import { damagedPacksHeld } from './damaged-packs.js';
import type { MaintenanceTask, TaskDeps } from './maintenance-task.js';

/** Packs one pass compacts at most; the rest wait for the next pass (`more`). */
export const PACKS_PER_PASS = 64;

export interface CompactionItem {
  backend: string;
  pack: string;
  /** The pack's bytes, and the share of them live records take. */
  sizeBytes: number;
  liveBytes: number;
  liveReplicas: number;
}

export interface CompactionResult {
  dryRun: boolean;
  compactBelow: number;
  packsCompacted: number;
  replicasMoved: number;
  /** Bytes of the packs compacted, and of the live records copied out of them. */
  bytesBefore: number;
  bytesAfter: number;
  /** Packs a writer may still append to, or due but with a replica in their damage, left as they are. */
  packsSkipped: number;
  more: boolean;
  items: CompactionItem[];
  /** Packs with damage in them that were due, left: why each (a replica still lies in the damage, or the catalog could not be walked). */
  damagedLeft: Array<{ backend: string; pack: string; reason: string }>;
}

/** What compaction uses of a maintenance task's deps. */
export type CompactionDeps = Pick<TaskDeps, 'config' | 'catalog' | 'metadata' | 'backends' | 'logger' | 'redis' | 'keyPrefix'>;

interface Candidate {
  item: CompactionItem;
  scan: PackScan;
  live: Array<{ record: ScannedRecord; replica: ReplicaRecord }>;
}

export class Compaction {
  readonly #deps: CompactionDeps;

  constructor(deps: CompactionDeps) {
    this.#deps = deps;
  }

  async run(dryRun: boolean): Promise<CompactionResult> {
    const compactBelow = this.#deps.config.chunkvault.packing.compact_below;
    const result: CompactionResult = { dryRun, compactBelow, packsCompacted: 0, replicasMoved: 0, bytesBefore: 0, bytesAfter: 0, packsSkipped: 0, more: false, items: [], damagedLeft: [] };
    // Due packs with damage in them, for the one walk of the catalog that clears them all.
    const damaged: Array<{ backend: Backend; candidate: Candidate }> = [];
    for (const backend of this.#deps.backends.all()) {
      if (!backend.packs) continue;
      for await (const object of backend.list('')) {
        if (!object.key.endsWith(PACK_SUFFIX)) continue;
        if (result.packsCompacted + damaged.length >= PACKS_PER_PASS) {
          result.more = true;
          break;
        }
        const candidate = await this.#consider(backend, object.key, object.modifiedAt, result, dryRun);
        if (!candidate || (candidate.item.sizeBytes > 0 && candidate.item.liveBytes >= compactBelow * candidate.item.sizeBytes)) continue;
        if (candidate.scan.damaged.length > 0) damaged.push({ backend, candidate });
        else await this.#take(backend, candidate, result, dryRun);
      }
    }
    const checks = damaged.map(({ candidate: { item, scan, live } }) => ({ backend: item.backend, pack: item.pack, scan, copied: new Set(live.map((l) => l.replica.path)) }));
    const held = await damagedPacksHeld(this.#deps.redis, this.#deps.keyPrefix, checks);
    for (const [i, { backend, candidate }] of damaged.entries()) {
      const reason = held.get(checks[i]!);
      if (reason === undefined) {
        await this.#take(backend, candidate, result, dryRun);
        continue;
      }
      result.packsSkipped += 1;
      result.damagedLeft.push({ backend: backend.name, pack: candidate.item.pack, reason });
      this.#deps.logger.warn({ backend: backend.name, pack: candidate.item.pack, reason }, 'compaction left a damaged pack');
    }
    this.#deps.logger.info({ packsCompacted: result.packsCompacted, replicasMoved: result.replicasMoved, bytesBefore: result.bytesBefore, bytesAfter: result.bytesAfter, packsSkipped: result.packsSkipped, damagedLeft: result.damagedLeft.length, dryRun }, 'compaction pass done');
    return result;
  }

  /** Counts `candidate` as compacted and, unless a dry run, compacts it. */
  async #take(backend: Backend, candidate: Candidate, result: CompactionResult, dryRun: boolean): Promise<void> {
    const { item } = candidate;
    result.items.push(item);
    result.packsCompacted += 1;
    result.replicasMoved += item.liveReplicas;
    result.bytesBefore += item.sizeBytes;
    result.bytesAfter += item.liveBytes;
    if (!dryRun) await this.#compact(backend, candidate);
  }

  /** The pack `key` with its live records, or undefined (counted as skipped) when it must be left alone. */
  async #consider(backend: Backend, key: string, modifiedAt: Date, result: CompactionResult, dryRun: boolean): Promise<Candidate | undefined> {
    const packs = backend.packs!;
    const scan: PackScan = await packs.scan(key);
    const staleAfterMs = this.#deps.config.chunkvault.worker.stale_temp_after_ms;
    const free = packs.isFree(key, scan, modifiedAt, staleAfterMs);
    // A pack file whose writer died before its header was written (killed between creating
    // and writing it): nothing in it was ever acknowledged, so it goes as an empty pack would.
    if (scan.notAPack && scan.sizeBytes < PACK_HEADER_BYTES && free) return { item: { backend: backend.name, pack: key, sizeBytes: scan.sizeBytes, liveBytes: 0, liveReplicas: 0 }, scan, live: [] };
    if (scan.notAPack || !free) {
      result.packsSkipped += 1;
      return undefined;
    }
    // A writer died mid-append: its tail was never acknowledged; cut it, as sealing would.
    // Not where there is damage: a replica's own last record, damaged later, looks like a torn
    // tail (pack-scan.ts), and a damaged pack is only touched once the catalog walk clears it.
    if (!dryRun && scan.tornTailAt !== undefined && scan.damaged.length === 0) await packs.cutTornTail(key);
    const live: Candidate['live'] = [];
    for (const record of scan.records) {
      if (record.deleted || record.header.kind !== 'replica') continue;
      const replica = await this.#deps.catalog.getReplica(record.header.chunkId, record.header.replicaId);
      if (replica?.status === 'stored' && replica.backend === backend.name && replica.path === packedKeyOf({ pack: key, ...record })) live.push({ record, replica });
    }
    const liveBytes = live.reduce((n, l) => n + l.record.length, 0);
    return { item: { backend: backend.name, pack: key, sizeBytes: scan.sizeBytes, liveBytes, liveReplicas: live.length }, scan, live };
  }

  async #compact(backend: Backend, candidate: Candidate): Promise<void> {
    const { catalog, metadata, config } = this.#deps;
    const packs = backend.packs!;
    // All copies appended at once, so they share the writer's commits (one fdatasync for the
    // lot, not one per record); nothing points at them yet.
    const copies = await Promise.all(candidate.live.map(async ({ record }) =>
      packs.append(candidate.item.pack, record.header, await packs.body({ pack: candidate.item.pack, offset: record.offset, length: record.length }))));
    for (const [i, { record, replica }] of candidate.live.entries()) {
      const oldKey = packedKeyOf({ pack: candidate.item.pack, ...record });
      const newKey = copies[i]!;
      const createdAtMs = Date.parse((await catalog.getChunk(replica.chunkId))?.createdAt ?? '') || Date.parse(replica.storedAt);
      // Metadata first: reindex after a crash here finds the copy, which is whole and durable.
      if (config.storage.integrity.store_metadata) await metadata.of(backend).record({ ...replica, path: newKey, createdAtMs });
      if ((await catalog.moveReplica(replica.chunkId, replica.replicaId, oldKey, newKey)) === 'skip') {
        // The replica changed meanwhile (repaired, expired): the copy is garbage, and the
        // metadata just recorded must name what the catalog holds now.
        await backend.delete(newKey);
        const now = await catalog.getReplica(replica.chunkId, replica.replicaId);
        if (config.storage.integrity.store_metadata && now?.status === 'stored' && now.backend === backend.name) await metadata.of(backend).record({ ...now, createdAtMs });
      }
    }
    await packs.remove(candidate.item.pack);
  }
}

/** Compaction as a maintenance task (maintenance-task.ts); runs by default when packing is on. */
export const COMPACTION_TASK: MaintenanceTask<'compaction', CompactionResult> = {
  name: 'compaction',
  title: 'Compaction',
  dryRun: 'plan',
  changesStoredData: true,
  runsByDefault: (config) => config.chunkvault.packing.max_chunk_bytes > 0,
  create(deps) {
    const compaction = new Compaction(deps);
    return (pass) => compaction.run(pass.dryRun);
  },
  forReport: (result, maxItems) => ({ ...result, items: result.items.slice(0, maxItems), damagedLeft: result.damagedLeft.slice(0, maxItems) }),
  brief: (result) => ({ ...result, items: result.items.length, damagedLeft: result.damagedLeft.length }),
  figures: (result) => ({
    replicas: [['moved', result.replicasMoved], ['packs_compacted', result.packsCompacted], ['packs_skipped', result.packsSkipped]],
    bytes: [['before', result.bytesBefore], ['after', result.bytesAfter]],
  }),
  summary: (result, bytes) => [
    { text: `${result.packsCompacted} packs compacted (${bytes(result.bytesBefore)} to ${bytes(result.bytesAfter)}), ${result.replicasMoved} replicas moved, ${result.packsSkipped} packs left (in use or damaged)${result.more ? '; more left for the next pass' : ''}` },
    ...(result.damagedLeft.length > 0 ? [{ text: `${result.damagedLeft.length} damaged pack(s) left until scrub has repaired what lies in the damage` }] : []),
  ],
  cli: {
    command: 'compact',
    description: 'run a compaction pass now: rewrite pack files whose live share fell under packing.compact_below',
    runs: 'inline',
    dryRunHelp: 'print the packs a real pass would compact, and change nothing',
    jsonShape: '{dryRun, compactBelow, packsCompacted, replicasMoved, bytesBefore, bytesAfter, packsSkipped, more, items: [{backend, pack, sizeBytes, liveBytes, liveReplicas}], damagedLeft: [{backend, pack, reason}]}',
    print: (result) =>
      result.items.map((i) => `${result.dryRun ? 'would compact' : 'compacted'} ${i.backend}:${i.pack} (${i.liveReplicas} live replicas, ${i.liveBytes} of ${i.sizeBytes} bytes)\n`).join('') +
      result.damagedLeft.map((d) => `left damaged ${d.backend}:${d.pack}: ${d.reason}\n`).join('') +
      `${result.dryRun ? 'dry run: ' : ''}${result.packsCompacted} pack(s), ${result.replicasMoved} replica(s) ${result.dryRun ? 'would move' : 'moved'}; ${result.packsSkipped} left (in use or damaged)${result.more ? '; more are due than one pass compacts' : ''}\n`,
  },
};
