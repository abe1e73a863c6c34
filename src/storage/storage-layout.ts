/**
 * Where a replica lives inside its backend, per `partition_by`. Keys are a pure function of
 * the replica and the chunk's first-queued time (UTC), so every retry of a write targets the
 * same key and a crash can never leave two copies under two dates.
 *
 *   date        2026/11/26/<chunkId>@<replicaId>.dat   (UTC date the chunk was first queued)
 *   cloud       <cloudProvider>/<chunkId>@<replicaId>.dat
 *   node        <targetNode>/<chunkId>@<replicaId>.dat
 *   chunk_size  <size class>/<chunkId>@<replicaId>.dat  (lt-64KiB, lt-1MiB, lt-16MiB, lt-256MiB, ge-256MiB)
 *   flat        <chunkId>@<replicaId>.dat
 *
 * One directory per partition, as the seed has it, not one per chunk: a directory per chunk
 * cost a mkdir and an fsync of its parent per chunk, and an fsync of its own per rename into
 * it, where replicas renamed into one shared directory share its fsyncs. '@' is not allowed
 * in ids, so the name is unambiguous. Ids too long together for one file name (over 245
 * characters) keep the older <chunkId>/<replicaId>.dat, and keys written before this layout
 * stay valid too: the catalog records each replica's key.
 *
 * A sidecar object (buckets) sits beside the data as <chunkId>@<replicaId>.meta.json; the
 * suffixes keep the two apart. A compressed replica is <...>.dat.gz (or .br, .zst).
 */
import type { PartitionStrategy } from '../config/config.schema.js';
import { withoutCodecSuffix } from '../integrity/codecs.js';

/**
 * chunkvault's own objects in a backend (checkpoint manifests, the storage marker, staged
 * bytes in a bucket) live under this prefix; no data or metadata key starts with '_'.
 */
export const RESERVED_KEY_PREFIX = '_chunkvault/';

export const DATA_SUFFIX = '.dat';
export const METADATA_SUFFIX = '.meta.json';

export interface LayoutInput {
  chunkId: string;
  replicaId: string;
  targetNode: string;
  cloudProvider: string;
  sizeBytes: number;
  createdAtMs: number;
}

const SIZE_CLASSES: ReadonlyArray<[limit: number, name: string]> = [
  [64 * 1024, 'lt-64KiB'],
  [1024 * 1024, 'lt-1MiB'],
  [16 * 1024 * 1024, 'lt-16MiB'],
  [256 * 1024 * 1024, 'lt-256MiB'],
];

export function sizeClassOf(sizeBytes: number): string {
  for (const [limit, name] of SIZE_CLASSES) if (sizeBytes < limit) return name;
  return 'ge-256MiB';
}

/** A file name of at most 255 bytes holds the name, '.meta.json' and anything shorter ('.dat.zst'). */
const MAX_NAME_BYTES = 255 - METADATA_SUFFIX.length;

/** The storage key of a replica's data. */
export function dataKeyOf(strategy: PartitionStrategy, replica: LayoutInput): string {
  const name = `${replica.chunkId}@${replica.replicaId}`;
  // Ids are ASCII, so characters are bytes. Two ids too long for one file name keep a
  // directory per chunk instead.
  const file = name.length <= MAX_NAME_BYTES ? name : `${replica.chunkId}/${replica.replicaId}`;
  return `${partitionOf(strategy, replica)}${file}${DATA_SUFFIX}`;
}

/** The storage key of the metadata sidecar that belongs to a data key (compressed or not). */
export function metadataKeyOf(dataKey: string): string {
  return withoutCodecSuffix(dataKey).slice(0, -DATA_SUFFIX.length) + METADATA_SUFFIX;
}

/** Whether `key` is a replica's data object (compressed or not). */
export function isDataKey(key: string): boolean {
  return withoutCodecSuffix(key).endsWith(DATA_SUFFIX);
}

function partitionOf(strategy: PartitionStrategy, replica: LayoutInput): string {
  switch (strategy) {
    case 'date': {
      const day = new Date(replica.createdAtMs).toISOString().slice(0, 10);
      return `${day.replaceAll('-', '/')}/`;
    }
    case 'cloud':
      return `${replica.cloudProvider}/`;
    case 'node':
      return `${replica.targetNode}/`;
    case 'chunk_size':
      return `${sizeClassOf(replica.sizeBytes)}/`;
    case 'flat':
      return '';
  }
}
