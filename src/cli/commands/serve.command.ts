import type { Command } from 'commander';
import { openChunkvault } from '../../app.js';
import { credentialsFor } from '../../http/http-auth.js';
import { ConfigError } from '../../errors.js';
import { configFor, portNumber, runCommand } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

export function registerServe(program: Command): void {
  const command = program
    .command('serve')
    .alias('dashboard')
    .description('serve the HTTP API (/v1), the dashboard (/admin, Bull Board at /admin/queues), /metrics and health probes until SIGTERM/SIGINT')
    .option('--host <address>', 'listen address (default: chunkvault.http.host, 127.0.0.1)')
    .option('--port <n>', 'listen port (default: chunkvault.http.port, 8080; 0 picks a free one)', portNumber('--port'))
    .option('--read-only', 'no writes: POST /v1/chunks refused, dashboard without retry/clean/promote');
  declareContract(command, {
    json: 'once listening, one line {url, dashboard, api, metrics, readOnly} (the URLs to use, e.g. with --port 0)',
    exitCodes: {
      ok: 'stopped by SIGTERM/SIGINT',
      failed: 'could not start, e.g. Redis could not be reached',
      usage: 'the port is in use, a non-loopback --host without credentials in the environment',
    },
  });
  command.action((options: { host?: string; port?: number; readOnly?: boolean; json?: boolean }, self: Command) =>
    runCommand(async () => {
      const { config } = configFor(self);
      const host = options.host ?? config.chunkvault.http.host;
      // Checked before anything connects: no credentials for a non-loopback address is a usage error.
      const auth = credentialsFor(host);
      const stopSignal = new Promise<string>((resolve) => {
        for (const name of SIGNALS) process.once(name, () => resolve(name));
      });
      const vault = await openChunkvault(config);
      try {
        // Loaded here: the other commands (a worker above all) need none of Fastify.
        const { buildHttpServer } = await import('../../http/server.js');
        const app = await buildHttpServer(vault, { host, auth, ...(options.readOnly ? { readOnly: true } : {}) });
        const port = options.port ?? config.chunkvault.http.port;
        // A port in use is a configuration to change, as for a worker's metrics port: exit 2.
        const address = await app.listen({ host, port }).catch((error: NodeJS.ErrnoException) => {
          throw error.code === 'EADDRINUSE' ? new ConfigError(`HTTP port ${host}:${port} is in use`, ['chunkvault.http.port: pick a free port (chunkvault serve --port)'], { cause: error }) : error;
        });
        const readOnly = options.readOnly ?? config.chunkvault.http.read_only;
        vault.logger.info({ address, readOnly }, 'serving');
        // The one line a person (or a test) waits for: where to point the browser.
        if (options.json) printJson({ url: address, dashboard: `${address}/admin`, api: `${address}/v1`, metrics: `${address}/metrics`, readOnly }, 'line');
        else process.stdout.write(`chunkvault serving on ${address} (dashboard ${address}/admin, API ${address}/v1, metrics ${address}/metrics)\n`);
        const signal = await stopSignal;
        vault.logger.info({ signal }, 'shutting down the HTTP server');
        await app.close();
      } finally {
        await vault.close();
      }
    }),
  );
}
