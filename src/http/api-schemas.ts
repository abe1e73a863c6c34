/**
 * zod schemas of what the HTTP API receives and answers. The OpenAPI document is generated
 * from them (openapi.ts) and the API test checks real responses against that document, so
 * the document, these schemas and the server cannot drift apart unnoticed.
 *
 * Each body schema is tied to the TypeScript type the handler returns (see the `Assignable`
 * checks at the end): a field added to, renamed in or removed from a domain type breaks the
 * build until its schema follows.
 */
import { z } from 'zod';
import { idSchema, replicaIdSchema } from '../domain/ids.js';
import { CHUNK_STATUSES, REPLICA_STATUSES, STORED_CODECS, type ChunkRecord, type ReplicaRecord, CHECKSUM_ALGORITHMS } from '../domain/types.js';
import type { CheckpointEntry } from '../catalog/checkpoint-index.js';
import type { StorageStatistics } from '../stats/statistics.js';
import type { MinuteSeries } from '../catalog/minute-series.js';
import { manifestSchema } from '../checkpoints/manifest.js';

/** Stable error codes of the API (the `error` field); HTTP statuses are in the OpenAPI document. */
export const API_ERROR_CODES = [
  'bad_request',
  'unauthorized',
  /** 421: without credentials, a request whose Host is not a loopback name (DNS rebinding). */
  'misdirected_request',
  'read_only',
  'not_found',
  'conflict',
  'corrupt',
  'payload_too_large',
  'unsupported_media_type',
  'unavailable',
  'not_ready',
  'internal',
] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

export const problemSchema = z.object({
  /** The header, path parameter or `body` the problem is in, e.g. `chunkvault-replicas[1].replicaId`. */
  field: z.string(),
  message: z.string(),
});
export type Problem = z.infer<typeof problemSchema>;

/** The body of every error answer. */
export const apiErrorSchema = z.object({
  error: z.enum(API_ERROR_CODES).describe('stable, machine-readable code'),
  message: z.string().describe('what went wrong, for people'),
  problems: z.array(problemSchema).min(1).optional().describe('400 only: every problem found in the request'),
});
export type ApiErrorBody = z.infer<typeof apiErrorSchema>;

/** `<algorithm>:<hex digest>`, the form of the `chunkvault-checksum` header. */
export const checksumHeaderSchema = z
  .string()
  .regex(/^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$/, 'must be md5:<32 hex> or sha256:<64 hex>')
  .describe('the chunk\'s checksum as <algorithm>:<lowercase hex digest>, e.g. md5:9e107d9d372bb6826bd81d3542a419d6');

/**
 * One replica placement in the `chunkvault-replicas` header. Only the shape is checked here;
 * the ids are checked by the producer's own task schema (producer/task-schema.ts) and the
 * provider by the backend routing, exactly as for `ChunkProducer.store`.
 */
const requiredString = z.string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') });
export const replicaPlacementSchema = z
  .object(
    {
      replicaId: requiredString.describe(`an id (${idRules()})`),
      targetNode: requiredString.describe('the node the coordinator placed the replica on (an id)'),
      cloudProvider: requiredString.describe('where it goes: aws, gcp, azure or local when cloud storage is enabled; a label otherwise'),
    },
    { error: (issue) => (issue.code === 'invalid_type' ? 'must be an object {replicaId, targetNode, cloudProvider}' : undefined) },
  )
  .strict();

export const replicaPlacementsSchema = z.array(replicaPlacementSchema).min(1, 'must list at least one replica');

/** Documentation-only schemas of the POST headers (the handler applies the producer's validation). */
export const chunkIdHeaderSchema = idSchema.describe('the chunk\'s id');
export const taskIdHeaderSchema = idSchema.describe('the coordinator\'s task id (default: the chunk id)');
export const replicaPlacementsHeaderSchema = z.array(
  z.object({ replicaId: replicaIdSchema, targetNode: idSchema, cloudProvider: idSchema }).strict(),
).min(1);

const replicaStatusSchema = z.enum(REPLICA_STATUSES);
const checksumAlgorithmSchema = z.enum(CHECKSUM_ALGORITHMS);

