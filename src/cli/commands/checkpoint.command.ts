import type { Command } from 'commander';
import { startProgress } from '../progress.js';
import { idArgument, withVault } from '../cli-support.js';

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function registerCheckpoint(program: Command): void {
  const checkpoint = program.command('checkpoint').description('checkpoints: immutable manifests of the chunks stored per interval');

  checkpoint
    .command('list')
    .description('every checkpoint, oldest first')
    .option('--json', 'print JSON')
    .action((options: { json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        const entries = await vault.checkpoints.list();
        if (options.json) return print(entries);
        if (entries.length === 0) process.stdout.write('no checkpoints yet\n');
        for (const e of entries) process.stdout.write(`${e.id}  ${e.createdAt}  ${e.chunkCount} chunks  ${e.totalBytes} bytes  ${e.checksum.slice(0, 16)}\n`);
      }),
    );

  checkpoint
    .command('show')
    .description('the manifest of a checkpoint (its own checksum verified)')
    .argument('<id>', 'the checkpoint id, e.g. cp-00000001', idArgument('checkpoint id'))
    .action((id: string, _options: unknown, command: Command) => withVault(command, async (vault) => print(await vault.checkpoints.manifest(id))));

  checkpoint
    .command('verify')
    .description('re-read every replica a checkpoint names; exit 1 if any is missing or corrupt')
    .argument('<id>', 'the checkpoint id, e.g. cp-00000001', idArgument('checkpoint id'))
    .option('--json', 'print JSON')
    .action((id: string, options: { json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        const progress = startProgress(`verify ${id}: chunks`, 0);
        const report = await vault.checkpoints.verify(id, (done, chunks) => progress.update(done, chunks));
        progress.stop();
        if (options.json) print(report);
        else {
          process.stdout.write(`${id}: ${report.chunks} chunks, ${report.replicasChecked} replicas checked, ${report.problems.length} problem(s), ${report.expired.length} expired by retention\n`);
          for (const p of [...report.problems, ...report.expired]) process.stdout.write(`  ${p.chunkId}/${p.replicaId} (${p.backend}:${p.path}): ${p.problem}\n`);
        }
        return report.problems.length ? 1 : 0;
      }),
    );

  checkpoint
    .command('create')
    .description('seal the chunks stored since the last checkpoint now (e.g. at the end of an ingest)')
    .option('--json', 'print JSON')
    .action((options: { json?: boolean }, command: Command) =>
      withVault(command, async (vault) => {
        const sealed = await vault.checkpoints.sealNow();
        if (options.json) return print(sealed);
        if (sealed.length === 0) process.stdout.write('nothing stored since the last checkpoint\n');
        for (const e of sealed) process.stdout.write(`sealed ${e.id}: ${e.chunkCount} chunks, ${e.totalBytes} bytes\n`);
      }),
    );
}
