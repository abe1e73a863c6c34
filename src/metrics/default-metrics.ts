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

let registry: Registry | undefined;

export function processDefaultMetrics(): Registry {
  if (!registry) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
  }
  return registry;
}
