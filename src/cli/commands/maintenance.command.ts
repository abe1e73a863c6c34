import type { Command } from 'commander';
import { QUEUE_NAMES } from '../../jobs/job-table.js';
import type { RetentionResult } from '../../maintenance/retention.js';
import { withVault } from '../cli-support.js';
import { startProgress } from '../progress.js';

function printRetention(result: RetentionResult): void {
  const verb = result.dryRun ? 'would delete' : 'deleted';
  for (const item of result.deleted) {
    process.stdout.write(`${verb} ${item.backend}:${item.path} (chunk ${item.chunkId}, replica ${item.replicaId}, ${item.sizeBytes} bytes, stored ${item.storedAt})\n`);
  }
  process.stdout.write(
    `${result.dryRun ? 'dry run: ' : ''}${result.replicasDeleted} replica(s), ${result.bytesDeleted} bytes, ${result.chunksExpired} chunk(s) ${result.dryRun ? 'would expire' : 'expired'} (stored before ${result.cutoff})${result.more ? '; more are due than one pass deletes' : ''}\n`,
  );
}

export function registerMaintenance(program: Command): void {
  program
    .command('cleanup')
    .description('run a retention pass now: delete replicas stored more than retention_days ago')
    .option('--dry-run', 'print exactly what a real pass would delete, and delete nothing')
    .option('--json', 'print JSON')
    .action((options: { dryRun?: boolean; json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        const report = await vault.maintenance.runPass({ tasks: ['retention'], dryRun: options.dryRun ?? false });
        if (report.skipped) throw new Error(`${report.skipped}; try again later`);
        if (options.json) process.stdout.write(`${JSON.stringify(report.retention, null, 2)}\n`);
        else printRetention(report.retention!);
      }),
    );

  program
    .command('compress')
    .description('run a compression pass now: re-encode replicas older than compression_age_days')
    .option('--dry-run', 'print what a real pass would compress, and change nothing')
    .option('--json', 'print JSON')
    .action((options: { dryRun?: boolean; json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        const report = await vault.maintenance.runPass({ tasks: ['compression'], dryRun: options.dryRun ?? false });
        if (report.skipped) throw new Error(`${report.skipped}; try again later`);
        const result = report.compression!;
        if (options.json) return void process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        const verb = result.dryRun ? 'would compress' : 'compressed';
        for (const item of result.items) process.stdout.write(`${verb} ${item.backend}:${item.path} (chunk ${item.chunkId}, replica ${item.replicaId}, ${item.sizeBytes} bytes, stored ${item.storedAt})\n`);
        process.stdout.write(
          result.dryRun
            ? `dry run: ${result.items.length} replica(s) stored before ${result.cutoff} would be compressed with ${result.codec}${result.more ? ' (more are due than one pass handles)' : ''}\n`
            : `${result.replicasCompressed} replica(s) compressed with ${result.codec}: ${result.bytesBefore} -> ${result.bytesAfter} bytes; ${result.skippedNoGain} left as they were (no gain); ${result.recovered} interrupted compression(s) finished\n`,
        );
      }),
    );

  program
    .command('scrub')
    .description('re-read stored replicas (least recently verified first) and repair bad ones; queued for a worker unless --now')
    .option('--now', 'run the scrub in this process and print its report; exit 1 if it found a bad replica')
    .option('--json', 'print JSON')
    .action((options: { now?: boolean; json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        if (!options.now) {
          const job = await vault.queue(QUEUE_NAMES.maintenance).add('maintenance.run', { tasks: ['scrub'] });
          process.stdout.write(options.json ? `${JSON.stringify({ queued: true, jobId: job.id }, null, 2)}\n` : `scrub queued as job ${job.id}\n`);
          return;
        }
        const progress = startProgress('scrub: replicas', 0);
        const report = await vault.maintenance.runPass({ tasks: ['scrub'], onScrubProgress: (done, total) => progress.update(done, total) });
        progress.stop();
        if (report.skipped) throw new Error(`${report.skipped}; try again later`);
        const scrub = report.scrub!;
        if (options.json) process.stdout.write(`${JSON.stringify(scrub, null, 2)}\n`);
        else {
          process.stdout.write(`scrub: ${scrub.replicasChecked} replica(s) re-read, ${scrub.bytesRead} bytes, ${scrub.corruptFound} bad, ${scrub.repairsQueued} repair(s) queued\n`);
          for (const p of scrub.problems) process.stdout.write(`  ${p.chunkId}/${p.replicaId}: ${p.problem}\n`);
        }
        return scrub.corruptFound > 0 ? 1 : 0;
      }),
    );
}
