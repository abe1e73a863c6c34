/**
 * What the catalog takes and gives: its records' shapes, and how each is read from Redis's
 * replies (hash fields, a script's reply, a pipeline's), so catalog.ts and
 * catalog-reader.ts hold only their calls.
 */
import { ConflictError } from '../errors.js';
import type { ChecksumAlgorithm, ChunkRecord, ChunkStatus, ReplicaRecord, ReplicaStatus } from '../domain/types.js';
import { UnexpectedReplyError, integerReply, oneOf } from './catalog-scripts.js';
import type { ReplicaLocation } from './replica-scan.js';

export interface ReplicaRequest {
  replicaId: string;
  backend: string;
  targetNode: string;
  cloudProvider: string;
  taskId: string;
}

export interface ChunkRegistration {
  chunkId: string;
  checksum: string;
  algorithm: ChecksumAlgorithm;
  sizeBytes: number;
  createdAtMs: number;
  replicas: ReplicaRequest[];
}

export interface RegistrationResult {
  /** First-queued time of the chunk (an earlier registration's if the chunk was known). */
  createdAtMs: number;
  /** Per requested replica, in order: whether a job must be queued, and its generation. */
  replicas: Array<{ replicaId: string; action: 'enqueue' | 'skip'; generation: number }>;
}

export interface StoredReplicaInput {
  chunkId: string;
  replicaId: string;
  backend: string;
  path: string;
  checksum: string;
  algorithm: ChecksumAlgorithm;
  sizeBytes: number;
  targetNode: string;
  cloudProvider: string;
  taskId: string;
  storedAt: string;
  attempts: number;
  createdAtMs: number;
  /** When the bytes were last read back intact (ms); defaults to storedAt. */
  verifiedAtMs?: number;
  /** Codec of the stored object (default: none) and its size on the backend (default: sizeBytes). */
  codec?: ReplicaRecord['codec'];
  storedBytes?: number;
  /** Reindex rebuilding the record from the backend: nothing was written now, so the per-minute series leaves it out. */
  rebuilt?: boolean;
}

/** Raw counters kept in P:stats. */
export interface CatalogCounters {
  replicasStored: number;
  replicasFailed: number;
  /** Replicas a read found missing or corrupt, not repaired yet. */
  replicasCorrupt: number;
  corruptionsFound: number;
  repairsDone: number;
  /** Replicas and bytes deleted by retention, ever. */
  replicasExpired: number;
  bytesExpired: number;
  replicasCompressed: number;
  bytesSavedByCompression: number;
  bytesStored: number;
  chunks: Record<ChunkStatus, number>;
  byCloud: Record<string, { count: number; sizeBytes: number }>;
  byNode: Record<string, { count: number; sizeBytes: number }>;
  backendBytes: Record<string, number>;
  /** Stored replica objects per backend. */
  backendCount: Record<string, number>;
}

/** The counters of P:stats, read from its fields. */
export function countersOf(raw: Record<string, string>): CatalogCounters {
  const counters: CatalogCounters = {
    replicasStored: Number(raw.replicas_stored ?? 0),
    replicasFailed: Number(raw.replicas_failed ?? 0),
    replicasCorrupt: Number(raw.replicas_corrupt ?? 0),
    corruptionsFound: Number(raw.corruptions_found ?? 0),
    repairsDone: Number(raw.repairs_done ?? 0),
    bytesStored: Number(raw.bytes_stored ?? 0),
    chunks: {
      pending: Number(raw.chunks_pending ?? 0),
      stored: Number(raw.chunks_stored ?? 0),
      degraded: Number(raw.chunks_degraded ?? 0),
      failed: Number(raw.chunks_failed ?? 0),
      expired: Number(raw.chunks_expired ?? 0),
    },
    replicasExpired: Number(raw.replicas_expired ?? 0),
    replicasCompressed: Number(raw.replicas_compressed ?? 0),
    bytesSavedByCompression: Number(raw.bytes_saved_by_compression ?? 0),
    bytesExpired: Number(raw.bytes_expired ?? 0),
    // Keyed by ids, which may be "constructor" or "toString": no prototype to collide with.
    byCloud: Object.create(null) as CatalogCounters['byCloud'],
    byNode: Object.create(null) as CatalogCounters['byNode'],
    backendBytes: {},
    backendCount: {},
  };
  for (const [field, value] of Object.entries(raw)) {
    const group = /^(cloud|node):(.+):(count|bytes)$/.exec(field);
    if (group) {
      const table = group[1] === 'cloud' ? counters.byCloud : counters.byNode;
      const entry = (table[group[2]!] ??= { count: 0, sizeBytes: 0 });
      if (group[3] === 'count') entry.count = Number(value);
      else entry.sizeBytes = Number(value);
    }
    const backend = /^backend:(.+):(bytes|count)$/.exec(field);
    if (backend) (backend[2] === 'bytes' ? counters.backendBytes : counters.backendCount)[backend[1]!] = Number(value);
  }
  for (const table of [counters.byCloud, counters.byNode]) {
    for (const [name, entry] of Object.entries(table)) if (entry.count === 0) delete table[name];
  }
  return counters;
}

