/**
 * The HTTP API for coordinators, against a real vault (real Redis, real disk, workers running)
 * and a real server on a free port, with real fetch. Every answer is checked against the
 * OpenAPI document the code generates (status documented, body valid per its schema), and the
 * last test fails unless every documented answer of every route was seen here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance } from 'fastify';
import { FlowProducer } from 'bullmq';
import { Redis } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { buildHttpServer, type HttpServerOptions } from '../src/http/server.js';
import { buildOpenApiDocument } from '../src/http/openapi.js';
import { PUBLISHED_SCHEMAS, serializeSchema } from '../src/http/published-schemas.js';
import { buildJobSchemaDocument } from '../src/jobs/job-schema.document.js';
import type { ReplicaRecord } from '../src/domain/types.js';
import { makeTestEnv, openVault, REDIS_URL, REPO_ROOT, waitFor, type TestEnv } from './support/harness.js';

type Json = Record<string, any>;
interface Answer {
  status: number;
  headers: Headers;
  json: Json;
  bytes: Buffer;
}

const document = buildOpenApiDocument() as Json;
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(document, 'openapi');

/** Documented answers seen so far: "GET /v1/chunks/{id} 404". */
const seen = new Set<string>();

const pointer = (...segments: string[]): string => segments.map((s) => s.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');

/** Asserts the answer is documented for the route and matches the document; records it as seen. */
function expectDocumented(method: string, route: string, answer: Answer): void {
  const operation = document.paths[route]?.[method.toLowerCase()];
  expect(operation, `${method} ${route} is documented`).toBeDefined();
  const response = operation.responses[String(answer.status)];
  expect(response, `${method} ${route} answer ${answer.status} is documented (body: ${answer.bytes.toString('utf8').slice(0, 300)})`).toBeDefined();
  const [contentType] = Object.keys(response.content ?? {});
  if (contentType) expect(answer.headers.get('content-type')).toContain(contentType);
  if (contentType === 'application/json') {
    const validate = ajv.getSchema(`openapi#/${pointer('paths', route, method.toLowerCase(), 'responses', String(answer.status), 'content', 'application/json', 'schema')}`)!;
    expect(validate(answer.json), `${method} ${route} ${answer.status} body matches its schema: ${ajv.errorsText(validate.errors)}`).toBe(true);
  }
  for (const [name, header] of Object.entries<Json>(response.headers ?? {})) {
    const value = answer.headers.get(name);
    if (header.required) expect(value, `header ${name}`).not.toBeNull();
    if (value !== null) expect(ajv.validate(header.schema, value), `header ${name}: ${value}`).toBe(true);
  }
  seen.add(`${method} ${route} ${answer.status}`);
}

/** One real request; `route` is the documented path template the URL is an instance of. */
async function call(base: string, method: string, route: string, url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(`${base}${url}`, { method, ...init });
  const bytes = Buffer.from(await response.arrayBuffer());
  const isJson = (response.headers.get('content-type') ?? '').includes('application/json');
  const answer = { status: response.status, headers: response.headers, bytes, json: isJson ? (JSON.parse(bytes.toString('utf8')) as Json) : {} };
  expectDocumented(method, route, answer);
  return answer;
}

interface Served {
  vault: Chunkvault;
  app: FastifyInstance;
  base: string;
}

/** A server on a free loopback port; credentials only when given (never from the test's environment). */
async function serve(vault: Chunkvault, options: HttpServerOptions = {}): Promise<Served> {
  const app = await buildHttpServer(vault, { auth: undefined, ...options });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  return { vault, app, base };
}

const md5 = (bytes: Uint8Array): string => createHash('md5').update(bytes).digest('hex');

function storeRequest(chunkId: string, bytes: Uint8Array, replicas: unknown, extra: Record<string, string> = {}): RequestInit {
  return {
    headers: {
      'content-type': 'application/octet-stream',
      'chunkvault-chunk-id': chunkId,
      'chunkvault-replicas': typeof replicas === 'string' ? replicas : JSON.stringify(replicas),
      ...extra,
    },
    body: bytes,
  };
}

const placements = (chunkId: string, n = 2) => Array.from({ length: n }, (_, i) => ({ replicaId: `${chunkId}_r${i}`, targetNode: `node-${i + 1}`, cloudProvider: 'aws' }));

async function waitStored(served: Served, chunkId: string): Promise<ReplicaRecord[]> {
  return waitFor(`replicas of ${chunkId} stored`, async () => {
    const answer = await call(served.base, 'GET', '/v1/chunks/{id}/replicas', `/v1/chunks/${chunkId}/replicas`);
    // A chunk queued without the producer (foreign flow) is unknown until its first replica is recorded.
    if (answer.status === 404) return undefined;
    const replicas = answer.json.replicas as ReplicaRecord[];
    return replicas.length > 0 && replicas.every((r) => r.status === 'stored') ? replicas : undefined;
  });
}

describe('HTTP API (real vault, workers, server)', () => {
  let env: TestEnv;
  let served: Served;

  beforeAll(async () => {
    // 10 KiB body limit, so the 413 needs no big upload.
    env = await makeTestEnv({ chunkvault: { http: { max_body_mb: 0.01 } } });
    const vault = await openVault(env);
    await vault.startWorkers();
    served = await serve(vault);
  });

  afterAll(async () => {
    await served?.app.close();
    await served?.vault.close();
    await env?.cleanup();
  });

  it('stores a chunk posted as bytes and gives the same bytes back, with their checksum', async () => {
    const bytes = randomBytes(6000);
    const posted = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('http_chunk_1', bytes, placements('http_chunk_1'), {
      'chunkvault-task-id': 'task_1', 'chunkvault-checksum': `md5:${md5(bytes)}`,
    }));
    expect(posted.status).toBe(202);
    expect(posted.json).toMatchObject({ chunkId: 'http_chunk_1', taskId: 'task_1', checksum: md5(bytes), algorithm: 'md5', sizeBytes: 6000, queue: 'replicas' });
    expect(posted.json.replicas.map((r: Json) => r.jobId)).toEqual(['http_chunk_1_r0@http_chunk_1', 'http_chunk_1_r1@http_chunk_1']);

    const replicas = await waitStored(served, 'http_chunk_1');
    expect(replicas.map((r) => [r.replicaId, r.targetNode, r.taskId, r.checksum])).toEqual([
      ['http_chunk_1_r0', 'node-1', 'task_1', md5(bytes)],
      ['http_chunk_1_r1', 'node-2', 'task_1', md5(bytes)],
    ]);

    const got = await call(served.base, 'GET', '/v1/chunks/{id}', '/v1/chunks/http_chunk_1');
    expect(got.status).toBe(200);
    expect(got.bytes.equals(bytes)).toBe(true);
    expect(got.headers.get('chunkvault-checksum')).toBe(`md5:${md5(bytes)}`);

    // The same chunk again: nothing queued anew, the replicas are reported stored.
    const again = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('http_chunk_1', bytes, placements('http_chunk_1'), { 'chunkvault-task-id': 'task_1' }));
    expect(again.status).toBe(202);
    expect(again.json.replicas.map((r: Json) => r.status)).toEqual(['stored', 'stored']);
  });

  it('refuses a bad request with every problem listed, and stores nothing of it', async () => {
    const bad = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('never_stored', Buffer.from('abc'), [
      { replicaId: 'dup', targetNode: 'node/1', cloudProvider: 'aws' },
      { replicaId: 'dup', targetNode: 'node-2', cloudProvider: '..' },
    ], { 'chunkvault-task-id': '../escape', 'chunkvault-checksum': `md5:${'0'.repeat(32)}` }));
    expect(bad.status).toBe(400);
    expect(bad.json.error).toBe('bad_request');
    const fields = bad.json.problems.map((p: Json) => p.field);
    expect(fields).toEqual(expect.arrayContaining([
      'chunkvault-task-id', 'chunkvault-replicas[0].targetNode', 'chunkvault-replicas[1].replicaId', 'chunkvault-replicas[1].cloudProvider', 'chunkvault-checksum',
    ]));
    expect(bad.json.problems.find((p: Json) => p.field === 'chunkvault-replicas[1].replicaId').message).toContain('appears twice');
    expect(await served.vault.catalog.getChunk('never_stored')).toBeUndefined();

    const missing = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from('abc') });
    expect(missing.status).toBe(400);
    expect(missing.json.problems).toEqual([
      { field: 'chunkvault-chunk-id', message: 'is required' },
      { field: 'chunkvault-replicas', message: 'is required' },
    ]);

    // A malformed placement does not hide the problems of the others.
    const shapes = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('../evil', Buffer.from('abc'), [
      { replicaId: 'd', targetNode: 'n1', cloudProvider: 'aws' },
      { replicaId: 'x', extra: 1 },
      { replicaId: 'd', targetNode: 'n3', cloudProvider: 'aws' },
      'not an object',
    ]));
    expect(shapes.status).toBe(400);
    const byField = (field: string) => shapes.json.problems.filter((p: Json) => p.field === field).map((p: Json) => p.message);
    expect(byField('chunkvault-replicas[1].targetNode')).toEqual(['is required']);
    expect(byField('chunkvault-replicas[1].cloudProvider')).toEqual(['is required']);
    expect(byField('chunkvault-replicas[1]')).toEqual([expect.stringContaining('extra')]);
    expect(byField('chunkvault-replicas[2].replicaId')).toEqual([expect.stringContaining('appears twice')]);
    expect(byField('chunkvault-replicas[3]')).toEqual(['must be an object {replicaId, targetNode, cloudProvider}']);
    expect(byField('chunkvault-chunk-id')).toContain('must not contain ".."');
    // The chunk id's problems are reported once, not again for every replica.
    expect(shapes.json.problems.filter((p: Json) => p.field.endsWith('.chunkId'))).toEqual([]);

    const none = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('no_replicas', Buffer.from('abc'), []));
    expect(none.json.problems).toEqual([{ field: 'chunkvault-replicas', message: 'must list at least one replica' }]);

    const notJson = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('never_stored', Buffer.from('abc'), '[{'));
    expect(notJson.status).toBe(400);
    expect(notJson.json.problems[0].field).toBe('chunkvault-replicas');
    expect(await served.vault.catalog.getChunk('never_stored')).toBeUndefined();
  });

  it('answers 413 with a JSON error for a body over chunkvault.http.max_body_mb', async () => {
    const tooBig = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('too_big', randomBytes(20_000), placements('too_big')));
    expect(tooBig.status).toBe(413);
    expect(tooBig.json.error).toBe('payload_too_large');
    expect(tooBig.json.message).toContain('chunkvault.http.max_body_mb');
    expect(await served.vault.catalog.getChunk('too_big')).toBeUndefined();
  });

  it('answers 415 for a body that is not application/octet-stream', async () => {
    const json = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', {
      headers: { 'content-type': 'application/json', 'chunkvault-chunk-id': 'as_json', 'chunkvault-replicas': JSON.stringify(placements('as_json')) },
      body: JSON.stringify({ bytes: 'abc' }),
    });
    expect(json.status).toBe(415);
    expect(json.json.error).toBe('unsupported_media_type');
  });

  it('answers 409 conflict for a chunk id already stored with other bytes', async () => {
    const conflict = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('http_chunk_1', Buffer.from('other bytes'), placements('http_chunk_1')));
    expect(conflict.status).toBe(409);
    expect(conflict.json.error).toBe('conflict');
    expect(conflict.json.message).toContain('http_chunk_1');
  });

  it('answers 404 for unknown chunks, checkpoints and routes, and 400 for ids that are not ids', async () => {
    for (const [route, url] of [
      ['/v1/chunks/{id}', '/v1/chunks/no_such_chunk'],
      ['/v1/chunks/{id}/replicas', '/v1/chunks/no_such_chunk/replicas'],
      ['/v1/checkpoints/{id}', '/v1/checkpoints/cp-99999999'],
    ] as const) {
      const answer = await call(served.base, 'GET', route, url);
      expect(answer.status, url).toBe(404);
      expect(answer.json.error).toBe('not_found');
    }
    for (const [route, url] of [
      ['/v1/chunks/{id}', '/v1/chunks/a..b'],
      ['/v1/chunks/{id}/replicas', '/v1/chunks/_hidden/replicas'],
      ['/v1/checkpoints/{id}', '/v1/checkpoints/cp%3A1'],
    ] as const) {
      const answer = await call(served.base, 'GET', route, url);
      expect(answer.status, url).toBe(400);
      expect(answer.json.problems[0].field).toBe('id');
    }
    const unknown = await fetch(`${served.base}/v1/nothing-here`);
    expect(unknown.status).toBe(404);
    expect(ajv.validate(document.components.schemas.Error, await unknown.json())).toBe(true);
  });

  it('answers 409 corrupt when every replica of a chunk is damaged on disk', async () => {
    const bytes = randomBytes(3000);
    expect((await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('rotten', bytes, placements('rotten')))).status).toBe(202);
    const replicas = await waitStored(served, 'rotten');
    for (const replica of replicas) await writeFile(path.join(env.basePath, replica.path), randomBytes(3000));

    const answer = await call(served.base, 'GET', '/v1/chunks/{id}', '/v1/chunks/rotten');
    expect(answer.status).toBe(409);
    expect(answer.json.error).toBe('corrupt');
    expect(answer.json.message).toContain('rotten_r0');
    expect(answer.json.message).toContain('rotten_r1');
  });

  it('serves the statistics', async () => {
    const answer = await call(served.base, 'GET', '/v1/stats', '/v1/stats');
    expect(answer.status).toBe(200);
    const stats = await served.vault.getStatistics();
    expect(answer.json.total_chunks).toBe(stats.total_chunks);
    // http_chunk_1's two replicas; rotten's two were found corrupt.
    expect(answer.json.successful_stores).toBe(2);
    expect(answer.json.corrupt_replicas).toBe(2);
    expect(Object.keys(answer.json.backend_stats)).toEqual(['local']);
  });

  it('serves the per-minute series the statistics counters agree with', async () => {
    const answer = await call(served.base, 'GET', '/v1/stats/series', '/v1/stats/series');
    expect(answer.status).toBe(200);
    const stats = await served.vault.getStatistics();
    const { series } = answer.json as { series: Record<string, number[]> };
    const total = (field: string) => series[field]!.reduce((sum, n) => sum + n, 0);
    expect(series.replicas_stored).toHaveLength(24 * 60);
    // A day back from the current minute.
    expect(Date.now() - Date.parse(answer.json.start)).toBeGreaterThanOrEqual((24 * 60 - 1) * 60_000);
    expect(Date.now() - Date.parse(answer.json.start)).toBeLessThan(24 * 60 * 60_000);
    // Every replica ever stored (repairs included), though each one found corrupt (rotten's two) has left the stored counter since.
    expect(total('replicas_stored')).toBe(stats.successful_stores + stats.corruptions_found);
    expect(total('corruptions_found')).toBe(2);
    expect(total('corruptions_found')).toBe(stats.corruptions_found);
    expect(total('bytes_stored')).toBeGreaterThan(0);
  });

  it('lists checkpoints and shows a manifest', async () => {
    const sealed = await served.vault.checkpoints.sealNow();
    expect(sealed.length).toBeGreaterThan(0);
    const list = await call(served.base, 'GET', '/v1/checkpoints', '/v1/checkpoints');
    expect(list.status).toBe(200);
    expect(list.json.checkpoints.map((c: Json) => c.id)).toEqual((await served.vault.checkpoints.list()).map((c) => c.id));

    const id = list.json.checkpoints[0].id as string;
    const shown = await call(served.base, 'GET', '/v1/checkpoints/{id}', `/v1/checkpoints/${id}`);
    expect(shown.status).toBe(200);
    expect(shown.json.id).toBe(id);
    expect(shown.json.chunks.map((c: Json) => c.chunkId)).toContain('http_chunk_1');

    // A manifest damaged on disk is `corrupt` (409), saying which check it failed, not a 500.
    const entry = (await served.vault.checkpoints.list())[0]!;
    const file = path.join(env.basePath, entry.key);
    const original = await readFile(file);
    await writeFile(file, original.toString('utf8').replace(/"chunkCount":(\d+)/, (_m, n: string) => `"chunkCount":${Number(n) + 1}`));
    try {
      const damaged = await call(served.base, 'GET', '/v1/checkpoints/{id}', `/v1/checkpoints/${id}`);
      expect(damaged.status).toBe(409);
      expect(damaged.json.error).toBe('corrupt');
      expect(damaged.json.message).toMatch(new RegExp(`^checkpoint ${id}: manifest checksum is [0-9a-f]{64}, it records`));
    } finally {
      await writeFile(file, original);
    }
  });

  it('answers the health probes', async () => {
    const health = await call(served.base, 'GET', '/healthz', '/healthz');
    expect(health.json).toEqual({ status: 'ok' });
    const ready = await call(served.base, 'GET', '/readyz', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json.checks).toEqual([{ name: 'redis', ok: true }, { name: 'backend:local', ok: true }]);
  });

  it('serves its OpenAPI document, which is the one committed in docs/', async () => {
    const answer = await call(served.base, 'GET', '/openapi.json', '/openapi.json');
    expect(answer.json).toEqual(document);
    const committed = await readFile(path.join(REPO_ROOT, PUBLISHED_SCHEMAS.openapi), 'utf8');
    expect(committed, 'docs/openapi.json is stale: run `npm run schemas`').toBe(serializeSchema(buildOpenApiDocument()));
  });

  it('refuses writes with 403 when read-only, and still serves reads', async () => {
    const readOnly = await serve(served.vault, { readOnly: true });
    try {
      const refused = await call(readOnly.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('read_only_chunk', Buffer.from('abc'), placements('read_only_chunk')));
      expect(refused.status).toBe(403);
      expect(refused.json.error).toBe('read_only');
      expect(await served.vault.catalog.getChunk('read_only_chunk')).toBeUndefined();
      expect((await call(readOnly.base, 'GET', '/v1/chunks/{id}', '/v1/chunks/http_chunk_1')).status).toBe(200);
    } finally {
      await readOnly.app.close();
    }
  });

  it('asks for credentials on every route but the health probes when they are configured', async () => {
    const guarded = await serve(served.vault, { auth: { kind: 'bearer', token: 'the-right-token' } });
    try {
      for (const [route, methods] of Object.entries<Json>(document.paths)) {
        for (const method of Object.keys(methods)) {
          const url = route.replace('{id}', 'http_chunk_1');
          const init = method === 'post' ? storeRequest('guarded', Buffer.from('abc'), placements('guarded')) : {};
          if (methods[method].security?.length === 0) {
            expect((await call(guarded.base, method.toUpperCase(), route, url)).status, `${route} is public`).toBe(200);
            continue;
          }
          const none = await call(guarded.base, method.toUpperCase(), route, url, init);
          expect(none.status, `${method} ${route} without a token`).toBe(401);
          expect(none.json.error).toBe('unauthorized');
          const wrong = await call(guarded.base, method.toUpperCase(), route, url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: 'Bearer the-wrong-token' } });
          expect(wrong.status, `${method} ${route} with a wrong token`).toBe(401);
        }
      }
      const right = await call(guarded.base, 'GET', '/v1/stats', '/v1/stats', { headers: { authorization: 'Bearer the-right-token' } });
      expect(right.status).toBe(200);
      expect(await served.vault.catalog.getChunk('guarded')).toBeUndefined();
    } finally {
      await guarded.app.close();
    }
  });
});

