/**
 * The invariants every fault scenario checks once its faults are over, the same for all:
 *
 *  a) acknowledged:  every chunk a producer was told was stored (a replica of it came back
 *                    `stored` from handle.results) reads back through vault.getChunk with the
 *                    exact bytes it was given (or retention deleted it on purpose);
 *  b) torn:          nothing half-written under a final key: every data object has the size and
 *                    checksum its sidecar and catalog record say, and no temp file is left once
 *                    the leftovers of dead writers were swept (as every starting worker does);
 *  c) checkpoints:   every stored chunk is in exactly one checkpoint manifest, and the manifests
 *                    on the backend are exactly the checkpoints the index knows;
 *  d) catalog:       the catalog matches the backends: every stored record's object is there and
 *                    verifies, every data object and sidecar belongs to a stored record;
 *  e) jobs:          no replica job is lost: every replica handed to the producer ends `stored`
 *                    or `failed` with a reason (or `expired`, deleted by retention).
 *  f) counters:      the catalog's counters (replicas and bytes stored, per cloud, node and
 *                    backend; failed and corrupt replicas; chunks by status) equal a recount of
 *                    its records: every script moved them exactly once.
 *
 * `checkInvariants` reports each as a list of violations (empty = holds) with counts;
 * `expectInvariants` fails with a readable message naming the seed to reproduce with.
 */
import type { Chunkvault } from '../../../src/app.js';
import type { ChunkRecord, ReplicaRecord } from '../../../src/domain/types.js';
import { ChunkCorruptError, NotFoundError, describeError } from '../../../src/errors.js';
import { LocalBackend } from '../../../src/backends/local.backend.js';
import { CHECKPOINT_KEY_PREFIX, parseManifest } from '../../../src/checkpoints/manifest.js';
import { METADATA_SUFFIX, RESERVED_KEY_PREFIX, isDataKey } from '../../../src/storage/storage-layout.js';
import type { Acknowledgements, Workload } from './workload.js';
import { PACK_HEADER_BYTES, PACK_SUFFIX } from '../../../src/backends/pack/pack-format.js';
import { packedKeyOf, parsePackedKey } from '../../../src/backends/pack/packed-key.js';
import { compareMetadata, filesUnder, forEachLimited, idsOfDataKey, ownerOf, readAll, tempFilesUnder, verifyObject } from './object-checks.js';
import { JOURNAL_DIR } from '../../../src/catalog/metadata-journal.js';
import type { Sidecar } from '../../../src/catalog/sidecar.js';
import { replicaOfPackedRecord } from '../../../src/catalog/packed-metadata.js';
import { counterDifferences, presentCounters, recountCatalog } from './counters.js';

/** Reads and hashes running at once while checking. */
const CONCURRENCY = 8;
/** Violations kept per invariant (the count is always exact). */
const KEEP = 200;

export const INVARIANTS = {
  acknowledged: 'a) every acknowledged chunk is readable and byte-identical',
  torn: 'b) no torn or temp files under final keys',
  checkpoints: 'c) every stored chunk is in exactly one checkpoint',
  catalog: 'd) the catalog matches the backend',
  jobs: 'e) no replica job is lost (each ends stored or failed with a reason)',
  counters: "f) the catalog's counters equal a recount of its records",
} as const;
export type InvariantName = keyof typeof INVARIANTS;

export interface RunOutcome {
  /** What the producer handed over and what it was told (see Acknowledgements). */
  acks: Acknowledgements;
  /** Faults injected during the run (kills, restarts, failed requests...), for the figures. */
  faultsInjected: number;
  /**
   * Replicas (`chunkId:replicaId`) retention reported deleting. When given, every replica the
   * catalog has as expired must be among them; without it, `expired` is trusted as retention's mark.
   */
  retentionDeleted?: ReadonlySet<string>;
  /** The backends hold other data too (a shared bucket): objects of chunks outside the workloads are ignored. */
  sharedBackend?: boolean;
}

export interface CheckOptions {
  /** Seal everything stored since the last checkpoint first (sealNow); default true. */
  seal?: boolean;
  /** Sweep leftovers of dead writers first, as a starting worker does; default true. */
  sweep?: boolean;
  /** Staged chunk bytes must all be freed (every chunk's replicas ended); default true. */
  stagingEmpty?: boolean;
  /** Replicas the scenario leaves `corrupt` on purpose (not repaired yet); default: none allowed. */
  allowCorrupt?: boolean;
}

