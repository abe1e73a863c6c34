/**
 * GET /metrics of `chunkvault serve`, in the Prometheus text format:
 * - cluster-wide figures read from Redis at scrape time (cluster-metrics.ts): the same
 *   whichever process answers, so one scrape of the serve process covers the cluster;
 * - what this process itself observed (process-metrics.ts: reads, verifications, checksum
 *   mismatches of GET /v1/chunks/:id, and the work of any worker pool it runs);
 * - prom-client's default process metrics (CPU, memory, event loop, GC), standard names.
 * Worker processes serve their own per-process figures on chunkvault.metrics.worker_port.
 */
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { describeError } from '../errors.js';
import { cronPatternOf } from '../config/config.schema.js';
import { registerClusterMetrics } from '../metrics/cluster-metrics.js';
import { processDefaultMetrics } from '../metrics/default-metrics.js';
import type { HttpParts } from './http-parts.js';

export async function registerMetrics(app: FastifyInstance, parts: HttpParts): Promise<void> {
  const { vault } = parts;
  // A registry per server: nothing global, so servers of two vaults in one process never mix.
  const cluster = new Registry();
  const { cleanup } = vault.config.storage;
  registerClusterMetrics(cluster, {
    statistics: () => vault.getStatistics(),
    scrubMaxAgeSeconds: vault.config.chunkvault.maintenance.scrub_max_age_days * 86_400,
    maintenanceSchedule: cleanup.enable_auto_cleanup ? cronPatternOf(cleanup.cleanup_schedule) : undefined,
  });
  const registry = Registry.merge([cluster, vault.metrics.registry, processDefaultMetrics()]);

  app.get('/metrics', async (_request, reply) => {
    let text: string;
    try {
      text = await registry.metrics();
    } catch (error) {
      // Redis unreachable: say so rather than serve figures that look like zeros.
      vault.logger.warn({ err: error }, 'collecting metrics failed');
      return reply.code(503).type('text/plain; charset=utf-8').send(`metrics unavailable: ${describeError(error)}\n`);
    }
    return reply.type(registry.contentType).send(text);
  });
}
