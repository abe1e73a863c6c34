/**
 * The safety rules every chunkvault HTTP listener shares (`chunkvault serve` and a worker's
 * /metrics): loopback unless credentials are set in the environment; with credentials,
 * every request but the public probes carries them; without, only requests addressed to a
 * loopback name are answered (a foreign page reaching the port through DNS rebinding is not).
 * Kept apart from the Fastify server so a worker loads none of it.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';

/** Credentials every request but the health probes must carry. */
export type HttpAuth = { kind: 'bearer'; token: string } | { kind: 'basic'; user: string; password: string };

/**
 * Credentials from the environment (never from the YAML, which gets copied around):
 * CHUNKVAULT_HTTP_TOKEN for a bearer token, else CHUNKVAULT_HTTP_USER with
 * CHUNKVAULT_HTTP_PASSWORD for basic auth.
 */
export function httpAuthFromEnv(env: NodeJS.ProcessEnv = process.env): HttpAuth | undefined {
  const token = env.CHUNKVAULT_HTTP_TOKEN?.trim();
  if (token) return { kind: 'bearer', token };
  const user = env.CHUNKVAULT_HTTP_USER?.trim();
  const password = env.CHUNKVAULT_HTTP_PASSWORD;
  if (user && password) return { kind: 'basic', user, password };
  if (user || password) throw new ConfigError('incomplete HTTP credentials', ['CHUNKVAULT_HTTP_USER and CHUNKVAULT_HTTP_PASSWORD must be set together']);
  return undefined;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * The credentials `chunkvault serve` requires on `host`; throws (before anything connects)
 * when `host` is beyond loopback and the environment holds none.
 */
export function credentialsFor(host: string, env: NodeJS.ProcessEnv = process.env): HttpAuth | undefined {
  const auth = httpAuthFromEnv(env);
  assertSafeBinding(host, auth, '', 'chunkvault.http.host');
  return auth;
}

/** Throws a ConfigError naming `setting` when `host` is beyond loopback and there are no credentials. */
export function assertSafeBinding(host: string, auth: HttpAuth | undefined, what: string, setting: string): void {
  if (!isLoopback(host) && !auth) {
    throw new ConfigError(`refusing to serve ${what}on ${host} without credentials`, [
      `${setting}: set CHUNKVAULT_HTTP_TOKEN, or CHUNKVAULT_HTTP_USER and CHUNKVAULT_HTTP_PASSWORD, to serve beyond loopback`,
    ]);
  }
}

/** The host name of a Host header (`name:port`, `[v6]:port`). */
export function hostnameOf(hostHeader: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(hostHeader);
  if (bracketed) return bracketed[1]!;
  return hostHeader.replace(/:\d+$/, '');
}

/** Without credentials: whether the request was addressed to a loopback name. */
export function addressedToLoopback(request: { headers: { host?: string | undefined } }): boolean {
  return isLoopback(hostnameOf(request.headers.host ?? ''));
}

export const MISDIRECTED_MESSAGE = 'without credentials this server answers only requests addressed to localhost, 127.0.0.1 or [::1]';

/** Whether the request carries the configured credentials. */
export function authorised(request: { headers: { authorization?: string | undefined } }, auth: HttpAuth): boolean {
  const header = request.headers.authorization ?? '';
  if (auth.kind === 'bearer') return header.startsWith('Bearer ') && sameSecret(header.slice(7), auth.token);
  if (!header.startsWith('Basic ')) return false;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  // Both compared, always: no early exit telling which one was wrong.
  const userOk = sameSecret(decoded.slice(0, colon), auth.user);
  const passwordOk = sameSecret(decoded.slice(colon + 1), auth.password);
  return userOk && passwordOk;
}

/** The WWW-Authenticate header of a 401. */
export function challengeOf(auth: HttpAuth): string {
  return auth.kind === 'bearer' ? 'Bearer realm="chunkvault"' : 'Basic realm="chunkvault", charset="UTF-8"';
}

/** Constant-time comparison of two strings of any length. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => hash('sha256', value, 'buffer');
  return timingSafeEqual(digest(given), digest(expected));
}
