/**
 * The HTTP API with hostile requests (Fastify's inject, real vault, real workers): hostile
 * methods, paths, ids, query strings, headers (chunk id, placements, task id, checksum,
 * content type, Host) and bodies. Every answer is below 500; every error answer is the
 * documented JSON body `{ error, message, problems? }`; the server keeps serving (a valid
 * chunk posted afterwards reads back); nothing is written outside the backend root or the
 * staging dir.
 */
import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { Chunkvault } from '../../src/app.js';
import { buildHttpServer } from '../../src/http/server.js';
import { apiErrorSchema } from '../../src/http/api-schemas.js';
import { openVault, waitFor } from '../support/harness.js';
import { builtinsFingerprint, fuzzParameters, hostileString, hostileValue, nearValid, show, timeoutFor } from './support/hostile.js';
import { makeSandbox, type Sandbox } from './support/sandbox.js';

type Headers = Record<string, string>;

/** Routes of the API outside /v1. */
const API_ROOT_PATHS = new Set(['/healthz', '/readyz', '/openapi.json']);
interface HostileRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'OPTIONS' | 'HEAD';
  url: string;
  headers: Headers;
  body: Buffer | string | undefined;
}

const md5 = (bytes: Uint8Array): string => createHash('md5').update(bytes).digest('hex');

/** Percent-encoding of the UTF-8 bytes (encodeURIComponent throws on a lone surrogate). */
const percentEncoded = (s: string): string => [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');

/** A path segment as a client might send it: percent-encoded, raw, or double-encoded. */
const segment = fc.oneof(
  hostileString().map(percentEncoded),
  hostileString().map((s) => s.replaceAll('?', '%3F').replaceAll('#', '%23')),
  nearValid.id(),
  fc.constantFrom('..', '%2e%2e', '%2e%2e%2f%2e%2e%2fetc%2fpasswd', '%00', 'a%00b', '%ZZ', '%', '%c0%ae%c0%ae', '..%5c..%5c', 'cp-00000001', ''),
);

const urlOf = fc.oneof(
  segment.map((s) => `/v1/chunks/${s}`),
  segment.map((s) => `/v1/chunks/${s}/replicas`),
  segment.map((s) => `/v1/checkpoints/${s}`),
  fc.tuple(segment, segment).map(([a, b]) => `/v1/chunks/${a}/${b}`),
  segment.map((s) => `/v1/${s}`),
  fc.constantFrom('/v1/chunks', '/v1/stats', '/v1/checkpoints', '/openapi.json', '/healthz', '/readyz', '/v1', '/v1/', '/v1//chunks', '/v1/chunks/', '/v1/./chunks', '/v1/chunks/../stats'),
).chain((url) => fc.option(hostileString().map((q) => `?${percentEncoded(q)}=${percentEncoded(q)}`), { freq: 4 }).map((q) => (q === null ? url : url + q)));

/** Header values Node would carry: no CR/LF, latin-1 (a raw client can send any byte but these). */
const headerText = (arbitrary: fc.Arbitrary<string>): fc.Arbitrary<string> => arbitrary.map((s) => Buffer.from(s, 'utf8').toString('latin1').replace(/[\r\n]/g, ' '));

const placementsHeader = fc.oneof(
  fc.array(fc.record({ replicaId: fc.oneof(nearValid.id(), hostileValue({ jsonOnly: true })), targetNode: fc.oneof(nearValid.id(), hostileValue({ jsonOnly: true })), cloudProvider: fc.oneof(fc.constant('aws'), hostileValue({ jsonOnly: true })) }, { requiredKeys: [] }), { maxLength: 4 }).map((a) => JSON.stringify(a)),
  hostileValue({ jsonOnly: true }).map((v) => JSON.stringify(v) ?? 'undefined'),
  fc.constantFrom('[', '[{"replicaId":"a","targetNode":"n","cloudProvider":"aws"},', '{"__proto__":{"polluted":1}}', '[{"__proto__":{"polluted":1},"replicaId":"a","targetNode":"n","cloudProvider":"aws"}]', 'null', '[]', '[null]', '1e999', '"\\u0000"'),
  headerText(hostileString()),
);

const anyRequest: fc.Arbitrary<HostileRequest> = fc.record({
  method: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('GET', 'POST') }, { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD') }),
  url: fc.oneof({ weight: 1, arbitrary: urlOf }, { weight: 1, arbitrary: fc.constant('/v1/chunks') }),
  headers: fc.record(
    {
      'content-type': fc.oneof(fc.constantFrom('application/octet-stream', 'application/octet-stream; charset=utf-8', 'APPLICATION/OCTET-STREAM', 'application/json', 'text/plain', 'multipart/form-data; boundary=x', ''), headerText(hostileString())),
      'chunkvault-chunk-id': headerText(fc.oneof(nearValid.id(), hostileString())),
      'chunkvault-replicas': placementsHeader,
      'chunkvault-task-id': headerText(fc.oneof(nearValid.id(), hostileString())),
      'chunkvault-checksum': headerText(fc.oneof(nearValid.checksum().map((c) => `md5:${c}`), nearValid.checksum().map((c) => `sha256:${c}`), hostileString(), fc.constant('md5:'))),
      'content-length': fc.constantFrom('-1', '0', '1e3', 'abc', '99999999999999999999', '10'),
      'transfer-encoding': fc.constantFrom('chunked', 'gzip', 'identity'),
      'content-encoding': fc.constantFrom('gzip', 'br', 'bogus'),
      authorization: headerText(hostileString()),
    },
    { requiredKeys: [] },
  ),
  body: fc.oneof(
    fc.constant(undefined),
    fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)),
    fc.integer({ min: 10_000, max: 12_000 }).map((n) => randomBytes(n)),
    hostileValue({ jsonOnly: true }).map((v) => JSON.stringify(v) ?? ''),
  ),
}) as fc.Arbitrary<HostileRequest>;