/** 202 answer of POST /v1/chunks. */
export const storeAcceptedSchema = z.object({
  chunkId: z.string(),
  taskId: z.string(),
  checksum: z.string().describe('hex digest of the body, computed by chunkvault'),
  algorithm: checksumAlgorithmSchema,
  sizeBytes: z.number().int().nonnegative(),
  /** The shared replica queue (with routing.queue_per_backend, each replica's job is on its backend's queue instead: replicas[].queue). */
  queue: z.string(),
  replicas: z.array(
    z.object({
      replicaId: z.string(),
      /** Queue the replica's write job is on. */
      queue: z.string(),
      /** BullMQ id of the replica's write job (of its newest generation); it may already be removed once finished. */
      jobId: z.string(),
      /** Catalog status right after queuing: `queued`, or `stored` when the replica was already stored. */
      status: replicaStatusSchema,
    }),
  ),
});
export type StoreAccepted = z.infer<typeof storeAcceptedSchema>;

export const replicaRecordSchema = z.object({
  chunkId: z.string(),
  replicaId: z.string(),
  backend: z.string(),
  path: z.string().describe('storage key inside the backend; empty until the first write attempt'),
  checksum: z.string(),
  algorithm: checksumAlgorithmSchema,
  sizeBytes: z.number().int().nonnegative(),
  targetNode: z.string(),
  cloudProvider: z.string(),
  taskId: z.string(),
  status: replicaStatusSchema,
  storedAt: z.string().describe('ISO-8601 UTC; empty while not stored'),
  attempts: z.number().int().nonnegative(),
  error: z.string().describe('last error seen; empty when none'),
  generation: z.number().int().nonnegative(),
  corruptions: z.number().int().nonnegative(),
  codec: z.enum(STORED_CODECS),
  storedBytes: z.number().int().nonnegative(),
});

export const chunkRecordSchema = z.object({
  chunkId: z.string(),
  checksum: z.string(),
  algorithm: checksumAlgorithmSchema,
  sizeBytes: z.number().int().nonnegative(),
  status: z.enum(CHUNK_STATUSES),
  createdAt: z.string(),
});

/** GET /v1/chunks/{id}/replicas */
export const chunkReplicasSchema = z.object({
  chunk: chunkRecordSchema,
  replicas: z.array(replicaRecordSchema),
});

export const checkpointEntrySchema = z.object({
  id: z.string(),
  sequence: z.number().int().positive(),
  createdAt: z.string(),
  previousId: z.string().describe('empty for the first checkpoint'),
  chunkCount: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative(),
  checksum: z.string(),
  key: z.string().describe('storage key of the manifest on its backend'),
  fromLedgerSeq: z.number().int().nonnegative(),
  toLedgerSeq: z.number().int().nonnegative(),
});

/** GET /v1/checkpoints */
export const checkpointListSchema = z.object({ checkpoints: z.array(checkpointEntrySchema) });

/** GET /v1/checkpoints/{id}: the stored manifest, its own checksum verified. */
export const checkpointManifestSchema = manifestSchema;

const countAndSizeSchema = z.record(z.string(), z.object({ count: z.number(), size_bytes: z.number() }));
/** A maintenance pass's result, not detailed here (each task's part is what its CLI command prints with --json). */
const passResultSchema = z.unknown().describe('the pass result; each task\'s part is what `chunkvault cleanup`, `compress` or `scrub --now` print with --json');