describe('readiness with a backend that cannot be used', () => {
  it('answers 503 naming the backend when the local base_path is a file', async () => {
    const env = await makeTestEnv();
    const notADirectory = path.join(env.dir, 'not-a-directory');
    await writeFile(notADirectory, 'a file where the data directory should be');
    const broken = await makeTestEnv({ storage: { backends: { local: { base_path: path.join(notADirectory, 'data') } } } });
    const vault = await openVault(broken);
    const served = await serve(vault);
    try {
      const ready = await call(served.base, 'GET', '/readyz', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.json.error).toBe('not_ready');
      expect(ready.json.checks.find((c: Json) => c.name === 'redis')).toEqual({ name: 'redis', ok: true });
      const backend = ready.json.checks.find((c: Json) => c.name === 'backend:local');
      expect(backend.ok).toBe(false);
      expect(backend.error).toContain('not-a-directory');
      expect(ready.json.message).toContain('backend:local');
      // Liveness does not depend on the backend.
      expect((await call(served.base, 'GET', '/healthz', '/healthz')).status).toBe(200);
    } finally {
      await served.app.close();
      await vault.close();
      await broken.cleanup();
      await env.cleanup();
    }
  });
});

describe('POST /v1/chunks and the backend routing', () => {
  it('refuses a replica whose cloud provider routes to no configured backend, as the producer does', async () => {
    // Cloud storage on with only a GCS block (never contacted here): "local" and "gcp" route, "aws" does not.
    const env = await makeTestEnv({ storage: { backends: { cloud: { enabled: true, gcp_gcs: { bucket: 'never-contacted', endpoint: 'http://127.0.0.1:9' } } } } });
    const vault = await openVault(env);
    const served = await serve(vault);
    try {
      const answer = await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('routed', Buffer.from('abc'), [
        { replicaId: 'routed_r0', targetNode: 'node-1', cloudProvider: 'local' },
        { replicaId: 'routed_r1', targetNode: 'node-2', cloudProvider: 'aws' },
        { replicaId: 'routed_r2', targetNode: 'node-3', cloudProvider: 'ibm' },
        { replicaId: 'routed_r3', targetNode: 'node-4', cloudProvider: 'gcp' },
      ]));
      expect(answer.status).toBe(400);
      expect(answer.json.problems).toEqual([
        { field: 'chunkvault-replicas[1].cloudProvider', message: expect.stringContaining('storage.backends.cloud.aws_s3 is not configured') },
        { field: 'chunkvault-replicas[2].cloudProvider', message: expect.stringContaining('unknown cloud provider "ibm"') },
      ]);
      // All or nothing: not even the routable replica was queued.
      expect(await vault.catalog.getChunk('routed')).toBeUndefined();

      // Nothing listens where the GCS block points: readiness says so, for that backend only.
      const ready = await call(served.base, 'GET', '/readyz', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.json.checks.map((c: Json) => [c.name, c.ok])).toEqual([['redis', true], ['backend:local', true], ['backend:gcp_gcs', false]]);
      expect(ready.json.message).toContain('backend:gcp_gcs');
    } finally {
      await served.app.close();
      await vault.close();
      await env.cleanup();
    }
  });
});

