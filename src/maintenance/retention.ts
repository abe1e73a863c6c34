/**
 * Retention: deletes replicas stored longer ago than `retention_days`.
 *
 * Fails closed. A pass first builds its whole plan from the catalog and checks every
 * planned object on its backend; any catalog or backend error aborts the pass before the
 * first deletion. Chunks still in flight (status pending) are never touched. A dry run is
 * the same plan, printed instead of executed. A pass deletes at most `max_deletes_per_pass`
 * replicas; the rest wait for the next pass.
 */
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Backend } from '../backends/backend.js';
import type { Logger } from '../logging/logger.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import { DAY_MS, agedReplicas, type AgedReplica } from './aged-replicas.js';
import { CODEC_SUFFIX, withoutCodecSuffix } from '../integrity/codecs.js';
import { itemLines, type MaintenanceTask } from './maintenance-task.js';

/** A replica retention deletes. */
export type RetentionItem = AgedReplica;

export interface RetentionPlan {
  /** Replicas stored before this instant are due. */
  cutoff: string;
  items: RetentionItem[];
  /** True when more replicas are due than one pass may delete. */
  more: boolean;
}

export interface RetentionResult {
  dryRun: boolean;
  cutoff: string;
  replicasDeleted: number;
  bytesDeleted: number;
  chunksExpired: number;
  more: boolean;
  /** What was (or, in a dry run, would be) deleted. */
  deleted: RetentionItem[];
}

export interface RetentionDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  backends: BackendRegistry;
  logger: Logger;
}

export class Retention {
  readonly #deps: RetentionDeps;

  constructor(deps: RetentionDeps) {
    this.#deps = deps;
  }

  /** Everything a pass at `nowMs` would delete, oldest first. Throws on any catalog or backend error. */
  async plan(nowMs: number): Promise<RetentionPlan> {
    const { config, catalog, backends } = this.#deps;
    const cutoffMs = nowMs - config.storage.cleanup.retention_days * DAY_MS;
    const limit = config.chunkvault.maintenance.max_deletes_per_pass;
    const { items, more } = await agedReplicas(catalog, cutoffMs, limit, (r) => r.status === 'stored' || r.status === 'corrupt');
    // Check every planned object before deleting any: a backend that cannot answer stops the pass here.
    for (const item of items) {
      const backend = backends.byName(item.backend);
      if (!backend) throw new Error(`retention: replica ${item.replicaId} of chunk ${item.chunkId} is on backend ${item.backend}, which is not configured`);
      await backend.head(item.path);
    }
    return { cutoff: new Date(cutoffMs).toISOString(), items, more };
  }

  /** Plans at `nowMs` and, unless `dryRun`, deletes what the plan holds. */
  async run(nowMs: number, dryRun: boolean): Promise<RetentionResult> {
    if (!dryRun) await this.#finishInterruptedDeletions();
    const plan = await this.plan(nowMs);
    const result: RetentionResult = { dryRun, cutoff: plan.cutoff, replicasDeleted: 0, bytesDeleted: 0, chunksExpired: 0, more: plan.more, deleted: [] };
    if (dryRun) {
      result.deleted = plan.items;
      result.replicasDeleted = plan.items.length;
      result.bytesDeleted = plan.items.reduce((sum, i) => sum + i.sizeBytes, 0);
      result.chunksExpired = await this.#chunksEmptiedBy(plan.items);
      return result;
    }
    const { catalog, backends } = this.#deps;
    const expiredAt = new Date(nowMs).toISOString();
    for (const item of plan.items) {
      const member = JSON.stringify([item.chunkId, item.replicaId, item.backend, item.path]);
      // Recorded expired before its objects go: from then on reads skip the replica, so none
      // finds it missing and calls it corrupt (nor has a repair bring it back). The journal
      // entry lets the next pass finish the deletion if this one dies in between.
      await catalog.beginDeletion(member);
      const chunkStatus = await catalog.recordExpired(item.chunkId, item.replicaId, expiredAt);
      if (chunkStatus !== 'skip') await this.#deleteObjects(backends.byName(item.backend)!, item.chunkId, item.replicaId, item.path);
      await catalog.endDeletion(member);
      if (chunkStatus === 'skip') continue;
      result.deleted.push(item);
      result.replicasDeleted += 1;
      result.bytesDeleted += item.sizeBytes;
      if (chunkStatus === 'expired') result.chunksExpired += 1;
    }
    this.#deps.logger.info({ replicasDeleted: result.replicasDeleted, bytesDeleted: result.bytesDeleted, chunksExpired: result.chunksExpired, more: result.more }, 'retention pass done');
    return result;
  }

