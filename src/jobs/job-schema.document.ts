/**
 * The published contract of chunkvault's BullMQ jobs (docs/job-schema.json, `npm run
 * schemas`): queue names, job names, the JSON Schema of each job's data (generated from the
 * zod schemas the workers validate with, so they cannot drift), the Redis key prefix, and
 * the job ids and options a producer outside this code base (another language, its own
 * BullMQ client) must use to enqueue work the workers accept.
 *
 * The document is itself a JSON Schema: its root validates `{ name, data }` of a job.
 */
import { z } from 'zod';
import { configSchema } from '../config/config.schema.js';
import { ID_PATTERN, MAX_ID_LENGTH } from '../domain/ids.js';
import { JOBS, QUEUE_NAMES, type JobName } from './job-table.js';
import { replicaQueueName } from './replica-queues.js';
import { MAINTENANCE_TASKS } from '../domain/types.js';

type JsonObject = Record<string, unknown>;

const DEFAULTS = configSchema.parse({}).chunkvault;
const ID = ID_PATTERN.source.slice(1, -1);
const HEX16 = '[0-9a-f]{16}';

/** Job ids, as the producer builds them (job-table.ts, producer/chunk-producer.ts, reads/repair-scheduler.ts). */
export const JOB_ID_PATTERNS: Record<Exclude<JobName, 'maintenance.run'>, string> = {
  'replica.write': `^${ID}@${ID}(#[1-9][0-9]*)?$`,
  'chunk.finalize': `^chunk@${ID}#${HEX16}$`,
  'replica.repair': `^${ID}@${ID}#repair-[0-9]+$`,
};

const keep = {
  removeOnComplete: z.object({ age: z.number().int().nonnegative().describe(`chunkvault.jobs.keep_completed_seconds (default ${DEFAULTS.jobs.keep_completed_seconds})`) }).strict(),
  removeOnFail: z.object({ age: z.number().int().nonnegative().describe(`chunkvault.jobs.keep_failed_seconds (default ${DEFAULTS.jobs.keep_failed_seconds})`) }).strict(),
};
const retried = {
  attempts: z.number().int().min(1).max(100).describe(`chunkvault.retry.attempts (default ${DEFAULTS.retry.attempts}): total tries, the first included`),
  backoff: z
    .object({ type: z.literal('exponential'), delay: z.number().int().nonnegative().describe(`chunkvault.retry.backoff_ms (default ${DEFAULTS.retry.backoff_ms})`) })
    .strict(),
  ...keep,
};

/** The options chunkvault's own producer and repairs pass; a foreign producer passes the same. */
export const JOB_OPTIONS_SCHEMAS = {
  'replica.write': z
    .object({
      jobId: z.string().regex(new RegExp(JOB_ID_PATTERNS['replica.write'])),
      attempts: retried.attempts,
      backoff: retried.backoff,
      // chunkvault's producer leaves these to the workers, which apply chunkvault.jobs to jobs without them.
      removeOnComplete: keep.removeOnComplete.optional(),
      removeOnFail: keep.removeOnFail.optional(),
      // Inside a flow: the chunk's parent must run when a replica fails for good, to free the staged bytes.
      ignoreDependencyOnFailure: z.literal(true).optional().describe('required when the job is a child of a chunk.finalize flow'),
    })
    .strict(),
  'chunk.finalize': z.object({ jobId: z.string().regex(new RegExp(JOB_ID_PATTERNS['chunk.finalize'])), ...retried }).strict(),
  'replica.repair': z.object({ jobId: z.string().regex(new RegExp(JOB_ID_PATTERNS['replica.repair'])), ...retried }).strict(),
} as const;

function schemaOf(schema: z.ZodType): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12' }) as JsonObject;
  return rest;
}