describe('the OpenAPI document', () => {
  it('was exercised here for every documented answer of every route', () => {
    const documented: string[] = [];
    for (const [route, methods] of Object.entries<Json>(document.paths)) {
      for (const [method, operation] of Object.entries<Json>(methods)) {
        for (const status of Object.keys(operation.responses)) if (status !== 'default') documented.push(`${method.toUpperCase()} ${route} ${status}`);
      }
    }
    expect(documented.filter((answer) => !seen.has(answer))).toEqual([]);
  });
});

describe('the published BullMQ job schema (docs/job-schema.json)', () => {
  let env: TestEnv;
  let served: Served;
  const jobs = buildJobSchemaDocument() as Json;
  const jobAjv = new Ajv2020({ strict: false, allErrors: true });
  jobAjv.addSchema(jobs, 'jobs');
  const validator = (ref: string) => jobAjv.getSchema(`jobs#${ref}`)!;

  beforeAll(async () => {
    env = await makeTestEnv();
    const vault = await openVault(env);
    await vault.startWorkers();
    served = await serve(vault);
  });

  afterAll(async () => {
    await served?.app.close();
    await served?.vault.close();
    await env?.cleanup();
  });

  it('is the one committed in docs/', async () => {
    const committed = await readFile(path.join(REPO_ROOT, PUBLISHED_SCHEMAS.jobs), 'utf8');
    expect(committed, 'docs/job-schema.json is stale: run `npm run schemas`').toBe(serializeSchema(buildJobSchemaDocument()));
    expect(Object.keys(jobs.queues)).toEqual(['replicas', 'chunks', 'maintenance']);
    expect(jobs.keyPrefix.default).toBe('{chunkvault}');
  });

  it('accepts the jobs and options our producer queues, and refuses data the workers would refuse', async () => {
    const bytes = randomBytes(2000);
    expect((await call(served.base, 'POST', '/v1/chunks', '/v1/chunks', storeRequest('schema_chunk', bytes, placements('schema_chunk')))).status).toBe(202);
    await waitStored(served, 'schema_chunk');
    const child = (await served.vault.queue('replicas').getJob('schema_chunk_r0@schema_chunk'))!;
    // chunkvault's own producer queues replica writes without a parent (the catalog ends the chunk).
    expect(child.parent).toBeUndefined();
    for (const job of [child]) {
      const asJob = validator('');
      expect(asJob({ name: job.name, data: job.data }), `${job.name} data: ${jobAjv.errorsText(asJob.errors)}`).toBe(true);
      const options = validator(`/$defs/${job.name}.options`);
      const given = Object.fromEntries(Object.keys(jobs.$defs[`${job.name}.options`].properties).map((k) => [k, (job.opts as Json)[k] ?? (k === 'jobId' ? job.id : undefined)]));
      expect(options(given), `${job.name} options ${JSON.stringify(given)}: ${jobAjv.errorsText(options.errors)}`).toBe(true);
    }
    const asJob = validator('');
    expect(asJob({ name: 'replica.write', data: { ...child.data, chunkId: '../escape' } })).toBe(false);
    expect(asJob({ name: 'replica.write', data: { ...child.data, chunkData: 'bytes never travel in jobs' } })).toBe(false);
    expect(asJob({ name: 'no.such.job', data: {} })).toBe(false);
  });

  it('is enough for a foreign producer: a flow built from the document alone gets stored', async () => {
    // What a coordinator in another language does with its own BullMQ client, step by step.
    const bytes = randomBytes(5000);
    const chunkId = 'foreign_chunk';
    const checksum = md5(bytes);
    const replicaJobIds = ['foreign_r0', 'foreign_r1'].map((replicaId) => `${replicaId}@${chunkId}`);
    const flowTag = createHash('sha256').update(`${checksum}\u0000${replicaJobIds.join('\u0000')}`).digest('hex').slice(0, 16);
    const stagedKey = `${chunkId}@${flowTag}`;
    await mkdir(env.stagingDir, { recursive: true });
    await writeFile(path.join(env.stagingDir, `${stagedKey}.tmp`), bytes);
    await rename(path.join(env.stagingDir, `${stagedKey}.tmp`), path.join(env.stagingDir, stagedKey));

    const prefix = (jobs.keyPrefix.rule as string).replace('<chunkvault.redis.prefix>', env.prefix);
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const flows = new FlowProducer({ connection, prefix });
    const retry = { attempts: 3, backoff: { type: 'exponential', delay: 50 }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } };
    const flow = {
      name: 'chunk.finalize',
      queueName: jobs.jobs['chunk.finalize'].queue as string,
      data: { chunkId, stagedKey, replicas: [{ replicaId: 'foreign_r0', generation: 0 }, { replicaId: 'foreign_r1', generation: 0 }] },
      opts: { jobId: `chunk@${chunkId}#${flowTag}`, ...retry },
      children: ['foreign_r0', 'foreign_r1'].map((replicaId, i) => ({
        name: 'replica.write',
        queueName: jobs.jobs['replica.write'].queue as string,
        data: {
          chunkId, replicaId, taskId: 'foreign_task', targetNode: `node-${i}`, cloudProvider: 'gcp', checksum, algorithm: 'md5',
          sizeBytes: bytes.byteLength, stagedKey, createdAtMs: Date.now(),
        },
        opts: { jobId: replicaJobIds[i]!, ...retry, ignoreDependencyOnFailure: true },
      })),
    };
    // Everything sent is what the document says it must be.
    expect(validator('')({ name: flow.name, data: flow.data })).toBe(true);
    expect(validator('/$defs/chunk.finalize.options')(flow.opts)).toBe(true);
    for (const c of flow.children) {
      expect(validator('')({ name: c.name, data: c.data })).toBe(true);
      expect(validator('/$defs/replica.write.options')(c.opts)).toBe(true);
    }
    try {
      await flows.add(flow);
    } finally {
      await flows.close();
      connection.disconnect();
    }
    await waitStored(served, chunkId);
    const got = await call(served.base, 'GET', '/v1/chunks/{id}', `/v1/chunks/${chunkId}`);
    expect(got.bytes.equals(bytes)).toBe(true);
    // The parent freed the staged bytes once both replicas ended.
    await waitFor('staged bytes freed', async () => !(await readdir(env.stagingDir)).includes(stagedKey));
  });
});
