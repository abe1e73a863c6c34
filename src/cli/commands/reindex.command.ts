import type { Command } from 'commander';
import { withVault } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';
import { startProgress } from '../progress.js';

export function registerReindex(program: Command): void {
  const command = program
    .command('reindex')
    .description('rebuild the Redis index of the catalog from the metadata stored on the backends (journal, sidecars, pack record headers)')
    .option('--verify', 'also re-hash every data object before indexing it');
  declareContract(command, {
    json: '{checkpoints, metadataRecords, restored, problems: [string, each naming the key]}',
    exitCodes: { failed: 'it found problems (data missing, unreadable metadata, data without metadata, damage in a pack), or Redis or a storage backend could not be reached' },
  });
  command.action((options: { verify?: boolean; json?: boolean }, self: Command) =>
    withVault(self, async (vault) => {
      const progress = startProgress('reindex: metadata read', 0);
      const report = await vault.reindex({ verify: options.verify ?? false, onProgress: (read, listed) => progress.update(read, listed) });
      progress.stop();
      if (options.json) printJson(report);
      else {
        process.stdout.write(`restored ${report.checkpoints} checkpoints; read ${report.metadataRecords} metadata records, indexed ${report.restored} replicas, ${report.problems.length} problem(s)\n`);
        for (const problem of report.problems) process.stdout.write(`  ${problem}\n`);
      }
      return report.problems.length ? 1 : 0;
    }),
  );
}
