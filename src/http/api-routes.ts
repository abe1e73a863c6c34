/**
 * The HTTP API in one table: each route's documentation (turned into the OpenAPI document by
 * openapi.ts) next to its handler (registered by api.ts). A route cannot be served without
 * being documented, and the API test sends real requests for every documented answer.
 */
import type { FastifyRequest } from 'fastify';
import { idSchema } from '../domain/ids.js';
import { checksumOf } from '../integrity/checksum.js';
import { SERIES_WINDOW_MINUTES } from '../catalog/minute-series.js';
import { QUEUE_NAMES, replicaJobId } from '../jobs/job-table.js';
import {
  checkpointListSchema, checkpointManifestSchema, checksumHeaderSchema, chunkIdHeaderSchema, chunkReplicasSchema,
  healthSchema, minuteSeriesSchema, notReadySchema, openApiDocumentSchema, readySchema, replicaPlacementsHeaderSchema, statisticsSchema, storeAcceptedSchema,
  taskIdHeaderSchema, type StoreAccepted,
} from './api-schemas.js';
import { HttpError } from './api-errors.js';
import { checksumHeader, checkUpload, UPLOAD_HEADERS } from './chunk-upload.js';
import { checkReadiness } from './readiness.js';
import { errorResponse as error, type ApiParameter, type ApiRoute } from './api-route.js';

/** Header carrying the checksum of the chunk's bytes (answer of GET, optional in POST). */
export const CHECKSUM_HEADER = 'chunkvault-checksum';

const idParameter = (description: string): ApiParameter => ({ name: 'id', in: 'path', required: true, description, schema: idSchema });

/** A path id, checked with the same id rules as everywhere else (no `..`, no separators). */
function pathId(request: FastifyRequest): string {
  const raw = (request.params as { id?: string }).id;
  const parsed = idSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new HttpError(400, 'bad_request', `invalid id ${JSON.stringify(raw)}`, parsed.error.issues.map((i) => ({ field: 'id', message: i.message })));
}

