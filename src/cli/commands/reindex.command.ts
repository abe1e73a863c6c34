import type { Command } from 'commander';
import { withVault } from '../cli-support.js';
import { startProgress } from '../progress.js';

export function registerReindex(program: Command): void {
  program
    .command('reindex')
    .description('rebuild the Redis index of the catalog from the metadata stored on the backends')
    .option('--verify', 'also re-hash every data object before indexing it')
    .option('--json', 'print the report as JSON')
    .action((options: { verify?: boolean; json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        const progress = startProgress('reindex: metadata read', 0);
        const report = await vault.reindex({ verify: options.verify ?? false, onProgress: (read, listed) => progress.update(read, listed) });
        progress.stop();
        if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          process.stdout.write(`restored ${report.checkpoints} checkpoints; read ${report.metadataRecords} metadata records, indexed ${report.restored} replicas, ${report.problems.length} problem(s)\n`);
          for (const problem of report.problems) process.stdout.write(`  ${problem}\n`);
        }
        return report.problems.length ? 1 : 0;
      }),
    );
}