export function buildJobSchemaDocument(): JsonObject {
  const names = Object.keys(JOBS) as JobName[];
  const defs: Record<string, JsonObject> = {};
  for (const name of names) defs[name] = { title: `data of ${name}`, ...schemaOf(JOBS[name].schema) };
  for (const [name, schema] of Object.entries(JOB_OPTIONS_SCHEMAS)) defs[`${name}.options`] = { title: `job options of ${name}`, ...schemaOf(schema) };

  const jobs: Record<string, JsonObject> = {};
  for (const name of names) {
    jobs[name] = {
      queue: JOBS[name].queue,
      data: { $ref: `#/$defs/${name}` },
      ...(name in JOB_OPTIONS_SCHEMAS ? { options: { $ref: `#/$defs/${name}.options` } } : {}),
      ...JOB_NOTES[name],
    };
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:chunkvault:job-schema',
    title: 'chunkvault BullMQ jobs',
    description:
      'A job on one of chunkvault\'s queues: `name` is the BullMQ job name, `data` its payload. Job data never carries ' +
      'chunk bytes: they are staged once per chunk in the staging area (chunkvault.staging: the directory `dir`, or a prefix ' +
      'of a bucket), which the workers must be able to read. Coordinators that cannot write there use POST /v1/chunks of ' +
      '`chunkvault serve` instead.',
    type: 'object',
    required: ['name', 'data'],
    oneOf: names.map((name) => ({
      properties: { name: { const: name }, data: { $ref: `#/$defs/${name}` } },
    })),
    keyPrefix: {
      description:
        'The BullMQ `prefix` option of every queue, worker and flow producer: the configured chunkvault.redis.prefix inside ' +
        'braces (a Redis Cluster hash tag, so every key of a deployment is in one slot). Keys are <prefix>:<queue>:...',
      rule: '{<chunkvault.redis.prefix>}',
      default: `{${DEFAULTS.redis.prefix}}`,
    },
    queues: Object.fromEntries(
      Object.values(QUEUE_NAMES).map((queue) => [queue, { jobs: names.filter((n) => JOBS[n].queue === queue) }]),
    ),
    perBackendQueues: {
      description:
        'With chunkvault.routing.queue_per_backend: true, chunkvault\'s producer and repairs put each replica job on the ' +
        'queue of the backend it writes to, and `chunkvault worker --backends a,b` serves only those (besides the queues ' +
        'above, which every worker serves). A foreign producer\'s flow keeps its children on `replicas`.',
      rule: replicaQueueName('<backend>'),
      jobs: names.filter((n) => JOBS[n].queue === QUEUE_NAMES.replicas),
    },
    jobs,
    ids: {
      pattern: ID_PATTERN.source,
      maxLength: MAX_ID_LENGTH,
      description: 'chunk, replica, task, node and provider ids: 1-128 letters, digits, "_", "." or "-", starting with a letter or digit, never containing ".."',
    },
    storeAChunk: {
      description:
        'How to store one chunk from another BullMQ client. chunkvault\'s own producer registers the chunk and its replicas ' +
        'in its catalog first and then queues the replica.write jobs alone (the job that ends the chunk frees the staged ' +
        'bytes); a foreign producer cannot write the catalog, so it queues them as the children of a chunk.finalize parent, ' +
        'which frees the staged bytes once every child has ended.',
      steps: [
        'Compute the checksum of the chunk\'s bytes with storage.integrity.checksum_algorithm (md5 by default; lowercase hex).',
        'For each replica, its job id: <replicaId>@<chunkId> (a later retry of a replica that failed for good appends #<generation>, 1, 2, ...).',
        'flowTag = the first 16 hex characters of sha256(checksum + "\\u0000" + the replica job ids joined by "\\u0000").',
        'stagedKey = <chunkId>@<flowTag>. Write the bytes where the workers read them: with chunkvault.staging.backend ' +
          'local, to <chunkvault.staging.dir>/<stagedKey> atomically (a temp file in the same directory, fsync, rename); ' +
          'with a bucket, as the object <the block\'s key_prefix><chunkvault.staging.key_prefix><stagedKey> in one PUT ' +
          'with Content-MD5.',
        'Add ONE BullMQ flow: parent job `chunk.finalize` on queue `chunks` (jobId chunk@<chunkId>#<flowTag>, data ' +
          '{chunkId, stagedKey, replicas: [{replicaId, generation}]}) with one child `replica.write` per replica on queue ' +
          '`replicas` (data per #/$defs/replica.write, options per #/$defs/replica.write.options).',
        'Wait for the outcome in the catalog (GET /v1/chunks/{id}/replicas), not in BullMQ\'s event stream. The parent ' +
          'frees the staged file once every replica job has ended.',
      ],
      idempotence:
        'Job ids are deterministic: adding the same flow twice stores each replica once. A chunk id is immutable: ' +
        'a second chunk with the same id and another checksum fails its replica jobs without retries.',
    },
    $defs: defs,
  };
}

const JOB_NOTES: Record<JobName, JsonObject> = {
  'replica.write': {
    description:
      'Writes one replica from the staged bytes, verifies it and records it in the catalog. Queued alone by chunkvault\'s producer, ' +
      'or as a child of a `chunk.finalize` flow by a foreign producer.',
  },
  'chunk.finalize': { description: 'Parent of a foreign producer\'s replica writes of one chunk: runs once all of them ended; records replicas that ended without a result, frees the staged bytes, seals due checkpoints.' },
  'replica.repair': { description: 'Rewrites a replica a read found bad, from a good one. Queued by chunkvault itself (reads, scrubs, checkpoint verification).' },
  'maintenance.run': {
    description: `One maintenance pass (${MAINTENANCE_TASKS.join(', ')}). Put there by the job scheduler (storage.cleanup.cleanup_schedule) or \`chunkvault scrub\` (data {"tasks": ["scrub"]}); data {} runs every task.`,
  },
};