/** An upload that gets past the content-type check, so its headers and body reach the producer's validation. */
const uploadRequest: fc.Arbitrary<HostileRequest> = fc
  .record({
    request: anyRequest,
    contentType: fc.constantFrom('application/octet-stream', 'application/octet-stream; charset=binary'),
    chunkId: fc.oneof(nearValid.id(), headerText(hostileString())),
    placements: fc.oneof(
      { weight: 2, arbitrary: fc.array(fc.record({ replicaId: nearValid.id(), targetNode: nearValid.id(), cloudProvider: fc.constantFrom('aws', 'gcp', 'local', 'AWS', '') }), { minLength: 1, maxLength: 3 }).map((a) => JSON.stringify(a)) },
      { weight: 1, arbitrary: placementsHeader },
    ),
  })
  .map(({ request, contentType, chunkId, placements }) => ({
    ...request,
    method: 'POST' as const,
    url: '/v1/chunks',
    headers: { ...request.headers, 'content-type': contentType, 'chunkvault-chunk-id': chunkId, 'chunkvault-replicas': placements },
  }));

const requestOf = fc.oneof({ weight: 2, arbitrary: uploadRequest }, { weight: 1, arbitrary: anyRequest });

describe('HTTP API with hostile requests (real vault, workers, inject)', () => {
  let sandbox: Sandbox;
  let vault: Chunkvault;
  let app: FastifyInstance;

  beforeAll(async () => {
    // 10 KiB body limit, so oversized bodies are cheap.
    sandbox = await makeSandbox({ chunkvault: { http: { max_body_mb: 0.01 } } });
    vault = await openVault(sandbox.env);
    await vault.startWorkers();
    app = await buildHttpServer(vault, { auth: undefined });
  });

  afterAll(async () => {
    await app?.close();
    await vault?.close();
    await sandbox?.cleanup();
  });

  it('answers every hostile request below 500, errors in the documented JSON shape', async () => {
    const before = await sandbox.snapshot();
    const fingerprint = builtinsFingerprint();
    const figures = { requests: 0, byStatus: {} as Record<number, number>, refusedByClient: 0 };
    await fc.assert(
      fc.asyncProperty(requestOf, async (request) => {
        let response;
        try {
          response = await app.inject({ method: request.method, url: request.url, headers: { host: '127.0.0.1', ...request.headers }, ...(request.body === undefined ? {} : { payload: request.body }) });
        } catch (error) {
          // The request could not even be formed (light-my-request refused it): nothing reached the server.
          expect((error as Error).message, show(request)).not.toMatch(/^$/);
          figures.refusedByClient += 1;
          return;
        }
        figures.requests += 1;
        figures.byStatus[response.statusCode] = (figures.byStatus[response.statusCode] ?? 0) + 1;
        const context = `${request.method} ${request.url} -> ${response.statusCode} ${response.body.slice(0, 300)}`;
        expect(response.statusCode, context).toBeLessThan(500);
        // inject resolves "." and ".." as a browser would: only what lands on the API has its error shape (the rest is the dashboard's).
        const pathname = new URL(request.url, 'http://127.0.0.1').pathname;
        const api = pathname === '/v1' || pathname.startsWith('/v1/') || API_ROOT_PATHS.has(pathname);
        if (response.statusCode >= 400 && request.method !== 'HEAD' && api) {
          expect(response.headers['content-type'], context).toMatch(/^application\/json/);
          const parsed = apiErrorSchema.safeParse(JSON.parse(response.body));
          expect(parsed.success, `${context}: ${parsed.error?.message}`).toBe(true);
        }
      }),
      fuzzParameters(400, 0.1),
    );

    // Still serving: a valid chunk posted now is stored and reads back.
    const bytes = randomBytes(3000);
    const chunkId = `after_http_fuzz_${randomBytes(3).toString('hex')}`;
    const posted = await app.inject({
      method: 'POST', url: '/v1/chunks', payload: bytes,
      headers: { host: '127.0.0.1', 'content-type': 'application/octet-stream', 'chunkvault-chunk-id': chunkId, 'chunkvault-checksum': `md5:${md5(bytes)}`, 'chunkvault-replicas': JSON.stringify([{ replicaId: `${chunkId}_r0`, targetNode: 'n1', cloudProvider: 'aws' }]) },
    });
    expect(posted.statusCode, posted.body).toBe(202);
    await waitFor('the chunk to be stored', async () => (await vault.catalog.getChunk(chunkId))?.status === 'stored');
    const got = await app.inject({ url: `/v1/chunks/${chunkId}`, headers: { host: '127.0.0.1' } });
    expect(got.statusCode).toBe(200);
    expect(got.rawPayload.equals(bytes)).toBe(true);

    expect(await sandbox.escapedSince(before)).toEqual([]);
    expect(builtinsFingerprint()).toBe(fingerprint);
    console.info(`http fuzz: ${JSON.stringify(figures)}`);
  }, timeoutFor(fuzzParameters(400, 0.1).numRuns!, 20));

  it('answers a request addressed to a foreign Host (DNS rebinding) with the documented error shape', async () => {
    await fc.assert(
      fc.asyncProperty(headerText(fc.oneof(hostileString(), fc.constantFrom('evil.example', 'evil.example:80', '[::2]:8080', '127.0.0.1.evil.example', 'localhost.', '0x7f.1', '2130706433', ''))), fc.constantFrom('/v1/stats', '/v1/chunks/x', '/healthz'), async (host, url) => {
        const response = await app.inject({ url, headers: { host } });
        expect(response.statusCode, `${host} ${url}: ${response.body}`).toBeLessThan(500);
        if (response.statusCode >= 400) expect(apiErrorSchema.safeParse(JSON.parse(response.body)).success, `${host}: ${response.body}`).toBe(true);
      }),
      fuzzParameters(100, 0.02),
    );
  });
});