export interface InvariantCounts {
  chunks: number;
  /** Replica records of the workload's chunks in the catalog. */
  replicas: number;
  submittedReplicas: number;
  acknowledgedChunks: number;
  acknowledgedReplicas: number;
  storedReplicas: number;
  failedReplicas: number;
  expiredReplicas: number;
  corruptReplicas: number;
  /** Acknowledged chunks retention deleted on purpose (not readable, not lost). */
  acknowledgedExpired: number;
  checkpoints: number;
  manifests: number;
  /** Data objects on all backends, each hashed. */
  dataObjects: number;
  /** Temp files of dead writers removed by the sweep before checking. */
  tempFilesSwept: number;
  /**
   * Staged files no job needed any more, freed by the staging sweep before checking: a worker
   * killed between ending a chunk and freeing its staged bytes leaves them to that sweep.
   */
  stagedOrphansSwept: number;
  stagedFilesLeft: number;
  faultsInjected: number;
  /** Acknowledged chunks not readable or not byte-identical: must be 0. */
  acknowledgedLost: number;
  /** Reads that returned bytes other than the chunk's: must be 0. */
  corruptReturned: number;
}

export interface InvariantReport {
  seeds: number[];
  counts: InvariantCounts;
  violations: Record<InvariantName, string[]>;
  /** Exact number of violations per invariant (the lists keep the first 200). */
  violationCounts: Record<InvariantName, number>;
  /** Why replicas failed, with how many each (the catalog's reasons). */
  failureReasons: Record<string, number>;
}

