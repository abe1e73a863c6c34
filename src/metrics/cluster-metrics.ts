/**
 * Cluster-wide figures, read from Redis at scrape time (the catalog's counters, the queues'
 * job counts, the last maintenance report), so they are the same whichever process is
 * scraped and survive restarts. One scrape reads the statistics once, however many
 * metrics need them.
 *
 * Gauges are state (what is stored now, queue depths); `_total` counters only ever grow
 * (corruptions found, repairs done, checkpoints, retention and compression).
 */
import { CronExpressionParser } from 'cron-parser';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { StorageStatistics } from '../stats/statistics.js';
import { taskResultsOf, type MaintenanceReport } from '../maintenance/maintenance-service.js';

export interface ClusterMetricsSource {
  /** The statistics every figure is derived from (Chunkvault.getStatistics). */
  statistics: () => Promise<StorageStatistics>;
  /** Now in ms (for ages); injectable for tests. */
  now?: () => number;
  /** chunkvault.maintenance.scrub_max_age_days in seconds; 0: no bound (left out). */
  scrubMaxAgeSeconds: number;
  /** The cron pattern (UTC) maintenance passes run on; undefined when enable_auto_cleanup is off. */
  maintenanceSchedule: string | undefined;
}

type Labels = Record<string, string>;
type Emit = (value: number, labels?: Labels) => void;

