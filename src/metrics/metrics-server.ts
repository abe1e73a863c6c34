/**
 * A worker process's own /metrics: a bare node:http server (a worker has no other HTTP to
 * serve). Same safety rules as `chunkvault serve`: loopback unless credentials are set in
 * the environment, and then every request must carry them; without credentials, only
 * requests addressed to a loopback name are answered (a foreign page reaching it through
 * DNS rebinding gets 421).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError, describeError } from '../errors.js';
import { addressedToLoopback, assertSafeBinding, authorised, challengeOf, MISDIRECTED_MESSAGE, type HttpAuth } from '../http/http-auth.js';
import type { Logger } from '../logging/logger.js';

export interface MetricsServerOptions {
  registry: Registry;
  host: string;
  /** 0 picks a free port. */
  port: number;
  auth: HttpAuth | undefined;
  logger: Logger;
}

export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464 */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Listens and serves GET /metrics from `registry`. Rejects when the port is taken (two
 * workers on one host need a port each: `chunkvault worker --metrics-port`) and refuses a
 * non-loopback host without credentials (ConfigError).
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, host, port, auth, logger } = options;
  assertSafeBinding(host, auth, 'worker metrics ', 'chunkvault.metrics.worker_host');
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (auth && !authorised(request, auth)) {
      response.writeHead(401, { 'www-authenticate': challengeOf(auth) }).end();
      return;
    }
    // As `serve`: without credentials only requests addressed to loopback (no DNS rebinding).
    if (!auth && !addressedToLoopback(request)) {
      response.writeHead(421, { 'content-type': 'text/plain' }).end(`${MISDIRECTED_MESSAGE}\n`);
      return;
    }
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(request.method === 'HEAD' ? undefined : text),
      (error: unknown) => {
        logger.warn({ err: error }, 'collecting metrics failed');
        response.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${describeError(error)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'EADDRINUSE' ? new ConfigError(`worker metrics port ${host}:${port} is in use`, ['chunkvault.metrics.worker_port: give each worker on a host its own port (chunkvault worker --metrics-port)']) : error);
    });
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

