/**
 * POST /v1/chunks: turns the request (bytes in the body, ids and placements in headers) into
 * the distribution task `ChunkProducer.store` takes, and checks it with the producer's own
 * rules (its task schema and the backend routing) before anything is stored. Every problem
 * is reported at once, named after the header it is in.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { DistributionTask, ChecksumAlgorithm } from '../domain/types.js';
import { checksumOf } from '../integrity/checksum.js';
import { distributionTaskSchema } from '../producer/task-schema.js';
import { checksumHeaderSchema, replicaPlacementSchema, replicaPlacementsSchema, type Problem } from './api-schemas.js';

/** Request headers of POST /v1/chunks. */
export const UPLOAD_HEADERS = {
  chunkId: 'chunkvault-chunk-id',
  taskId: 'chunkvault-task-id',
  replicas: 'chunkvault-replicas',
  checksum: 'chunkvault-checksum',
} as const;

/** A placement from the header, with its index there (problems name that index). */
interface Placement {
  index: number;
  replicaId: string;
  targetNode: string;
  cloudProvider: string;
}

export type UploadCheck = { task: DistributionTask; problems?: undefined } | { task?: undefined; problems: Problem[] };

/**
 * The task of an upload, or every problem with it. `body` is the raw request body (a Buffer
 * when the content type was application/octet-stream).
 */
export async function checkUpload(headers: IncomingHttpHeaders, body: unknown, backends: BackendRegistry): Promise<UploadCheck> {
  const problems: Problem[] = [];
  const chunkId = single(headers, UPLOAD_HEADERS.chunkId, problems, true);
  const taskIdHeader = single(headers, UPLOAD_HEADERS.taskId, problems, false);
  const taskId = taskIdHeader ?? chunkId;
  const placements = parsePlacements(single(headers, UPLOAD_HEADERS.replicas, problems, true), problems);
  const chunkData = body === undefined || body === null ? Buffer.alloc(0) : body;

  const task: DistributionTask = {
    taskId: taskId ?? '',
    chunkId: chunkId ?? '',
    chunkData: chunkData as Uint8Array,
    status: 'completed',
    replicas: (placements ?? []).map(({ replicaId, targetNode, cloudProvider }) => ({ replicaId, targetNode, cloudProvider, chunkId: chunkId ?? '', status: 'completed' })),
  };
  // The producer's rules, applied to the task the producer will get. A missing header is
  // reported once, above; a task id that defaults to the chunk id shares its problems.
  const parsed = distributionTaskSchema.safeParse(task);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      // The task holds the well-formed placements only: name each by its index in the header.
      const [head, at, ...rest] = issue.path;
      // Over HTTP a replica's chunk id is the chunk's: its problems are the chunk id's, reported once.
      if (head === 'replicas' && rest[0] === 'chunkId') continue;
      const field = fieldOf(head === 'replicas' && typeof at === 'number' ? ['replicas', placements![at]!.index, ...rest] : issue.path);
      if ((field === UPLOAD_HEADERS.chunkId && chunkId === undefined) || (field === UPLOAD_HEADERS.taskId && taskIdHeader === undefined)) continue;
      problems.push({ field, message: issue.message });
    }
  }
  for (const placement of placements ?? []) {
    const route = backends.routeOf(placement.cloudProvider);
    if ('problem' in route) problems.push({ field: `${UPLOAD_HEADERS.replicas}[${placement.index}].cloudProvider`, message: route.problem });
  }
  const announced = single(headers, UPLOAD_HEADERS.checksum, problems, false);
  if (announced !== undefined && chunkData instanceof Uint8Array) {
    const problem = await checksumProblem(announced, chunkData);
    if (problem) problems.push({ field: UPLOAD_HEADERS.checksum, message: problem });
  }
  return problems.length ? { problems } : { task };
}

/** `chunkvault-checksum` value of a digest. */
export function checksumHeader(algorithm: ChecksumAlgorithm, checksum: string): string {
  return `${algorithm}:${checksum}`;
}

async function checksumProblem(announced: string, bytes: Uint8Array): Promise<string | undefined> {
  const form = checksumHeaderSchema.safeParse(announced);
  if (!form.success) return form.error.issues[0]!.message;
  const [algorithm, expected] = announced.split(':') as [ChecksumAlgorithm, string];
  const actual = await checksumOf(bytes, algorithm);
  return actual === expected ? undefined : `the body's ${algorithm} is ${actual}, the header says ${expected} (bytes damaged on the way?)`;
}

function single(headers: IncomingHttpHeaders, name: string, problems: Problem[], required: boolean): string | undefined {
  const value = headers[name];
  if (Array.isArray(value)) {
    problems.push({ field: name, message: 'must be given once' });
    return undefined;
  }
  if (value === undefined || value === '') {
    if (required) problems.push({ field: name, message: 'is required' });
    return undefined;
  }
  return value;
}

/**
 * The placements in the header, each with its index there. Elements of the wrong shape are
 * reported and left out; the others still go through the producer's checks, so one request
 * reports every problem (a duplicate id next to a missing field, say).
 */
function parsePlacements(raw: string | undefined, problems: Problem[]): Placement[] | undefined {
  if (raw === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    problems.push({ field: UPLOAD_HEADERS.replicas, message: `must be a JSON array of {replicaId, targetNode, cloudProvider}: ${(error as Error).message}` });
    return undefined;
  }
  const list = replicaPlacementsSchema.safeParse(json);
  if (!list.success && !Array.isArray(json)) {
    for (const issue of list.error.issues) problems.push({ field: fieldOf(['replicas', ...issue.path]), message: issue.message });
    return undefined;
  }
  if (!list.success && (json as unknown[]).length === 0) {
    problems.push({ field: UPLOAD_HEADERS.replicas, message: 'must list at least one replica' });
    return undefined;
  }
  const placements: Placement[] = [];
  for (const [index, element] of (json as unknown[]).entries()) {
    const parsed = replicaPlacementSchema.safeParse(element);
    if (parsed.success) placements.push({ index, ...parsed.data });
    else for (const issue of parsed.error.issues) problems.push({ field: fieldOf(['replicas', index, ...issue.path]), message: issue.message });
  }
  return placements;
}

/** A task field's path as the request names it: `chunkvault-replicas[1].replicaId`, `body`. */
function fieldOf(path: ReadonlyArray<PropertyKey>): string {
  const [head, index, ...rest] = path;
  switch (head) {
    case 'chunkId':
      return UPLOAD_HEADERS.chunkId;
    case 'taskId':
      return UPLOAD_HEADERS.taskId;
    case 'chunkData':
      return 'body';
    case 'replicas':
      return `${UPLOAD_HEADERS.replicas}${index === undefined ? '' : `[${String(index)}]`}${rest.map((p) => `.${String(p)}`).join('')}`;
    default:
      return path.map(String).join('.') || 'request';
  }
}
