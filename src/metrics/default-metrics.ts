/**
 * prom-client's default metrics (CPU, memory, event-loop lag, GC, handles), with their
 * standard names (process_*, nodejs_*) so stock Node.js dashboards work unchanged.
 *
 * One registry per process, made on first use: these figures are of the process itself,
 * and prom-client installs process-wide observers for them (an event-loop delay monitor,
 * a GC observer) that cannot be removed, so making them per server or per vault would
 * only pile up observers. Nothing vault-specific is in it.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Gauges prom-client names like counters, which `promtool check metrics` flags (a `_total`
 * suffix promises a counter, and rate() over them would be nonsense). Each is the sum of a
 * gauge that stays, by type: `sum(nodejs_active_handles)` is what they said.
 */
export const LEFT_OUT_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

let registry: Registry | undefined;

export function processDefaultMetrics(): Registry {
  if (!registry) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
    for (const name of LEFT_OUT_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }
  return registry;
}
