/**
 * Rebuilds the catalog's Redis index from the backends alone: every metadata sidecar whose
 * data object is present (and, with `verify`, hashes right) becomes a stored replica record
 * again. Safe to run on a live catalog: recording a stored replica twice changes nothing.
 */
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Backend } from '../backends/backend.js';
import type { Logger } from '../logging/logger.js';
import { sidecarSchema } from '../catalog/sidecar.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { DATA_SUFFIX, METADATA_SUFFIX, metadataKeyOf } from '../storage/storage-layout.js';

export interface ReindexReport {
  /** Sidecars read. */
  sidecars: number;
  /** Replicas recorded as stored. */
  restored: number;
  /** Problems, each naming the key: unreadable sidecar, missing or wrong data, data without sidecar. */
  problems: string[];
}

export async function reindex(backends: BackendRegistry, catalog: Catalog, logger: Logger, options: { verify?: boolean } = {}): Promise<ReindexReport> {
  const report: ReindexReport = { sidecars: 0, restored: 0, problems: [] };
  for (const backend of backends.all()) await reindexBackend(backend, catalog, options.verify ?? false, report);
  logger.info({ sidecars: report.sidecars, restored: report.restored, problems: report.problems.length }, 'reindex finished');
  return report;
}

async function reindexBackend(backend: Backend, catalog: Catalog, verify: boolean, report: ReindexReport): Promise<void> {
  const dataKeys = new Set<string>();
  const sidecarKeys: string[] = [];
  for await (const object of backend.list('')) {
    if (object.key.endsWith(METADATA_SUFFIX)) sidecarKeys.push(object.key);
    else if (object.key.endsWith(DATA_SUFFIX)) dataKeys.add(object.key);
  }
  for (const key of sidecarKeys) {
    report.sidecars += 1;
    let sidecar;
    try {
      const chunks: Buffer[] = [];
      for await (const piece of await backend.get(key)) chunks.push(piece as Buffer);
      sidecar = sidecarSchema.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    } catch (error) {
      report.problems.push(`${backend.name}:${key}: unreadable metadata (${(error as Error).message.split('\n')[0]})`);
      continue;
    }
    if (metadataKeyOf(sidecar.path) !== key) {
      report.problems.push(`${backend.name}:${key}: metadata names path ${sidecar.path}, which does not belong to it`);
      continue;
    }
    dataKeys.delete(sidecar.path);
    const object = await backend.head(sidecar.path);
    if (!object) {
      report.problems.push(`${backend.name}:${sidecar.path}: data missing (metadata present)`);
      continue;
    }
    if (object.sizeBytes !== sidecar.sizeBytes) {
      report.problems.push(`${backend.name}:${sidecar.path}: ${object.sizeBytes} bytes, metadata says ${sidecar.sizeBytes}`);
      continue;
    }
    if (verify) {
      const actual = await checksumOfStream(await backend.get(sidecar.path), sidecar.algorithm);
      if (actual.checksum !== sidecar.checksum) {
        report.problems.push(`${backend.name}:${sidecar.path}: checksum ${actual.checksum}, metadata says ${sidecar.checksum}`);
        continue;
      }
    }
    await catalog.recordStored({ ...sidecar, backend: backend.name, attempts: 0 });
    report.restored += 1;
  }
  for (const key of dataKeys) report.problems.push(`${backend.name}:${key}: data without metadata (not indexed)`);
}
