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
 * error stops the pass; a pack with damage in it is left alone (a replica the catalog points
 * into the damaged bytes cannot be copied, and must stay where scrub finds and repairs it).
 */
import type { Backend } from '../backends/backend.js';
import { PACK_HEADER_BYTES, PACK_SUFFIX } from '../backends/pack/pack-format.js';
import { packedKeyOf } from '../backends/pack/packed-key.js';
import type { PackScan, ScannedRecord } from '../backends/pack/pack-scan.js';
import type { ReplicaRecord } from '../domain/types.js';
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
  /** Packs a writer may still append to, or with damage in them, left as they are. */
  packsSkipped: number;
  more: boolean;
  items: CompactionItem[];
}

interface Candidate extends CompactionItem {
  live: Array<{ record: ScannedRecord; replica: ReplicaRecord }>;
}

export class Compaction {
  readonly #deps: TaskDeps;

  constructor(deps: TaskDeps) {
    this.#deps = deps;
  }

  async run(dryRun: boolean): Promise<CompactionResult> {
    const compactBelow = this.#deps.config.chunkvault.packing.compact_below;
    const result: CompactionResult = { dryRun, compactBelow, packsCompacted: 0, replicasMoved: 0, bytesBefore: 0, bytesAfter: 0, packsSkipped: 0, more: false, items: [] };
    for (const backend of this.#deps.backends.all()) {
      if (!backend.packs) continue;
      for await (const object of backend.list('')) {
        if (!object.key.endsWith(PACK_SUFFIX)) continue;
        if (result.packsCompacted >= PACKS_PER_PASS) {
          result.more = true;
          break;
        }
        const candidate = await this.#consider(backend, object.key, object.modifiedAt, result, dryRun);
        if (!candidate || (candidate.sizeBytes > 0 && candidate.liveBytes >= compactBelow * candidate.sizeBytes)) continue;
        const { live: _live, ...item } = candidate;
        result.items.push(item);
        result.packsCompacted += 1;
        result.replicasMoved += candidate.liveReplicas;
        result.bytesBefore += candidate.sizeBytes;
        result.bytesAfter += candidate.liveBytes;
        if (!dryRun) await this.#compact(backend, candidate);
      }
    }
    this.#deps.logger.info({ packsCompacted: result.packsCompacted, replicasMoved: result.replicasMoved, bytesBefore: result.bytesBefore, bytesAfter: result.bytesAfter, packsSkipped: result.packsSkipped, dryRun }, 'compaction pass done');
    return result;
  }

  /** The pack `key` with its live records, or undefined (counted as skipped) when it must be left alone. */
  async #consider(backend: Backend, key: string, modifiedAt: Date, result: CompactionResult, dryRun: boolean): Promise<Candidate | undefined> {
    const packs = backend.packs!;
    const scan: PackScan = await packs.scan(key);
    const staleAfterMs = this.#deps.config.chunkvault.worker.stale_temp_after_ms;
    const free = packs.isFree(key, scan, modifiedAt, staleAfterMs);
    // A pack file whose writer died before its header was written (killed between creating
    // and writing it): nothing in it was ever acknowledged, so it goes as an empty pack would.
    if (scan.notAPack && scan.sizeBytes < PACK_HEADER_BYTES && free) return { backend: backend.name, pack: key, sizeBytes: scan.sizeBytes, liveBytes: 0, liveReplicas: 0, live: [] };
    if (scan.notAPack || scan.damaged.length > 0 || !free) {
      result.packsSkipped += 1;
      return undefined;
    }
    // A writer died mid-append: its tail was never acknowledged; cut it, as sealing would.
    if (!dryRun && scan.tornTailAt !== undefined) await packs.cutTornTail(key);
    const live: Candidate['live'] = [];
    for (const record of scan.records) {
      if (record.deleted || record.header.kind !== 'replica') continue;
      const replica = await this.#deps.catalog.getReplica(record.header.chunkId, record.header.replicaId);
      if (replica?.status === 'stored' && replica.backend === backend.name && replica.path === packedKeyOf({ pack: key, ...record })) live.push({ record, replica });
    }
    const liveBytes = live.reduce((n, l) => n + l.record.length, 0);
    return { backend: backend.name, pack: key, sizeBytes: scan.sizeBytes, liveBytes, liveReplicas: live.length, live };
  }

  async #compact(backend: Backend, candidate: Candidate): Promise<void> {
    const { catalog, metadata, config } = this.#deps;
    const packs = backend.packs!;
    // All copies appended at once, so they share the writer's commits (one fdatasync for the
    // lot, not one per record); nothing points at them yet.
    const copies = await Promise.all(candidate.live.map(async ({ record }) =>
      packs.append(candidate.pack, record.header, await packs.body({ pack: candidate.pack, offset: record.offset, length: record.length }))));
    for (const [i, { record, replica }] of candidate.live.entries()) {
      const oldKey = packedKeyOf({ pack: candidate.pack, ...record });
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
    await packs.remove(candidate.pack);
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
  forReport: (result, maxItems) => ({ ...result, items: result.items.slice(0, maxItems) }),
  brief: (result) => ({ ...result, items: result.items.length }),
  figures: (result) => ({
    replicas: [['moved', result.replicasMoved], ['packs_compacted', result.packsCompacted], ['packs_skipped', result.packsSkipped]],
    bytes: [['before', result.bytesBefore], ['after', result.bytesAfter]],
  }),
  summary: (result, bytes) => [
    { text: `${result.packsCompacted} packs compacted (${bytes(result.bytesBefore)} to ${bytes(result.bytesAfter)}), ${result.replicasMoved} replicas moved, ${result.packsSkipped} packs left (in use or damaged)${result.more ? '; more left for the next pass' : ''}` },
  ],
  cli: {
    command: 'compact',
    description: 'run a compaction pass now: rewrite pack files whose live share fell under packing.compact_below',
    runs: 'inline',
    dryRunHelp: 'print the packs a real pass would compact, and change nothing',
    jsonShape: '{dryRun, compactBelow, packsCompacted, replicasMoved, bytesBefore, bytesAfter, packsSkipped, more, items: [{backend, pack, sizeBytes, liveBytes, liveReplicas}]}',
    print: (result) =>
      result.items.map((i) => `${result.dryRun ? 'would compact' : 'compacted'} ${i.backend}:${i.pack} (${i.liveReplicas} live replicas, ${i.liveBytes} of ${i.sizeBytes} bytes)\n`).join('') +
      `${result.dryRun ? 'dry run: ' : ''}${result.packsCompacted} pack(s), ${result.replicasMoved} replica(s) ${result.dryRun ? 'would move' : 'moved'}; ${result.packsSkipped} left (in use or damaged)${result.more ? '; more are due than one pass compacts' : ''}\n`,
  },
};
