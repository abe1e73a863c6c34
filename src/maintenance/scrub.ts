/**
 * Scrub: re-reads stored replicas, least recently verified first, at a bounded rate, and
 * checks each against its chunk's checksum. An intact replica gets a new verification time;
 * a bad one is marked corrupt and repaired from a good replica (the read path's repair).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Logger } from '../logging/logger.js';
import type { RepairScheduler } from '../reads/repair-scheduler.js';
import { NotFoundError, describeError } from '../errors.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { decoded } from '../integrity/codecs.js';
import type { MaintenanceTask } from './maintenance-task.js';

export interface ScrubResult {
  replicasChecked: number;
  bytesRead: number;
  corruptFound: number;
  repairsQueued: number;
  problems: Array<{ chunkId: string; replicaId: string; problem: string }>;
}

export interface ScrubDeps {
  config: Config;
  catalog: Catalog;
  backends: BackendRegistry;
  repairs: RepairScheduler;
  logger: Logger;
}

export class Scrub {
  readonly #deps: ScrubDeps;

  constructor(deps: ScrubDeps) {
    this.#deps = deps;
  }

  /** One scrub pass; `now` gives the verification time recorded (injectable for tests). */
  async run(now: () => number = Date.now, onProgress?: (done: number, total: number) => void): Promise<ScrubResult> {
    const { config, catalog, backends, repairs, logger } = this.#deps;
    const { scrub_bytes_per_second: rate, scrub_replicas_per_pass: perPass } = config.chunkvault.maintenance;
    const result: ScrubResult = { replicasChecked: 0, bytesRead: 0, corruptFound: 0, repairsQueued: 0, problems: [] };
    const started = Date.now();
    const picked = await catalog.leastRecentlyVerified(perPass);
    for (const [done, { chunkId, replicaId }] of picked.entries()) {
      onProgress?.(done, picked.length);
      const [chunk, replica] = await Promise.all([catalog.getChunk(chunkId), catalog.getReplica(chunkId, replicaId)]);
      if (!chunk || replica?.status !== 'stored') continue;
      const backend = backends.byName(replica.backend);
      if (!backend) continue;
      let problem: string | undefined;
      try {
        const actual = await checksumOfStream(decoded(await backend.get(replica.path), replica.codec), chunk.algorithm);
        result.bytesRead += replica.storedBytes;
        if (actual.sizeBytes !== chunk.sizeBytes) problem = `corrupt: ${actual.sizeBytes} bytes, recorded ${chunk.sizeBytes}`;
        else if (actual.checksum !== chunk.checksum) problem = `corrupt: checksum ${actual.checksum}, expected ${chunk.checksum}`;
      } catch (error) {
        problem = error instanceof NotFoundError ? 'missing' : `unreadable: ${describeError(error)}`;
      }
      result.replicasChecked += 1;
      if (problem) {
        result.corruptFound += 1;
        result.problems.push({ chunkId, replicaId, problem });
        await catalog.recordCorrupt(chunkId, replicaId, `${problem} (scrub)`, replica.path);
        const source = (await catalog.listReplicas(chunkId)).find((r) => r.status === 'stored');
        await repairs.schedule(chunkId, replicaId, source?.replicaId);
        result.repairsQueued += 1;
        logger.warn({ chunkId, replicaId, problem }, 'scrub found a bad replica; repair queued');
      } else {
        await catalog.markVerified(chunkId, replicaId, now());
      }
      // Bounded rate: never read faster than scrub_bytes_per_second on average.
      const ahead = (result.bytesRead / rate) * 1000 - (Date.now() - started);
      if (ahead > 0) await sleep(ahead);
    }
    onProgress?.(picked.length, picked.length);
    logger.info({ ...result, problems: result.problems.length }, 'scrub pass done');
    return result;
  }
}

/** Scrub as a maintenance task (maintenance-task.ts); it only reads, so a dry run leaves it out. */
export const SCRUB_TASK: MaintenanceTask<'scrub', ScrubResult> = {
  name: 'scrub',
  title: 'Scrub',
  dryRun: 'skip',
  changesStoredData: false,
  runsByDefault: () => true,
  create(deps) {
    const scrub = new Scrub(deps);
    return (pass) => scrub.run(pass.now, pass.onProgress);
  },
  forReport: (result) => result,
  brief: (result) => ({ ...result, problems: result.problems.length }),
  figures: (result) => ({
    replicas: [['checked', result.replicasChecked], ['corrupt', result.corruptFound], ['repairs_queued', result.repairsQueued]],
    bytes: [['read', result.bytesRead]],
  }),
  summary: (result, bytes) => [
    { text: `${result.replicasChecked} replicas checked (${bytes(result.bytesRead)}), ` },
    { text: `${result.corruptFound} corrupt`, alarm: result.corruptFound > 0 },
    { text: `, ${result.repairsQueued} repairs queued` },
  ],
  cli: {
    command: 'scrub',
    description: 're-read stored replicas (least recently verified first) and repair bad ones; queued for a worker unless --now',
    runs: 'queued',
    nowHelp: 'run the scrub in this process and print its report; exit 1 if it found a bad replica',
    progressLabel: 'scrub: replicas',
    print: (result) =>
      `scrub: ${result.replicasChecked} replica(s) re-read, ${result.bytesRead} bytes, ${result.corruptFound} bad, ${result.repairsQueued} repair(s) queued\n` +
      result.problems.map((p) => `  ${p.chunkId}/${p.replicaId}: ${p.problem}\n`).join(''),
    jsonShape: '{replicasChecked, bytesRead, corruptFound, repairsQueued, problems: [{chunkId, replicaId, problem}]}',
    exitCode: (result) => (result.corruptFound > 0 ? 1 : 0),
    exitCodeHelp: 'the scrub (--now) found a bad replica',
  },
};