/** GET /v1/stats (the seed design's field names). */
export const statisticsSchema = z.object({
  total_chunks: z.number(),
  total_replicas: z.number(),
  total_size_bytes: z.number(),
  total_size_gb: z.number(),
  checkpoints_created: z.number(),
  storage_by_cloud: countAndSizeSchema,
  storage_by_node: countAndSizeSchema,
  backend_stats: z.record(
    z.string(),
    z.object({ total_size_bytes: z.number(), total_size_gb: z.number(), file_count: z.number(), base_path: z.string(), max_size_bytes: z.number() }),
  ),
  successful_stores: z.number(),
  failed_stores: z.number(),
  degraded_chunks: z.number(),
  corrupt_replicas: z.number(),
  corruptions_found: z.number(),
  repairs_done: z.number(),
  chunks_by_status: z.object({ pending: z.number(), stored: z.number(), degraded: z.number(), failed: z.number(), expired: z.number() }),
  expired_replicas: z.number(),
  expired_bytes: z.number(),
  compressed_replicas: z.number(),
  bytes_saved_by_compression: z.number(),
  oldest_verification: z.string().nullable(),
  last_maintenance: z
    .object({
      startedAt: z.string(),
      finishedAt: z.string(),
      skipped: z.string().optional(),
      retention: passResultSchema.optional(),
      compression: passResultSchema.optional(),
      scrub: passResultSchema.optional(),
      error: z.string().optional(),
    })
    .nullable(),
  queues: z.record(z.string(), z.object({ waiting: z.number(), active: z.number(), delayed: z.number(), failed: z.number(), waiting_children: z.number() })),
});

const perMinuteSchema = (what: string) => z.array(z.number().int().nonnegative()).describe(`${what}, one value per minute from \`start\``);

/** GET /v1/stats/series: the catalog's per-minute series over its whole window. */
export const minuteSeriesSchema = z.object({
  start: z.string().describe('start of the oldest minute (ISO 8601, UTC); the last value is the current minute, still counting'),
  step_seconds: z.literal(60),
  series: z.object({
    replicas_stored: perMinuteSchema('replicas stored (new writes and repairs)'),
    bytes_stored: perMinuteSchema('bytes those replicas take on their backends'),
    replicas_failed: perMinuteSchema('replicas failed for good'),
    corruptions_found: perMinuteSchema('stored replicas found missing or corrupt'),
    repairs_done: perMinuteSchema('corrupt replicas rewritten from a good one'),
  }),
});

/** GET /healthz */
export const healthSchema = z.object({ status: z.literal('ok') });

export const readinessCheckSchema = z.object({
  /** `redis`, or `backend:<name>` per configured backend. */
  name: z.string(),
  ok: z.boolean(),
  /** Why the check failed (secrets redacted). */
  error: z.string().optional(),
});
export type ReadinessCheck = z.infer<typeof readinessCheckSchema>;

/** GET /readyz, 200 */
export const readySchema = z.object({ status: z.literal('ready'), checks: z.array(readinessCheckSchema) });
/** GET /readyz, 503: the error body with every check's result. */
export const notReadySchema = apiErrorSchema.extend({ error: z.literal('not_ready'), checks: z.array(readinessCheckSchema) });

/** GET /openapi.json: the document itself (an OpenAPI 3.1 object). */
export const openApiDocumentSchema = z.looseObject({ openapi: z.string(), info: z.object({ title: z.string(), version: z.string() }).loose(), paths: z.record(z.string(), z.unknown()) });

function idRules(): string {
  return '1-128 letters, digits, "_", "." or "-", starting with a letter or digit, no ".."';
}

// Compile-time ties between the schemas and the types the handlers answer with.
type Assignable<From, To> = [From] extends [To] ? true : false;
const typeChecks: [
  Assignable<ReplicaRecord, z.input<typeof replicaRecordSchema>>,
  Assignable<z.output<typeof replicaRecordSchema>, ReplicaRecord>,
  Assignable<ChunkRecord, z.input<typeof chunkRecordSchema>>,
  Assignable<z.output<typeof chunkRecordSchema>, ChunkRecord>,
  Assignable<CheckpointEntry, z.input<typeof checkpointEntrySchema>>,
  Assignable<z.output<typeof checkpointEntrySchema>, CheckpointEntry>,
  Assignable<StorageStatistics, z.input<typeof statisticsSchema>>,
  Assignable<{ start: string; step_seconds: MinuteSeries['stepSeconds']; series: MinuteSeries['values'] }, z.input<typeof minuteSeriesSchema>>,
] = [true, true, true, true, true, true, true, true];
void typeChecks;
