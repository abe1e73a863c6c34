/**
 * Registers the HTTP API for coordinators (the routes of api-routes.ts) in its own
 * encapsulated scope: its octet-stream body parser, its JSON error answers and its /v1
 * not-found answer stay out of the dashboard's and the metrics' way.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiRoute } from './api-route.js';
import { API_ROUTES } from './api-routes.js';
import { HttpError, installErrorHandlers, sendError } from './api-errors.js';
import { buildOpenApiDocument } from './openapi.js';
import type { HttpParts } from './http-parts.js';

const OCTET_STREAM = 'application/octet-stream';
/** Methods no route of the API serves but GET or POST (HEAD comes with every GET route). */
const OTHER_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

export async function registerApi(app: FastifyInstance, parts: HttpParts): Promise<void> {
  const bodyLimitBytes = app.initialConfig.bodyLimit ?? 1024 * 1024;
  let document: unknown;
  const documentOnce = (): unknown => (document ??= buildOpenApiDocument());
  const logger = parts.vault.logger;

  const routes = (scope: FastifyInstance, selected: readonly ApiRoute[], strip: string): void => {
    installErrorHandlers(scope, logger, bodyLimitBytes, strip !== '');
    // Raw bytes arrive as one Buffer; Fastify enforces the body limit while reading (413).
    scope.addContentTypeParser(OCTET_STREAM, { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    for (const route of selected) {
      scope.route({
        method: route.method,
        url: route.path.slice(strip.length) || '/',
        ...(route.writes ? { onRequest: (request: FastifyRequest, reply: FastifyReply) => refuseBeforeBody(request, reply, parts) } : {}),
        handler: async (request, reply) => {
          const answer = await route.handle({ request, parts, document: documentOnce });
          reply.code(answer.status).headers(answer.headers ?? {});
          if ('bytes' in answer) return reply.type(OCTET_STREAM).send(answer.bytes);
          return reply.type('application/json; charset=utf-8').send(answer.json);
        },
      });
    }
    if (strip === '') {
      // Outside /v1 the not-found answer is the dashboard's; the API's own paths answer other methods in the API's shape.
      for (const url of new Set(selected.map((r) => r.path))) {
        const served = new Set(selected.filter((r) => r.path === url).map((r) => r.method));
        const others = OTHER_METHODS.filter((m) => !served.has(m as ApiRoute['method']));
        scope.route({
          method: others,
          url,
          handler: async (request) => {
            throw new HttpError(404, 'not_found', `no route ${request.method} ${url}`);
          },
        });
      }
    }
  };
  // /v1 gets its own not-found answer (JSON, our shape); the probes and /openapi.json live at the root.
  await app.register(async (v1) => routes(v1, API_ROUTES.filter((r) => r.path.startsWith('/v1/')), '/v1'), { prefix: '/v1' });
  await app.register(async (root) => routes(root, API_ROUTES.filter((r) => !r.path.startsWith('/v1/')), ''));
}

/** Write routes: refused in read-only mode, or with a wrong content type, before the body is read. */
async function refuseBeforeBody(request: FastifyRequest, reply: FastifyReply, parts: HttpParts): Promise<void> {
  if (parts.readOnly) {
    await sendError(reply, new HttpError(403, 'read_only', 'this server is read-only (chunkvault.http.read_only or --read-only): it stores nothing'));
    return;
  }
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== OCTET_STREAM) {
    await sendError(reply, new HttpError(415, 'unsupported_media_type', `send the chunk's bytes as ${OCTET_STREAM} (got ${type || 'no content type'})`));
  }
}