/** One chunk's part of a cvRegisterChunk reply: its registration, or a ConflictError when the id is known with another checksum. */
export function registrationOf(chunk: ChunkRegistration, reply: unknown): RegistrationResult | Error {
  if (!Array.isArray(reply)) throw new UnexpectedReplyError('cvRegisterChunk', reply);
  if (reply[0] === 'conflict') {
    return new ConflictError(
      `chunk ${chunk.chunkId} is already recorded with ${reply[2]} checksum ${reply[1]}; chunks are immutable, so the same id cannot carry ${chunk.algorithm} ${chunk.checksum}`,
    );
  }
  if (reply[0] !== 'ok' || reply.length !== 2 + chunk.replicas.length * 2) throw new UnexpectedReplyError('cvRegisterChunk', reply);
  const replicas = chunk.replicas.map((r, i) => ({
    replicaId: r.replicaId,
    action: oneOf('cvRegisterChunk', reply[2 + i * 2], ['enqueue', 'skip'] as const),
    generation: integerReply('cvRegisterChunk', reply[3 + i * 2]),
  }));
  return { createdAtMs: integerReply('cvRegisterChunk', reply[1]), replicas };
}

/** Where one replica of a chunk is, as a checkpoint manifest lists it. */
export type ManifestReplica = Omit<ReplicaLocation, 'chunkId'>;

export function toChunkRecord(chunkId: string, raw: Record<string, string>): ChunkRecord | undefined {
  if (!raw.checksum) return undefined;
  return {
    chunkId,
    checksum: raw.checksum,
    algorithm: raw.algorithm as ChecksumAlgorithm,
    sizeBytes: Number(raw.sizeBytes),
    status: (raw.status ?? 'pending') as ChunkStatus,
    createdAt: raw.createdAt ?? '',
  };
}

/** A pipeline's replies, throwing the first command's error. */
export function pipelineValues(replies: Array<[Error | null, unknown]> | null): unknown[] {
  return (replies ?? []).map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}

export function toReplicaRecord(raw: Record<string, string>): ReplicaRecord {
  return {
    chunkId: raw.chunkId ?? '',
    replicaId: raw.replicaId ?? '',
    backend: raw.backend ?? '',
    path: raw.path ?? '',
    checksum: raw.checksum ?? '',
    algorithm: (raw.algorithm ?? 'md5') as ChecksumAlgorithm,
    sizeBytes: Number(raw.sizeBytes ?? 0),
    targetNode: raw.targetNode ?? '',
    cloudProvider: raw.cloudProvider ?? '',
    taskId: raw.taskId ?? '',
    status: raw.status as ReplicaStatus,
    storedAt: raw.storedAt ?? '',
    attempts: Number(raw.attempts ?? 0),
    error: raw.error ?? '',
    generation: Number(raw.generation ?? 0),
    corruptions: Number(raw.corruptions ?? 0),
    codec: (raw.codec ?? '') as ReplicaRecord['codec'],
    storedBytes: Number(raw.storedBytes ?? raw.sizeBytes ?? 0),
  };
}
