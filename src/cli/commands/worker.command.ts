import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { openChunkvault, type Chunkvault } from '../../app.js';
import { httpAuthFromEnv } from '../../http/http-auth.js';
import { startMetricsServer, type MetricsServer } from '../../metrics/metrics-server.js';
import { processDefaultMetrics } from '../../metrics/default-metrics.js';
import { configFor, portNumber, runCommand } from '../cli-support.js';
import { declareContract } from '../command-contract.js';

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

export function registerWorker(program: Command): void {
  const command = program
    .command('worker')
    .description('process replica jobs until SIGTERM/SIGINT (chunkvault.worker.concurrency at once; storage.performance.max_concurrent_writes of them write an object each)')
    .option('--metrics-port <n>', "serve this worker's /metrics on this port (default: chunkvault.metrics.worker_port; 0: off)", portNumber('--metrics-port'))
    .option(
      '--backends <names>',
      'with chunkvault.routing.queue_per_backend: write and repair only the replicas of these backends (comma-separated, e.g. aws_s3,local); the shared queues are served too',
      (value: string) => value.split(',').map((name) => name.trim()).filter((name) => name.length > 0),
    );
  // No --json: a worker prints no data (its logs go to stderr, its figures to /metrics).
  declareContract(command, {
    exitCodes: {
      ok: 'stopped by SIGTERM/SIGINT once its active jobs ended',
      failed: 'could not start (e.g. Redis could not be reached), or a second signal stopped it before its active jobs ended (they run again later)',
      usage: 'the metrics port is in use, HTTP credentials in the environment are incomplete',
    },
  });
  command.action((options: { metricsPort?: number; backends?: string[] }, self: Command) =>
    runCommand(async () => {
      const { config, source } = configFor(self);
      // Listen first: a signal during start-up still means a graceful stop once started.
      const stopSignal = new Promise<string>((resolve) => {
        for (const name of SIGNALS) process.once(name, () => resolve(name));
      });
      // The longest event-loop stall matters: one longer than lock_duration_ms lets a job run twice.
      const loopDelay = monitorEventLoopDelay({ resolution: 10 });
      loopDelay.enable();
      const vault = await openChunkvault(config);
      let metricsServer: MetricsServer | undefined;
      try {
        vault.logger.info({ config: source ?? '(embedded defaults)', basePath: config.storage.backends.local.base_path }, 'starting worker');
        // Before the pool: a taken port stops the start instead of leaving a worker nobody can see.
        metricsServer = await serveMetrics(vault, options.metricsPort ?? config.chunkvault.metrics.worker_port);
        await vault.startWorkers(options.backends ? { backends: options.backends } : {});
      } catch (error) {
        await metricsServer?.close();
        await vault.close();
        throw error;
      }
      const signal = await stopSignal;
      vault.logger.info({ signal, timeoutMs: config.chunkvault.worker.shutdown_timeout_ms }, 'shutting down: no new jobs, waiting for active ones');
      // A second signal while draining means "now": exit without waiting (jobs re-run later).
      for (const name of SIGNALS) process.once(name, () => process.exit(1));
      await vault.close();
      await metricsServer?.close();
      loopDelay.disable();
      const cpu = process.cpuUsage();
      vault.logger.info(
        { cpuUserMs: Math.round(cpu.user / 1000), cpuSystemMs: Math.round(cpu.system / 1000), maxRssKiB: peakRssKiB(), eventLoopMaxMs: Math.round(loopDelay.max / 1e6) },
        'worker stopped',
      );
      return 0;
    }),
  );
}

/** Serves the worker's own figures and the default process metrics at /metrics; port 0: not at all. */
async function serveMetrics(vault: Chunkvault, port: number): Promise<MetricsServer | undefined> {
  if (port === 0) return undefined;
  const host = vault.config.chunkvault.metrics.worker_host;
  const server = await startMetricsServer({ registry: Registry.merge([vault.metrics.registry, processDefaultMetrics()]), host, port, auth: httpAuthFromEnv(), logger: vault.logger });
  vault.logger.info({ url: `${server.url}/metrics` }, 'serving worker metrics');
  return server;
}

/**
 * This process's peak resident memory. On Linux from VmHWM: getrusage's maxrss survives
 * exec, so a worker spawned by a big process would report its parent's peak.
 */
function peakRssKiB(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]);
  } catch {
    // not Linux: fall back below
  }
  return process.resourceUsage().maxRSS;
}
