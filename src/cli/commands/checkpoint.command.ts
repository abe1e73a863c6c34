import type { Command } from 'commander';
import { startProgress } from '../progress.js';
import { idArgument, withVault } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';

const ENTRY = '{id, sequence, createdAt, previousId, chunkCount, totalBytes, checksum, key, fromLedgerSeq, toLedgerSeq}';
const UNREACHABLE = 'Redis or the storage backend could not be reached';

export function registerCheckpoint(program: Command): void {
  const checkpoint = program.command('checkpoint').description('checkpoints: immutable manifests of the chunks stored per interval');
  declareContract(checkpoint, { exitCodes: { ok: "help shown (--help); each subcommand's --help lists its own codes", usage: 'no subcommand given' } });

  declareContract(checkpoint.command('list').description('every checkpoint, oldest first'), {
    json: `an array of ${ENTRY}, oldest first ([] while none is sealed)`,
    exitCodes: { failed: UNREACHABLE },
  }).action((options: { json?: boolean }, command: Command) =>
    withVault(command, async (vault) => {
      const entries = await vault.checkpoints.list();
      if (options.json) return printJson(entries);
      if (entries.length === 0) process.stdout.write('no checkpoints yet\n');
      for (const e of entries) process.stdout.write(`${e.id}  ${e.createdAt}  ${e.chunkCount} chunks  ${e.totalBytes} bytes  ${e.checksum.slice(0, 16)}\n`);
    }),
  );

  // JSON is this command's only output: --json is accepted so that every data-printing command takes it.
  declareContract(
    checkpoint
      .command('show')
      .description('the manifest of a checkpoint (its own checksum verified), as JSON with or without --json')
      .argument('<id>', 'the checkpoint id, e.g. cp-00000001', idArgument('checkpoint id')),
    {
      json: '{format, id, sequence, createdAt, previousId, fromLedgerSeq, toLedgerSeq, chunkCount, totalBytes, chunks: [{chunkId, checksum, algorithm, sizeBytes, createdAtMs, replicas: [{replicaId, backend, path, status}]}], checksum}',
      exitCodes: { failed: `no such checkpoint, its manifest is missing or fails its checksum, or ${UNREACHABLE}` },
    },
  ).action((id: string, _options: { json?: boolean }, command: Command) => withVault(command, async (vault) => printJson(await vault.checkpoints.manifest(id))));

  declareContract(
    checkpoint
      .command('verify')
      .description('re-read every replica a checkpoint names; exit 1 if any is missing or corrupt')
      .argument('<id>', 'the checkpoint id, e.g. cp-00000001', idArgument('checkpoint id')),
    {
      json: '{id, chunks, replicasChecked, problems: [{chunkId, replicaId, backend, path, problem}], expired: [same shape: deleted by retention, not problems]}',
      exitCodes: { failed: `a replica the checkpoint names is missing or corrupt, no such checkpoint, or ${UNREACHABLE}` },
    },
  ).action((id: string, options: { json?: boolean }, command: Command) =>
    withVault(command, async (vault) => {
      const progress = startProgress(`verify ${id}: chunks`, 0);
      const report = await vault.checkpoints.verify(id, (done, chunks) => progress.update(done, chunks));
      progress.stop();
      if (options.json) printJson(report);
      else {
        process.stdout.write(`${id}: ${report.chunks} chunks, ${report.replicasChecked} replicas checked, ${report.problems.length} problem(s), ${report.expired.length} expired by retention\n`);
        for (const p of [...report.problems, ...report.expired]) process.stdout.write(`  ${p.chunkId}/${p.replicaId} (${p.backend}:${p.path}): ${p.problem}\n`);
      }
      return report.problems.length ? 1 : 0;
    }),
  );

  declareContract(checkpoint.command('create').description('seal the chunks stored since the last checkpoint now (e.g. at the end of an ingest)'), {
    json: `an array of the checkpoints sealed, each ${ENTRY} ([] when nothing was stored since the last one)`,
    exitCodes: { failed: `another process held the checkpoint lock for 30 s, or ${UNREACHABLE}` },
  }).action((options: { json?: boolean }, command: Command) =>
    withVault(command, async (vault) => {
      const sealed = await vault.checkpoints.sealNow();
      if (options.json) return printJson(sealed);
      if (sealed.length === 0) process.stdout.write('nothing stored since the last checkpoint\n');
      for (const e of sealed) process.stdout.write(`sealed ${e.id}: ${e.chunkCount} chunks, ${e.totalBytes} bytes\n`);
    }),
  );
}
