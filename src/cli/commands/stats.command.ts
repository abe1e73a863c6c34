import type { Command } from 'commander';
import { withVault } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';
import type { StorageStatistics } from '../../stats/statistics.js';
import { taskResultsOf } from '../../maintenance/maintenance-service.js';

export function registerStats(program: Command): void {
  const command = program.command('stats').description('storage statistics (the seed design\'s field names)');
  declareContract(command, {
    json: '{total_chunks, total_size_gb, checkpoints_created, storage_by_cloud, backend_stats, successful_stores, failed_stores, ...}: every field is listed in README.md, "CLI"',
    exitCodes: { failed: 'Redis could not be reached' },
  });
  command.action((options: { json?: boolean }, self: Command) =>
    withVault(self, async (vault) => {
      const stats = await vault.getStatistics();
      if (options.json) return printJson(stats);
      const lines = [
        `chunks stored:      ${stats.total_chunks} (pending ${stats.chunks_by_status.pending}, degraded ${stats.chunks_by_status.degraded}, failed ${stats.chunks_by_status.failed})`,
        `replicas stored:    ${stats.successful_stores} (failed ${stats.failed_stores}, corrupt ${stats.corrupt_replicas}, repairs done ${stats.repairs_done})`,
        `size:               ${stats.total_size_gb.toFixed(4)} GB (${stats.total_size_bytes} bytes)`,
        `checkpoints:        ${stats.checkpoints_created}`,
        `expired:            ${stats.expired_replicas} replicas (${stats.expired_bytes} bytes) by retention`,
        `compressed:         ${stats.compressed_replicas} replicas (${stats.bytes_saved_by_compression} bytes saved)`,
        `oldest verified:    ${stats.oldest_verification ?? 'n/a'}`,
        `last maintenance:   ${describeLast(stats.last_maintenance)}`,
        'by cloud:',
        ...Object.entries(stats.storage_by_cloud).map(([cloud, c]) => `  ${cloud}: ${c.count} replicas, ${(c.size_bytes / 1024 ** 2).toFixed(2)} MB`),
        'by node:',
        ...Object.entries(stats.storage_by_node).map(([node, c]) => `  ${node}: ${c.count} replicas, ${(c.size_bytes / 1024 ** 2).toFixed(2)} MB`),
        'backends:',
        ...Object.entries(stats.backend_stats).map(([name, b]) => `  ${name}: ${b.file_count} replicas, ${(b.total_size_bytes / 1024 ** 2).toFixed(2)} MB at ${b.base_path}`),
        'queues:',
        ...Object.entries(stats.queues).map(([name, q]) => `  ${name}: waiting ${q.waiting}, active ${q.active}, delayed ${q.delayed}, failed ${q.failed}`),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }),
  );
}

function describeLast(report: StorageStatistics['last_maintenance']): string {
  if (!report) return 'never';
  const parts = [report.finishedAt];
  for (const { task, result } of taskResultsOf(report)) {
    parts.push(`${task.name}: ${task.summary(result, (bytes) => `${bytes} bytes`).map((part) => part.text).join('')}`);
  }
  if (report.error) parts.push(`error: ${report.error}`);
  return parts.join('; ');
}