  /**
   * Deletions a crashed pass left in the journal: the objects of a replica recorded expired
   * are removed now; a replica not recorded expired (the pass died before) is left for the plan.
   */
  async #finishInterruptedDeletions(): Promise<void> {
    const { catalog, backends } = this.#deps;
    for (const member of await catalog.deletionsInFlight()) {
      const [chunkId, replicaId, backendName, path] = JSON.parse(member) as [string, string, string, string];
      const record = await catalog.getReplica(chunkId, replicaId);
      const backend = backends.byName(backendName);
      if (record?.status === 'expired' && backend) await this.#deleteObjects(backend, chunkId, replicaId, path);
      await catalog.endDeletion(member);
    }
  }

  /** Chunks whose every remaining replica is in `items` (they would expire). */
  async #chunksEmptiedBy(items: RetentionItem[]): Promise<number> {
    const byChunk = new Map<string, Set<string>>();
    for (const item of items) byChunk.set(item.chunkId, (byChunk.get(item.chunkId) ?? new Set()).add(item.replicaId));
    let emptied = 0;
    for (const [chunkId, planned] of byChunk) {
      const live = (await this.#deps.catalog.listReplicas(chunkId)).filter((r) => r.status === 'stored' || r.status === 'corrupt' || r.status === 'queued');
      if (live.every((r) => planned.has(r.replicaId))) emptied += 1;
    }
    return emptied;
  }

  /** A replica's object, any leftover of an interrupted compression of it, then its metadata. */
  async #deleteObjects(backend: Backend, chunkId: string, replicaId: string, path: string): Promise<void> {
    const plain = withoutCodecSuffix(path);
    for (const key of new Set([path, plain, ...Object.values(CODEC_SUFFIX).map((s) => plain + s)])) await backend.delete(key);
    await this.#deps.metadata.of(backend).forget(chunkId, replicaId, path);
  }
}

/** Retention as a maintenance task (maintenance-task.ts). */
export const RETENTION_TASK: MaintenanceTask<'retention', RetentionResult> = {
  name: 'retention',
  title: 'Retention',
  dryRun: 'plan',
  changesStoredData: true,
  runsByDefault: () => true,
  create(deps) {
    const retention = new Retention(deps);
    return (pass) => retention.run(pass.now(), pass.dryRun);
  },
  forReport: (result, maxItems) => ({ ...result, deleted: result.deleted.slice(0, maxItems) }),
  brief: ({ deleted: _deleted, ...rest }) => rest,
  figures: (result) => ({
    replicas: [['deleted', result.replicasDeleted], ['chunks_expired', result.chunksExpired]],
    bytes: [['deleted', result.bytesDeleted]],
  }),
  summary: (result, bytes) => [
    { text: `${result.replicasDeleted} replicas deleted (${bytes(result.bytesDeleted)}), ${result.chunksExpired} chunks expired${result.more ? '; more left for the next pass' : ''}` },
  ],
  cli: {
    command: 'cleanup',
    description: 'run a retention pass now: delete replicas stored more than retention_days ago',
    runs: 'inline',
    dryRunHelp: 'print exactly what a real pass would delete, and delete nothing',
    jsonShape: '{dryRun, cutoff, replicasDeleted, bytesDeleted, chunksExpired, more, deleted: [{backend, path, chunkId, replicaId, sizeBytes, storedAt}]}',
    print: (result) =>
      itemLines(result.dryRun ? 'would delete' : 'deleted', result.deleted) +
      `${result.dryRun ? 'dry run: ' : ''}${result.replicasDeleted} replica(s), ${result.bytesDeleted} bytes, ${result.chunksExpired} chunk(s) ${result.dryRun ? 'would expire' : 'expired'} (stored before ${result.cutoff})${result.more ? '; more are due than one pass deletes' : ''}\n`,
  },
};
