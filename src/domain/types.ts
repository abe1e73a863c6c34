/**
 * chunkvault's words, one spelling each throughout the code. Where the seed design's own
 * names face the user (its YAML, its StoredChunk result, its statistics), they stay as the
 * seed spells them, and the entry below says which word they stand for.
 *
 * - chunk: an immutable blob of training data, named by `chunkId`, with one checksum.
 * - replica: one copy of a chunk on one target: `replicaId`, `targetNode` (the node the
 *   coordinator placed it on; the seed's StoredChunk calls it `nodeId`) and `cloudProvider`
 *   (which routes it to a backend).
 * - distribution task: what the coordinator hands over: a chunk's bytes and its replica
 *   placements (the seed's DistributionTask). Only completed tasks and replicas are stored.
 * - backend: where replica bytes live: the local filesystem, S3, GCS or Azure Blob; the one
 *   seam to storage (backends/backend.ts). A backend says what it can do beyond the contract
 *   in its `capabilities`; nothing picks behaviour by a backend's class.
 * - key: where an object lives inside its backend (backends take and list keys). A replica's
 *   key is recorded as its `path` (catalog records, metadata, the HTTP API: stored and
 *   published formats) and returned as `storagePath` in the seed's StoredChunk; it is derived
 *   from `partition_by`, and a compressed replica's key carries its codec's suffix.
 * - staging: the chunk's bytes written once, outside Redis, for the workers to read (small
 *   chunks many to a segment file); a `stagedKey` names them.
 * - catalog: the record of every replica (where, checksum, size, codec, state) and chunk,
 *   indexed in Redis. Each replica's metadata is also kept with the data (a journal in a
 *   backend that is a local directory, a `.meta.json` sidecar beside the object in a bucket;
 *   catalog/replica-metadata.ts) and every stored chunk is in a checkpoint manifest, so
 *   `reindex` can rebuild the index from the backends.
 * - checkpoint: an immutable, checksummed manifest of the chunks stored in one interval.
 * - maintenance: a pass of maintenance tasks (maintenance/maintenance-tasks.ts): retention
 *   (delete replicas older than `retention_days`), compression (re-encode those older than
 *   `compression_age_days`) and scrub (re-read stored replicas to find rot). The seed calls
 *   the pass "cleanup": its YAML block `storage.cleanup`, `enable_auto_cleanup`,
 *   `cleanup_schedule` and the `chunkvault cleanup` command (a retention pass) keep that word;
 *   the code says retention for the deleting task and maintenance for the pass.
 */
/** Digests a chunk's checksum may be: md5 (the seed's default) or sha256. */
export const CHECKSUM_ALGORITHMS = ['md5', 'sha256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** The coordinator's status values of a task or replica; only `completed` ones are stored. */
export type DistributionStatus = 'pending' | 'in_progress' | 'completed' | 'failed' | (string & {});

/** One placement of a chunk decided by the coordinator. */
export interface ReplicaPlacement {
  replicaId: string;
  chunkId: string;
  targetNode: string;
  cloudProvider: string;
  status: DistributionStatus;
}

/** A chunk handed over for storage, with where each replica should go. */
export interface DistributionTask {
  taskId: string;
  chunkId: string;
  chunkData: Uint8Array;
  status: DistributionStatus;
  replicas: ReplicaPlacement[];
}

/**
 * Lifecycle of one replica in the catalog: queued -> stored | failed; a stored replica found
 * missing or corrupt by a read becomes corrupt until a repair makes it stored again;
 * retention turns a stored replica into expired (a tombstone: its object is deleted).
 */
/** Codecs old replicas are re-encoded with (integrity/codecs.ts); '' in a record: stored as is. */
export const CODECS = ['gzip', 'brotli', 'zstd'] as const;
export type Codec = (typeof CODECS)[number];
/** What a record's `codec` may hold: a codec, or '' for bytes stored as they came. */
export const STORED_CODECS = ['', ...CODECS] as const;

/**
 * The maintenance tasks' names (job data, reports, metric labels). Each has exactly one
 * implementation in maintenance/maintenance-tasks.ts, which the compiler checks.
 */
export const MAINTENANCE_TASKS = ['retention', 'compaction', 'compression', 'scrub'] as const;
export type MaintenanceTaskName = (typeof MAINTENANCE_TASKS)[number];

export const REPLICA_STATUSES = ['queued', 'stored', 'failed', 'corrupt', 'expired'] as const;
export type ReplicaStatus = (typeof REPLICA_STATUSES)[number];

/**
 * Lifecycle of a chunk: stored when every replica is, degraded when one failed for good,
 * expired when retention deleted all of its replicas.
 */
export const CHUNK_STATUSES = ['pending', 'stored', 'degraded', 'failed', 'expired'] as const;
export type ChunkStatus = (typeof CHUNK_STATUSES)[number];

/** The catalog's record of one replica (one per replica, never one per chunk). */
export interface ReplicaRecord {
  chunkId: string;
  replicaId: string;
  backend: string;
  /** Storage key inside the backend; empty until the first write is attempted. */
  path: string;
  checksum: string;
  algorithm: ChecksumAlgorithm;
  sizeBytes: number;
  targetNode: string;
  cloudProvider: string;
  taskId: string;
  status: ReplicaStatus;
  /** ISO-8601 UTC time the replica became durable; empty while not stored. */
  storedAt: string;
  /** Write attempts made so far (all generations of the job). */
  attempts: number;
  /** Last error seen, kept after a permanent failure. */
  error: string;
  /** Bumped each time a failed replica is queued again, so it gets a fresh job. */
  generation: number;
  /** How often a read found this replica bad; names its repair job. */
  corruptions: number;
  /** Codec the object is stored with ('' = the chunk's bytes as they are). */
  codec: (typeof STORED_CODECS)[number];
  /** Bytes the object takes on the backend (sizeBytes unless compressed). */
  storedBytes: number;
}

export interface ChunkRecord {
  chunkId: string;
  checksum: string;
  algorithm: ChecksumAlgorithm;
  sizeBytes: number;
  status: ChunkStatus;
  /** ISO-8601 UTC time the chunk was first queued; fixes its date partition. */
  createdAt: string;
}

/**
 * The per-replica result handed back to the producer's caller: the seed's StoredChunk,
 * spelled in camelCase.
 */
export interface StoredChunk {
  chunkId: string;
  replicaId: string;
  status: 'stored' | 'failed';
  /** The replica's key on its backend (a record's `path`); the seed's name. */
  storagePath: string;
  backend: string;
  checksum: string;
  algorithm: ChecksumAlgorithm;
  sizeBytes: number;
  storedAt: string;
  /** The replica's `targetNode`; the seed's name. */
  nodeId: string;
  cloudProvider: string;
  taskId: string;
  error?: string;
}
