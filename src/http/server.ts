/**
 * `chunkvault serve`: one Fastify server for the people and programs around chunkvault —
 * the HTTP API for coordinators (/v1, /healthz, /readyz), Prometheus metrics (/metrics)
 * and the dashboard (Bull Board under /admin/queues, statistics under /admin).
 *
 * Safe by default: it listens on loopback unless configured otherwise, refuses any other
 * address without credentials, and checks them on every route but the health probes.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Chunkvault } from '../app.js';
import { addressedToLoopback, assertSafeBinding, authorised, challengeOf, httpAuthFromEnv, MISDIRECTED_MESSAGE, type HttpAuth } from './http-auth.js';
import { registerApi } from './api.js';
import { API_ROUTES } from './api-routes.js';
import { httpErrorOf, sendError } from './api-errors.js';
import { registerDashboard } from './dashboard.js';
import { registerMetrics } from './metrics.js';
import type { HttpParts } from './http-parts.js';

export type { HttpAuth } from './http-auth.js';

export interface HttpServerOptions {
  host?: string;
  port?: number;
  readOnly?: boolean;
  /** Defaults to the environment (httpAuthFromEnv). */
  auth?: HttpAuth | undefined;
}

/**
 * Paths reachable without credentials: the routes the table marks public (the probes, which
 * carry none and reveal nothing secret). The same flag gives them `security: []` in the
 * OpenAPI document.
 */
const PUBLIC_PATHS = new Set(API_ROUTES.filter((route) => route.public).map((route) => route.path));

/** Builds the server (routes registered, not listening). */
export async function buildHttpServer(vault: Chunkvault, options: HttpServerOptions = {}): Promise<FastifyInstance> {
  const http = vault.config.chunkvault.http;
  const host = options.host ?? http.host;
  const auth = 'auth' in options ? options.auth : httpAuthFromEnv();
  assertSafeBinding(host, auth, '', 'chunkvault.http.host');
  // Fastify's own request logging stays off: requests are logged once below, at debug.
  const bodyLimit = Math.floor(http.max_body_mb * 1024 * 1024);
  const app = Fastify({
    bodyLimit,
    logger: false,
    // A URL Fastify cannot even route (bad percent-encoding) gets the API's error body too.
    frameworkErrors: (error, _request, reply) => void sendError(reply, httpErrorOf(error, bodyLimit)),
  });
  if (auth) {
    app.addHook('onRequest', async (request, reply) => {
      if (PUBLIC_PATHS.has(request.url.split('?')[0]!)) return;
      if (!authorised(request, auth)) await refuse(reply, auth);
    });
  } else {
    // Without credentials only loopback clients can connect; a Host header naming anything
    // else is a browser led there by DNS rebinding from a foreign page.
    app.addHook('onRequest', async (request, reply) => {
      if (addressedToLoopback(request)) return;
      await reply.code(421).send({ error: 'misdirected_request', message: MISDIRECTED_MESSAGE });
    });
  }
  app.addHook('onResponse', async (request, reply) => {
    vault.logger.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'http request');
  });
  const parts: HttpParts = { vault, readOnly: options.readOnly ?? http.read_only };
  await registerApi(app, parts);
  await registerMetrics(app, parts);
  await registerDashboard(app, parts);
  return app;
}

async function refuse(reply: FastifyReply, auth: HttpAuth): Promise<void> {
  await reply.code(401).header('www-authenticate', challengeOf(auth)).send({ error: 'unauthorized', message: 'missing or wrong credentials' });
}