export const API_ROUTES: readonly ApiRoute[] = [
  {
    method: 'POST',
    path: '/v1/chunks',
    operationId: 'storeChunk',
    summary: 'Store a chunk: its bytes in the body, its replica placements in headers',
    description:
      'Validates the request exactly as the producer API (`ChunkProducer.store`) does, stages the bytes once and queues one ' +
      'replica write job per replica. Answers once queued (202), not once stored: poll GET /v1/chunks/{id}/replicas. ' +
      'Storing the same chunk again queues only replicas not stored yet. Every problem of a bad request is listed (400); ' +
      'nothing of it is stored.',
    tag: 'chunks',
    public: false,
    writes: true,
    parameters: [
      { name: UPLOAD_HEADERS.chunkId, in: 'header', required: true, description: 'the chunk\'s id', schema: chunkIdHeaderSchema },
      {
        name: UPLOAD_HEADERS.replicas, in: 'header', required: true, json: true, schema: replicaPlacementsHeaderSchema,
        description: 'JSON array of the replica placements: [{"replicaId","targetNode","cloudProvider"}, ...]',
      },
      { name: UPLOAD_HEADERS.taskId, in: 'header', required: false, description: 'the coordinator\'s task id (default: the chunk id)', schema: taskIdHeaderSchema },
      {
        name: UPLOAD_HEADERS.checksum, in: 'header', required: false, schema: checksumHeaderSchema,
        description: 'checksum of the body as <algorithm>:<hex>; when given, a body that does not match is refused (400)',
      },
    ],
    requestBody: { description: 'the chunk\'s bytes (at most chunkvault.http.max_body_mb)', contentType: 'application/octet-stream', required: true },
    responses: {
      202: { description: 'queued: the replica write jobs and the replicas\' status', json: { name: 'StoreAccepted', schema: storeAcceptedSchema } },
      400: error('invalid request: `problems` lists every problem (header and field)'),
      403: error('the server is read-only'),
      409: error('the chunk id is already recorded with other bytes (chunks are immutable)'),
      413: error('the body is larger than chunkvault.http.max_body_mb'),
      415: error('the content type is not application/octet-stream'),
    },
    async handle({ request, parts }) {
      const { vault } = parts;
      const check = await checkUpload(request.headers, request.body, vault.backends);
      if (check.problems) {
        throw new HttpError(400, 'bad_request', `the chunk cannot be stored as sent (${check.problems.length} problem(s))`, check.problems);
      }
      const { task } = check;
      const handle = await vault.producer.store([task]);
      const recorded = await vault.findChunkRecords(task.chunkId);
      const chunk = recorded?.chunk;
      if (handle.rejected.length) {
        const reasons = [...new Set(handle.rejected.map((r) => r.error ?? 'rejected'))].join('; ');
        // The checks above leave one refusal they cannot foresee: the id already names other bytes.
        if (chunk && (await checksumOf(task.chunkData, chunk.algorithm)) !== chunk.checksum) throw new HttpError(409, 'conflict', reasons);
        throw new HttpError(500, 'internal', reasons);
      }
      // The tracked replicas are all this chunk's: one task was stored.
      const records = new Map(recorded?.replicas.map((record) => [record.replicaId, record]));
      const algorithm = chunk?.algorithm ?? vault.config.storage.integrity.checksum_algorithm;
      const body: StoreAccepted = {
        chunkId: task.chunkId,
        taskId: task.taskId,
        checksum: chunk?.checksum ?? (await checksumOf(task.chunkData, algorithm)),
        algorithm,
        sizeBytes: task.chunkData.byteLength,
        queue: QUEUE_NAMES.replicas,
        replicas: handle.tracked.map((ref) => ({
          replicaId: ref.replicaId,
          queue: vault.replicaQueueOf(records.get(ref.replicaId)?.backend ?? ''),
          jobId: replicaJobId(ref.chunkId, ref.replicaId, records.get(ref.replicaId)?.generation ?? 0),
          status: records.get(ref.replicaId)?.status ?? 'queued',
        })),
      };
      return { status: 202, json: body };
    },
  },
  {
    method: 'GET',
    path: '/v1/chunks/:id',
    operationId: 'getChunk',
    summary: 'The chunk\'s bytes, verified against its checksum',
    description:
      'Read from the first good replica (each read is checked against the chunk\'s checksum when storage.integrity.verify_on_read ' +
      'is on); bad replicas met on the way are marked and repaired in the background.',
    tag: 'chunks',
    public: false,
    writes: false,
    parameters: [idParameter('the chunk id')],
    responses: {
      200: {
        description: 'the bytes',
        bytes: true,
        headers: { [CHECKSUM_HEADER]: { description: 'the chunk\'s checksum, <algorithm>:<hex>', schema: checksumHeaderSchema, required: true } },
      },
      400: error('the id is not a valid id'),
      404: error('no such chunk'),
      409: error('every replica is missing, unreadable or corrupt (`corrupt`); the message says what is wrong with each'),
    },
    async handle({ request, parts }) {
      const { chunk, bytes } = await parts.vault.readChunk(pathId(request));
      return { status: 200, bytes, headers: { [CHECKSUM_HEADER]: checksumHeader(chunk.algorithm, chunk.checksum) } };
    },
  },
  {
    method: 'GET',
    path: '/v1/chunks/:id/replicas',
    operationId: 'getChunkReplicas',
    summary: 'The catalog\'s records of a chunk and of each of its replicas',
    description: 'Where each replica is, its status (queued, stored, failed, corrupt, expired), attempts and last error.',
    tag: 'catalog',
    public: false,
    writes: false,
    parameters: [idParameter('the chunk id')],
    responses: {
      200: { description: 'the records', json: { name: 'ChunkReplicas', schema: chunkReplicasSchema } },
      400: error('the id is not a valid id'),
      404: error('no such chunk in the catalog'),
    },
    async handle({ request, parts }) {
      const chunkId = pathId(request);
      const records = await parts.vault.findChunkRecords(chunkId);
      if (!records) throw new HttpError(404, 'not_found', `chunk ${chunkId} is not in the catalog`);
      return { status: 200, json: records };
    },
  },
  {
    method: 'GET',
    path: '/v1/stats',
    operationId: 'getStatistics',
    summary: 'Storage statistics',
    description: 'The seed design\'s statistics and more (per backend, cloud and node; corruption, repairs, retention, queues), from the catalog\'s counters: cheap to call.',
    tag: 'catalog',
    public: false,
    writes: false,
    parameters: [],
    responses: { 200: { description: 'the statistics', json: { name: 'Statistics', schema: statisticsSchema } } },
    async handle({ parts }) {
      return { status: 200, json: await parts.vault.getStatistics() };
    },
  },
  {
    method: 'GET',
    path: '/v1/stats/series',
    operationId: 'getMinuteSeries',
    summary: 'Per-minute series of the last day: replicas stored, bytes, failures, corruptions, repairs',
    description:
      `What /admin draws: per minute, oldest first, over the last ${SERIES_WINDOW_MINUTES} minutes up to the current one. ` +
      'Every process counts into it when it records the event in the catalog (a job that runs twice counts once), so every ' +
      'server answers the same. Minutes older than the window are gone.',
    tag: 'catalog',
    public: false,
    writes: false,
    parameters: [],
    responses: { 200: { description: 'the series', json: { name: 'MinuteSeries', schema: minuteSeriesSchema } } },
    async handle({ parts }) {
      const series = await parts.vault.catalog.minuteSeries(SERIES_WINDOW_MINUTES);
      return { status: 200, json: { start: series.start, step_seconds: series.stepSeconds, series: series.values } };
    },
  },
  {
    method: 'GET',
    path: '/v1/checkpoints',
    operationId: 'listCheckpoints',
    summary: 'Every checkpoint, oldest first',
    description: 'The index of sealed checkpoints (as `chunkvault checkpoint list --json`).',
    tag: 'catalog',
    public: false,
    writes: false,
    parameters: [],
    responses: { 200: { description: 'the checkpoints', json: { name: 'CheckpointList', schema: checkpointListSchema } } },
    async handle({ parts }) {
      return { status: 200, json: { checkpoints: await parts.vault.checkpoints.list() } };
    },
  },
  {
    method: 'GET',
    path: '/v1/checkpoints/:id',
    operationId: 'getCheckpoint',
    summary: 'The manifest of a checkpoint, its own checksum verified',
    description: 'As `chunkvault checkpoint show <id>`: every chunk of the interval and where its replicas were.',
    tag: 'catalog',
    public: false,
    writes: false,
    parameters: [idParameter('the checkpoint id, e.g. cp-00000001')],
    responses: {
      200: { description: 'the manifest', json: { name: 'CheckpointManifest', schema: checkpointManifestSchema } },
      400: error('the id is not a valid id'),
      404: error('no such checkpoint'),
      409: error('the stored manifest fails its own checksum or the one the index records (`corrupt`)'),
    },
    async handle({ request, parts }) {
      return { status: 200, json: await parts.vault.checkpoints.manifest(pathId(request)) };
    },
  },
  {
    method: 'GET',
    path: '/healthz',
    operationId: 'health',
    summary: 'Liveness: the process is up',
    description: 'Answers without touching Redis or a backend. No credentials needed.',
    tag: 'health',
    public: true,
    writes: false,
    parameters: [],
    responses: { 200: { description: 'up', json: { name: 'Health', schema: healthSchema } } },
    async handle() {
      return { status: 200, json: { status: 'ok' } };
    },
  },
  {
    method: 'GET',
    path: '/readyz',
    operationId: 'readiness',
    summary: 'Readiness: Redis answers PING and every configured backend answers its probe',
    description:
      'One check per dependency (`redis`, `backend:<name>`), each bounded to a few seconds. 503 names the failing ones. ' +
      'No credentials needed; no secret appears in the answer.',
    tag: 'health',
    public: true,
    writes: false,
    parameters: [],
    responses: {
      200: { description: 'ready', json: { name: 'Ready', schema: readySchema } },
      503: { description: 'a dependency is unavailable: `checks` says which and why', json: { name: 'NotReady', schema: notReadySchema } },
    },
    async handle({ parts }) {
      const checks = await checkReadiness(parts.vault);
      const failed = checks.filter((c) => !c.ok);
      if (failed.length === 0) return { status: 200, json: { status: 'ready', checks } };
      const message = `not ready: ${failed.map((c) => `${c.name} (${c.error})`).join('; ')}`;
      return { status: 503, json: { error: 'not_ready', message, checks } };
    },
  },
  {
    method: 'GET',
    path: '/openapi.json',
    operationId: 'openApiDocument',
    summary: 'This document',
    description: 'The OpenAPI 3.1 document of the API (also committed as docs/openapi.json).',
    tag: 'meta',
    public: false,
    writes: false,
    parameters: [],
    responses: { 200: { description: 'the document', json: { name: 'OpenApiDocument', schema: openApiDocumentSchema } } },
    async handle({ document }) {
      return { status: 200, json: document() };
    },
  },
];