/** Checks every invariant over the given workloads' chunks; read-only apart from sealing, sweeping and the reads' own repairs. */
export async function checkInvariants(
  vault: Chunkvault,
  workloads: Workload | readonly Workload[],
  outcome: RunOutcome,
  options: CheckOptions = {},
): Promise<InvariantReport> {
  const all = Array.isArray(workloads) ? (workloads as readonly Workload[]) : [workloads as Workload];
  const report = emptyReport(all.map((w) => w.seed), outcome);
  const violate = (name: InvariantName, message: string): void => {
    report.violationCounts[name] += 1;
    if (report.violations[name].length < KEEP) report.violations[name].push(message);
  };
  const findWorkload = (chunkId: string): Workload | undefined => all.find((w) => w.has(chunkId));

  if (options.sweep ?? true) {
    for (const backend of vault.backends.all()) report.counts.tempFilesSwept += await backend.sweepIncompleteWrites();
    report.counts.tempFilesSwept += await vault.staging.sweepIncompleteWrites();
    // As a later worker's sweep would (whatever their age: no producer is staging now).
    report.counts.stagedOrphansSwept = await vault.sweepStagedOrphans(0);
  }
  if (options.seal ?? true) await vault.checkpoints.sealNow();

  // The catalog's view of every chunk of the workloads.
  const chunkIds = all.flatMap((w) => w.chunks.map((c) => c.chunkId));
  const chunks = new Map<string, { chunk: ChunkRecord | undefined; replicas: ReplicaRecord[] }>();
  await forEachLimited(chunkIds, CONCURRENCY, async (chunkId) => {
    const [chunk, replicas] = await Promise.all([vault.catalog.getChunk(chunkId), vault.catalog.listReplicas(chunkId)]);
    chunks.set(chunkId, { chunk, replicas });
  });
  const byLocation = new Map<string, ReplicaRecord>();
  for (const [chunkId, { chunk, replicas }] of chunks) {
    if (chunk) report.counts.chunks += 1;
    for (const r of replicas) {
      report.counts.replicas += 1;
      if (r.status === 'stored') report.counts.storedReplicas += 1;
      if (r.status === 'failed') {
        report.counts.failedReplicas += 1;
        const reason = r.error.replace(/[0-9a-f]{16,}/g, '<hex>').replace(/\d+/g, 'N').slice(0, 160);
        report.failureReasons[reason] = (report.failureReasons[reason] ?? 0) + 1;
      }
      if (r.status === 'expired') {
        report.counts.expiredReplicas += 1;
        if (outcome.retentionDeleted && !outcome.retentionDeleted.has(`${chunkId}:${r.replicaId}`)) {
          violate('catalog', `replica ${r.replicaId} of ${chunkId} is expired, but retention never reported deleting it`);
        }
      }
      if (r.status === 'corrupt') {
        report.counts.corruptReplicas += 1;
        if (!options.allowCorrupt) violate('catalog', `replica ${r.replicaId} of ${chunkId} is still corrupt (${r.error}): not repaired`);
      }
      if ((r.status === 'stored' || r.status === 'corrupt') && r.path) byLocation.set(`${r.backend}\0${r.path}`, r);
    }
  }

  // e) every replica handed over has ended, and a failure says why.
  for (const ref of outcome.acks.submitted) {
    const record = chunks.get(ref.chunkId)?.replicas.find((r) => r.replicaId === ref.replicaId) ?? (await vault.catalog.getReplica(ref.chunkId, ref.replicaId));
    const name = `replica ${ref.replicaId} of ${ref.chunkId}`;
    if (!record) violate('jobs', `${name}: no catalog record (handed to the producer, then forgotten)`);
    else if (record.status === 'queued') violate('jobs', `${name}: still queued (its job was lost or never ran)`);
    else if (record.status === 'failed' && !record.error.trim()) violate('jobs', `${name}: failed without a reason`);
  }

  // a) acknowledged chunks read back exactly.
  await forEachLimited([...outcome.acks.acknowledgedChunks], CONCURRENCY, async (chunkId) => {
    const workload = findWorkload(chunkId);
    if (!workload) {
      violate('acknowledged', `chunk ${chunkId} was acknowledged but is not part of the workload`);
      return;
    }
    let bytes: Buffer;
    try {
      bytes = await vault.getChunk(chunkId);
    } catch (error) {
      const record = await vault.catalog.getChunk(chunkId).catch(() => undefined);
      if (error instanceof NotFoundError && record?.status === 'expired') {
        report.counts.acknowledgedExpired += 1;
        return;
      }
      report.counts.acknowledgedLost += 1;
      const kind = error instanceof ChunkCorruptError ? 'no good replica' : error instanceof NotFoundError ? 'not found' : 'read failed';
      violate('acknowledged', `chunk ${chunkId} was acknowledged, now ${kind}: ${describeError(error)}`);
      return;
    }
    if (!bytes.equals(workload.bytesOf(chunkId))) {
      report.counts.corruptReturned += 1;
      violate('acknowledged', `chunk ${chunkId}: getChunk returned ${bytes.byteLength} bytes that differ from the ${workload.spec(chunkId).sizeBytes} bytes stored`);
    }
  });

  // b) + d) every object on every backend, against the catalog.
  const storeMetadata = vault.config.storage.integrity.store_metadata;
  const seenData = new Set<string>();
  for (const backend of vault.backends.all()) {
    const keys: string[] = [];
    const dataKeys: string[] = [];
    const packKeys: string[] = [];
    for await (const object of backend.list('')) {
      // chunkvault's own objects: manifests (checked below), the marker, staged bytes in this bucket.
      if (object.key.startsWith(RESERVED_KEY_PREFIX)) continue;
      keys.push(object.key);
      if (isDataKey(object.key)) dataKeys.push(object.key);
      else if (backend.packs && object.key.endsWith(PACK_SUFFIX)) packKeys.push(object.key);
      else if (!object.key.endsWith(METADATA_SUFFIX) && !object.key.startsWith(`${JOURNAL_DIR}/`)) {
        violate('torn', `${backend.name}:${object.key}: an object that is neither data, metadata, a checkpoint nor the storage marker`);
      }
    }
    // Each replica's current metadata (journal or sidecars), by the data key it names.
    const metadata = new Map<string, Sidecar>();
    const packedMetadata = new Map<string, Parameters<typeof compareMetadata>[0]>();
    if (storeMetadata) {
      for await (const entry of vault.metadata.of(backend).current(keys)) {
        if ('problem' in entry) violate('torn', entry.problem);
        else metadata.set(entry.sidecar.path, entry.sidecar);
      }
    }
    // A pack's live records are data objects under their packed keys. A record no catalog
    // record points at is a write that was retried or a compaction's leftover (dropped when
    // the pack is compacted), and a torn tail is what a writer killed mid-append leaves:
    // neither was acknowledged, nothing reads them. Damage inside a pack is a violation where
    // a stored replica lies in it (verifyObject then names that replica too); damage no
    // record points into any more (repaired elsewhere) waits for compaction.
    for (const packKey of packKeys) {
      const scan = await backend.packs!.scan(packKey);
      // A kill between creating a pack and writing its header leaves a file shorter than the
      // header: nothing was appended to it, so nothing acknowledged can point into it.
      const pointedAt = [...byLocation.values()].some((r) => r.status === 'stored' && r.backend === backend.name && parsePackedKey(r.path)?.pack === packKey);
      if (scan.notAPack && (scan.sizeBytes >= PACK_HEADER_BYTES || pointedAt)) violate('torn', `${backend.name}:${packKey}: a .pack file that is not a pack (${scan.sizeBytes} bytes)`);
      for (const damage of scan.damaged) {
        for (const [location, record] of byLocation) {
          const at = location.startsWith(`${backend.name}\0`) ? parsePackedKey(record.path) : undefined;
          if (record.status === 'stored' && at?.pack === packKey && at.offset < damage.offset + damage.length && damage.offset < at.offset + at.length) {
            violate('torn', `${backend.name}:${record.path}: replica ${record.replicaId} of ${record.chunkId} lies in ${damage.length} damaged bytes at ${damage.offset} (${damage.problem})`);
          }
        }
      }
      for (const record of scan.records) {
        if (record.deleted || record.header.kind !== 'replica') continue;
        const key = packedKeyOf({ pack: packKey, ...record });
        if (!byLocation.has(`${backend.name}\0${key}`)) continue;
        dataKeys.push(key);
        // A packed replica's metadata is its record's header (a journal line only completes an older one).
        const packed = replicaOfPackedRecord(record.header, { backend: backend.name, path: key, bodyLength: record.bodyLength }, metadata.get(key));
        if ('problem' in packed) violate('torn', `${backend.name}:${key}: ${packed.problem}`);
        else packedMetadata.set(key, { ...packed.replica, codec: packed.replica.codec ?? '' });
      }
    }
    report.counts.dataObjects += dataKeys.length;
    await forEachLimited(dataKeys, CONCURRENCY, async (key) => {
      seenData.add(`${backend.name}\0${key}`);
      const record = byLocation.get(`${backend.name}\0${key}`);
      const where = `${backend.name}:${key}`;
      if (!record) {
        const chunkId = idsOfDataKey(key)?.chunkId ?? '';
        if (outcome.sharedBackend && !chunks.has(chunkId)) return; // another workload's object on a shared backend
        const owner = ownerOf(key, chunks);
        violate('catalog', `${where}: data object with no stored record (${owner ? `record is ${owner.status}${owner.path && owner.path !== key ? ` at ${owner.path}` : ''}` : 'no replica record names it'})`);
        return;
      }
      const problem = await verifyObject(backend, key, record);
      if (problem) violate('torn', `${where}: ${problem}`);
      if (!storeMetadata) return;
      const sidecar = packedMetadata.get(key) ?? metadata.get(key);
      if (!sidecar) {
        violate('torn', `${where}: no metadata names it`);
        return;
      }
      const metadataProblem = compareMetadata(sidecar, key, record);
      if (metadataProblem) violate('torn', `${where}: ${metadataProblem}`);
    });
    const dataKeySet = new Set(dataKeys);
    for (const [dataKey, sidecar] of metadata) {
      if (!dataKeySet.has(dataKey) && chunks.has(sidecar.chunkId)) violate('catalog', `${backend.name}:${dataKey}: metadata of replica ${sidecar.replicaId} names this object, which is not there`);
    }
    if (backend instanceof LocalBackend) {
      for (const temp of await tempFilesUnder(backend.basePath)) violate('torn', `${backend.name}: temp file left after the sweep: ${temp}`);
    }
  }
  for (const [location, record] of byLocation) {
    if (record.status !== 'stored') continue;
    if (!seenData.has(location)) violate('catalog', `replica ${record.replicaId} of ${record.chunkId}: recorded stored at ${record.backend}:${record.path}, but no such object`);
  }
  // Staged objects left, in a directory or a bucket; in a directory, no temp file either.
  const stagingDir = vault.staging.store.capabilities.localDirectory;
  for (const temp of stagingDir === undefined ? [] : await tempFilesUnder(stagingDir)) violate('torn', `staging: temp file left after the sweep: ${temp}`);
  report.counts.stagedFilesLeft = 0;
  for await (const staged of vault.staging.store.list('')) if (!staged.key.startsWith(RESERVED_KEY_PREFIX)) report.counts.stagedFilesLeft += 1;
  if ((options.stagingEmpty ?? true) && report.counts.stagedFilesLeft > 0) {
    violate('torn', `staging: ${report.counts.stagedFilesLeft} staged chunk file(s) left after every replica ended (staging never freed)`);
  }

  // c) exactly one checkpoint per stored chunk; manifests on the backend = checkpoints in the index.
  const index = await vault.checkpoints.list();
  report.counts.checkpoints = index.length;
  const manifestBackend = vault.backends.forCheckpoints();
  const manifestKeys: string[] = [];
  for await (const object of manifestBackend.list(CHECKPOINT_KEY_PREFIX)) manifestKeys.push(object.key);
  report.counts.manifests = manifestKeys.length;
  const indexed = new Set(index.map((e) => e.key));
  for (const key of manifestKeys) if (!indexed.has(key)) violate('checkpoints', `${key}: a manifest on the backend that no checkpoint names`);
  const inCheckpoints = new Map<string, string[]>();
  for (const entry of index) {
    if (!manifestKeys.includes(entry.key)) {
      violate('checkpoints', `checkpoint ${entry.id}: its manifest ${entry.key} is not on the backend`);
      continue;
    }
    try {
      const manifest = parseManifest(await readAll(manifestBackend, entry.key), entry.id);
      if (manifest.checksum !== entry.checksum) violate('checkpoints', `checkpoint ${entry.id}: manifest checksum ${manifest.checksum}, index says ${entry.checksum}`);
      for (const chunk of manifest.chunks) inCheckpoints.set(chunk.chunkId, [...(inCheckpoints.get(chunk.chunkId) ?? []), entry.id]);
    } catch (error) {
      violate('checkpoints', `checkpoint ${entry.id}: ${describeError(error)}`);
    }
  }
  for (const [chunkId, ids] of inCheckpoints) {
    if (ids.length > 1) violate('checkpoints', `chunk ${chunkId} is in ${ids.length} checkpoints (${ids.join(', ')})`);
    const entry = chunks.get(chunkId);
    if (!entry) {
      if (!all.some((w) => w.has(chunkId))) continue; // another workload's chunk
    } else if (!entry.chunk || !['stored', 'degraded', 'expired'].includes(entry.chunk.status)) {
      violate('checkpoints', `chunk ${chunkId} is in checkpoint ${ids[0]} but the catalog has it ${entry.chunk?.status ?? 'unknown'}`);
    }
  }
  for (const [chunkId, { chunk }] of chunks) {
    if (chunk && ['stored', 'degraded', 'expired'].includes(chunk.status) && !inCheckpoints.has(chunkId)) {
      violate('checkpoints', `chunk ${chunkId} is ${chunk.status} but in no checkpoint`);
    }
  }

  // f) the counters, recounted from every record of the deployment.
  const recorded = presentCounters(await vault.catalog.counters());
  for (const difference of counterDifferences(recorded, await recountCatalog(vault.config))) violate('counters', difference);
  return report;
}