/** Registers the cluster-wide metrics in `registry`. Each scrape reads Redis once; a Redis error fails the scrape. */
export function registerClusterMetrics(registry: Registry, source: ClusterMetricsSource): void {
  const now = source.now ?? Date.now;
  let inFlight: Promise<StorageStatistics> | undefined;
  // prom-client collects all metrics of a scrape concurrently: they share one read.
  const snapshot = (): Promise<StorageStatistics> => {
    inFlight ??= source.statistics().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };

  const gauge = (name: string, help: string, labelNames: string[], fill: (stats: StorageStatistics, emit: Emit) => void): void => {
    new Gauge({
      name, help, labelNames, registers: [registry],
      async collect() {
        const stats = await snapshot();
        this.reset();
        fill(stats, (value, labels) => (labels ? this.set(labels, value) : this.set(value)));
      },
    });
  };
  // A counter kept in Redis: set to the stored total at each scrape.
  const counter = (name: string, help: string, read: (stats: StorageStatistics) => number): void => {
    new Counter({
      name, help, registers: [registry],
      async collect() {
        const value = read(await snapshot());
        this.reset();
        this.inc(value);
      },
    });
  };

  gauge('chunkvault_replicas_stored', 'Replicas stored (and not found corrupt since), by backend', ['backend'], (s, emit) => {
    for (const [backend, b] of Object.entries(s.backend_stats)) emit(b.file_count, { backend });
  });
  gauge('chunkvault_stored_bytes', 'Bytes the stored replicas take on their backend (compressed size where compressed), by backend', ['backend'], (s, emit) => {
    for (const [backend, b] of Object.entries(s.backend_stats)) emit(b.total_size_bytes, { backend });
  });
  gauge('chunkvault_backend_capacity_bytes', 'max_size_gb of a backend, in bytes (only backends with a limit)', ['backend'], (s, emit) => {
    for (const [backend, b] of Object.entries(s.backend_stats)) if (b.max_size_bytes > 0) emit(b.max_size_bytes, { backend });
  });
  gauge('chunkvault_cloud_replicas_stored', 'Replicas stored, by the cloud provider the coordinator named', ['cloud'], (s, emit) => {
    for (const [cloud, c] of Object.entries(s.storage_by_cloud)) emit(c.count, { cloud });
  });
  gauge('chunkvault_cloud_stored_bytes', 'Bytes of stored replicas, by cloud provider', ['cloud'], (s, emit) => {
    for (const [cloud, c] of Object.entries(s.storage_by_cloud)) emit(c.size_bytes, { cloud });
  });
  gauge('chunkvault_node_replicas_stored', 'Replicas stored, by target node', ['node'], (s, emit) => {
    for (const [node, n] of Object.entries(s.storage_by_node)) emit(n.count, { node });
  });
  gauge('chunkvault_node_stored_bytes', 'Bytes of stored replicas, by target node', ['node'], (s, emit) => {
    for (const [node, n] of Object.entries(s.storage_by_node)) emit(n.size_bytes, { node });
  });
  gauge('chunkvault_replicas_failed', 'Replicas whose writes failed for good (until stored by a later job)', [], (s, emit) => emit(s.failed_stores));
  gauge('chunkvault_replicas_corrupt', 'Replicas found missing or corrupt and not repaired yet', [], (s, emit) => emit(s.corrupt_replicas));
  gauge('chunkvault_chunks', 'Chunks by status (pending, stored, degraded: some replicas failed, failed, expired)', ['status'], (s, emit) => {
    for (const [status, count] of Object.entries(s.chunks_by_status)) emit(count, { status });
  });
  gauge('chunkvault_queue_jobs', 'Jobs in each queue by state (waiting, active, delayed, failed, waiting_children)', ['queue', 'state'], (s, emit) => {
    for (const [queue, counts] of Object.entries(s.queues)) {
      for (const [state, count] of Object.entries(counts)) emit(count, { queue, state });
    }
  });
  gauge(
    'chunkvault_oldest_unverified_replica_age_seconds',
    'Seconds since the least recently verified stored replica was last read back intact (0 when none is stored)',
    [],
    (s, emit) => emit(s.oldest_verification === null ? 0 : Math.max(0, (now() - Date.parse(s.oldest_verification)) / 1000)),
  );

  if (source.scrubMaxAgeSeconds > 0) {
    gauge('chunkvault_scrub_max_age_seconds', 'chunkvault.maintenance.scrub_max_age_days in seconds: every stored replica should be read back intact at least this often', [], (_s, emit) => emit(source.scrubMaxAgeSeconds));
  }

  counter('chunkvault_corruptions_found_total', 'Replicas found missing or corrupt (by reads, repairs and scrubs)', (s) => s.corruptions_found);
  counter('chunkvault_repairs_done_total', 'Corrupt replicas rewritten from a good one', (s) => s.repairs_done);
  counter('chunkvault_checkpoints_created_total', 'Checkpoints sealed', (s) => s.checkpoints_created);
  counter('chunkvault_replicas_expired_total', 'Replicas deleted by retention', (s) => s.expired_replicas);
  counter('chunkvault_expired_bytes_total', 'Bytes deleted by retention', (s) => s.expired_bytes);
  counter('chunkvault_replicas_compressed_total', 'Replicas compressed by maintenance', (s) => s.compressed_replicas);
  counter('chunkvault_compression_saved_bytes_total', 'Backend bytes saved by compression', (s) => s.bytes_saved_by_compression);

  gauge('chunkvault_maintenance_last_pass_timestamp_seconds', 'When the last maintenance pass finished (Unix seconds; 0 before the first)', [], (s, emit) => {
    emit(s.last_maintenance ? Date.parse(s.last_maintenance.finishedAt) / 1000 : 0);
  });
  gauge(
    'chunkvault_maintenance_next_pass_due_timestamp_seconds',
    'When the next scheduled maintenance pass is due: the first time of the schedule (cron, UTC) after the last pass finished (Unix seconds; left out before the first pass and without a schedule)',
    ['schedule'],
    (s, emit) => {
      const schedule = source.maintenanceSchedule;
      const due = nextScheduledAfter(schedule, s.last_maintenance?.finishedAt);
      if (schedule !== undefined && due !== undefined) emit(due / 1000, { schedule });
    },
  );
  gauge('chunkvault_maintenance_last_pass_failed', '1 when the last maintenance pass stopped on an error, else 0', [], (s, emit) => {
    emit(s.last_maintenance?.error ? 1 : 0);
  });
  gauge('chunkvault_maintenance_last_pass_replicas', 'Replicas the last maintenance pass acted on, by task and result', ['task', 'result'], (s, emit) => {
    for (const [task, result, value] of passFigures(s.last_maintenance).replicas) emit(value, { task, result });
  });
  gauge('chunkvault_maintenance_last_pass_bytes', 'Bytes the last maintenance pass acted on, by task and result', ['task', 'result'], (s, emit) => {
    for (const [task, result, value] of passFigures(s.last_maintenance).bytes) emit(value, { task, result });
  });
}

/** The first tick of `pattern` (UTC) after `finishedAt`, in ms; undefined without either. */
function nextScheduledAfter(pattern: string | undefined, finishedAt: string | undefined): number | undefined {
  if (pattern === undefined || finishedAt === undefined) return undefined;
  return CronExpressionParser.parse(pattern, { currentDate: new Date(finishedAt), tz: 'UTC' }).next().getTime();
}

type Figure = [task: string, result: string, value: number];

/** The counts and bytes of the tasks a maintenance pass ran (tasks it did not run are left out). */
function passFigures(report: MaintenanceReport | null): { replicas: Figure[]; bytes: Figure[] } {
  const replicas: Figure[] = [];
  const bytes: Figure[] = [];
  for (const { task, result } of taskResultsOf(report)) {
    const figures = task.figures(result);
    replicas.push(...figures.replicas.map(([label, value]): Figure => [task.name, label, value]));
    bytes.push(...figures.bytes.map(([label, value]): Figure => [task.name, label, value]));
  }
  return { replicas, bytes };
}
