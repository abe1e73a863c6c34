/**
 * The dashboard: Bull Board for every chunkvault queue under /admin/queues, and chunkvault's
 * own statistics page at /admin.
 *
 * What keeps it safe (server.ts adds loopback-only by default and credentials):
 * - read-only mode marks every queue adapter read-only (Bull Board hides retry, clean,
 *   promote, pause... and its API answers 405), and a guard here refuses every request to
 *   Bull Board's API that is not a read, so a route a later Bull Board adds without its
 *   own read-only check cannot become a way to change jobs;
 * - browsers resend basic credentials on any request to the origin, including ones a
 *   foreign page triggers, so requests that change something must come from this origin
 *   (Origin / Sec-Fetch-Site checked);
 * - no secret reaches a page: Bull Board shows parsed Redis INFO (version, memory, clients),
 *   never the connection URL or options; this page redacts free text that could hold one.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HttpParts } from './http-parts.js';
import { queueDescription, renderStatisticsPage, withoutSecrets } from './dashboard-page.js';
import { html } from './dashboard-html.js';
import { SERIES_WINDOW_MINUTES } from '../catalog/minute-series.js';

/** The statistics page. */
export const DASHBOARD_PATH = '/admin';
/** Where Bull Board is mounted; its JSON API is under `${QUEUES_PATH}/api`. */
export const QUEUES_PATH = '/admin/queues';
/** Default seconds between reloads of the statistics page (`?refresh=N` overrides, 0 stops). */
export const DEFAULT_REFRESH_SECONDS = 30;
/** Default hours the statistics page's charts show (`?hours=N`, 1 to 24, overrides). */
export const DEFAULT_CHART_HOURS = 6;

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export async function registerDashboard(app: FastifyInstance, parts: HttpParts): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request, reply) => {
      await guardWrites(request, reply, parts.readOnly);
    });
    scope.addHook('onSend', async (request, reply) => {
      reply.header('x-content-type-options', 'nosniff');
      reply.header('x-frame-options', 'DENY');
      reply.header('referrer-policy', 'no-referrer');
      // Job data and statistics are not for shared caches; Bull Board's static files may be cached.
      if (!request.url.startsWith(`${QUEUES_PATH}/static/`)) reply.header('cache-control', 'no-store');
    });
    scope.get(DASHBOARD_PATH, (request, reply) => statisticsPage(request, reply, parts));
    scope.get(`${DASHBOARD_PATH}/`, (_request, reply) => reply.redirect(DASHBOARD_PATH));
    await registerBullBoard(scope, parts);
  });
}

/** Bull Board, loaded on first use so CLI commands that never serve do not pay for it. */
async function registerBullBoard(scope: FastifyInstance, parts: HttpParts): Promise<void> {
  const [{ createBullBoard }, { BullMQAdapter }, { FastifyAdapter }] = await Promise.all([
    import('@bull-board/api'),
    import('@bull-board/api/bullMQAdapter'),
    import('@bull-board/fastify'),
  ]);
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUES_PATH);
  createBullBoard({
    queues: parts.vault.queueNames().map(
      (name) => new BullMQAdapter(parts.vault.queue(name), { readOnlyMode: parts.readOnly, description: queueDescription(name) }),
    ),
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'chunkvault queues',
        miscLinks: [{ text: 'chunkvault statistics', url: DASHBOARD_PATH }],
        ...(parts.readOnly ? { environment: { label: 'read-only', color: '#bf8700', textColor: '#ffffff' } } : {}),
      },
    },
  });
  await scope.register(serverAdapter.registerPlugin(), { prefix: QUEUES_PATH });
}

async function statisticsPage(request: FastifyRequest, reply: FastifyReply, parts: HttpParts): Promise<string> {
  const { vault, readOnly } = parts;
  reply.type('text/html; charset=utf-8').header('content-security-policy', PAGE_CSP);
  const refreshSeconds = refreshOf(request.query);
  try {
    const [stats, series, lastCheckpoint] = await Promise.all([vault.getStatistics(), vault.catalog.minuteSeries(chartHoursOf(request.query) * 60), vault.checkpoints.latest()]);
    return renderStatisticsPage({ stats, series, lastCheckpoint, readOnly, queuesPath: QUEUES_PATH, refreshSeconds, now: new Date() });
  } catch (error) {
    vault.logger.warn({ err: error }, 'dashboard: could not collect statistics');
    reply.code(503);
    return html`<!doctype html><html lang="en"><head><meta charset="utf-8">${
      refreshSeconds > 0 ? html`<meta http-equiv="refresh" content="${refreshSeconds}">` : ''
    }<title>chunkvault dashboard</title></head><body><h1>chunkvault</h1><p>Statistics are unavailable: ${withoutSecrets(
      (error as Error).message,
    )}</p><p><a href="${QUEUES_PATH}">Queues (Bull Board)</a></p></body></html>`.markup;
  }
}

/** `?refresh=N` (0 to 3600 seconds), else the default. */
function refreshOf(query: unknown): number {
  return Math.min(numberParameter(query, 'refresh') ?? DEFAULT_REFRESH_SECONDS, 3600);
}

/** `?hours=N` (1 to 24, the catalog's series reaches a day back), else the default. */
function chartHoursOf(query: unknown): number {
  return Math.min(Math.max(numberParameter(query, 'hours') ?? DEFAULT_CHART_HOURS, 1), SERIES_WINDOW_MINUTES / 60);
}

/** A query parameter of up to four digits, else undefined. */
function numberParameter(query: unknown, name: string): number | undefined {
  const raw = (query as Record<string, unknown> | undefined)?.[name];
  return typeof raw === 'string' && /^\d{1,4}$/.test(raw) ? Number(raw) : undefined;
}

/**
 * Refuses requests that would change something when they come from another site (a page
 * there cannot use the browser's stored basic credentials on our behalf) or when the
 * dashboard is read-only.
 */
async function guardWrites(request: FastifyRequest, reply: FastifyReply, readOnly: boolean): Promise<void> {
  if (READ_METHODS.has(request.method)) return;
  if (isCrossSite(request)) {
    await reply.code(403).send({ error: 'forbidden', message: 'cross-site request refused: changes must come from the dashboard itself' });
    return;
  }
  if (readOnly && request.url.startsWith(`${QUEUES_PATH}/api/`)) {
    await reply.code(405).send({ error: 'read-only', message: 'the dashboard is read-only (chunkvault.http.read_only or --read-only): jobs cannot be retried, cleaned, promoted or added' });
  }
}

function isCrossSite(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return true;
  const origin = request.headers.origin;
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== request.headers.host;
  } catch {
    return true; // "null" (sandboxed frames, file://) or garbage
  }
}