/** Fails (throws) with every violated invariant, its first violations and how to reproduce, unless all hold. */
export function expectInvariants(report: InvariantReport, reproduce = ''): void {
  const broken = (Object.keys(INVARIANTS) as InvariantName[]).filter((name) => report.violationCounts[name] > 0);
  if (broken.length === 0 && report.counts.acknowledgedLost === 0 && report.counts.corruptReturned === 0) return;
  const lines = [
    `invariants violated (seed${report.seeds.length > 1 ? 's' : ''} ${report.seeds.join(', ')}; reproduce with FAULT_SEED=${report.seeds[0]}${reproduce ? ` ${reproduce}` : ''}):`,
    `  acknowledged chunks lost: ${report.counts.acknowledgedLost}, corrupt bytes returned: ${report.counts.corruptReturned}`,
  ];
  for (const name of broken) {
    lines.push(`  ${INVARIANTS[name]}: ${report.violationCounts[name]} violation(s)`);
    for (const message of report.violations[name].slice(0, 10)) lines.push(`    - ${message}`);
    if (report.violationCounts[name] > 10) lines.push(`    - ... and ${report.violationCounts[name] - 10} more`);
  }
  lines.push(`  counts: ${JSON.stringify(report.counts)}`);
  throw new Error(lines.join('\n'));
}

function emptyReport(seeds: number[], outcome: RunOutcome): InvariantReport {
  return {
    seeds,
    counts: {
      chunks: 0, replicas: 0, submittedReplicas: outcome.acks.submitted.length, acknowledgedChunks: outcome.acks.acknowledgedChunks.size,
      acknowledgedReplicas: outcome.acks.acknowledgedReplicas, storedReplicas: 0, failedReplicas: 0, expiredReplicas: 0, corruptReplicas: 0,
      acknowledgedExpired: 0, checkpoints: 0, manifests: 0, dataObjects: 0, tempFilesSwept: 0, stagedOrphansSwept: 0, stagedFilesLeft: 0,
      faultsInjected: outcome.faultsInjected, acknowledgedLost: 0, corruptReturned: 0,
    },
    violations: { acknowledged: [], torn: [], checkpoints: [], catalog: [], jobs: [], counters: [] },
    violationCounts: { acknowledged: 0, torn: 0, checkpoints: 0, catalog: 0, jobs: 0, counters: 0 },
    failureReasons: {},
  };
}
