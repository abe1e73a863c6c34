import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { openChunkvault } from '../../app.js';
import type { DistributionTask, StoredChunk } from '../../domain/types.js';
import { configFor, idArgument, positiveInteger, runCommand, UsageError } from '../cli-support.js';
import { startProgress } from '../progress.js';

interface PutOptions {
  replica: Array<{ targetNode: string; cloudProvider: string }>;
  chunkId?: string;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
}

function parseReplica(value: string, previous: PutOptions['replica'] = []): PutOptions['replica'] {
  const match = /^([^:]+):([^:]+)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected NODE:CLOUD, got ${JSON.stringify(value)}`);
  return [...previous, { targetNode: idArgument('NODE')(match[1]!), cloudProvider: idArgument('CLOUD')(match[2]!) }];
}

export function registerPut(program: Command): void {
  program
    .command('put')
    .description('queue files as chunks, one replica job per --replica')
    .argument('<file...>', 'files to store, one chunk each')
    .requiredOption('-r, --replica <NODE:CLOUD>', 'a replica placement (repeat for more)', parseReplica)
    .option('--chunk-id <id>', 'chunk id (one file only; default: the file name)', idArgument('--chunk-id'))
    .option('-w, --wait', 'wait for the outcome and print one result per replica; exit 1 if any failed')
    .option('--timeout <seconds>', 'with --wait, give up after this many seconds', positiveInteger('--timeout'))
    .option('--json', 'print JSON (with --wait: the per-replica results; without: the queued and rejected replicas)')
    .action((files: string[], options: PutOptions, command: Command) =>
      runCommand(async () => {
        if (options.chunkId !== undefined && files.length !== 1) throw new UsageError('--chunk-id needs exactly one file');
        const { config } = configFor(command);
        const tasks: DistributionTask[] = [];
        for (const file of files) {
          const chunkId = options.chunkId ?? path.basename(file);
          const chunkData = await readFile(file).catch((error: Error) => {
            throw new UsageError(`cannot read ${file}: ${error.message}`);
          });
          tasks.push({
            taskId: `put-${chunkId}`,
            chunkId,
            chunkData,
            status: 'completed',
            replicas: options.replica.map((r, i) => ({ replicaId: `${chunkId}_replica_${i}`, chunkId, ...r, status: 'completed' })),
          });
        }
        const vault = await openChunkvault(config, { announceUnimplemented: false });
        try {
          const handle = await vault.producer.store(tasks);
          if (!options.wait) {
            if (options.json) process.stdout.write(`${JSON.stringify({ queued: handle.tracked, rejected: handle.rejected }, null, 2)}\n`);
            else {
              process.stdout.write(`queued ${handle.tracked.length} replica(s) of ${new Set(handle.tracked.map((r) => r.chunkId)).size} chunk(s)\n`);
              printResults(handle.rejected);
            }
            return handle.rejected.length ? 1 : 0;
          }
          const progress = startProgress('put: replicas ended', handle.total);
          const results = await handle
            .results({ ...(options.timeout === undefined ? {} : { timeoutMs: options.timeout * 1000 }), onProgress: (ended) => progress.update(ended) })
            .finally(() => progress.stop());
          if (options.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
          else printResults(results);
          return results.every((r) => r.status === 'stored') ? 0 : 1;
        } finally {
          await vault.close();
        }
      }),
    );
}

function printResults(results: readonly StoredChunk[]): void {
  for (const r of results) {
    process.stdout.write(
      r.status === 'stored'
        ? `stored ${r.chunkId}/${r.replicaId} on ${r.backend}:${r.storagePath} (${r.sizeBytes} bytes, ${r.algorithm} ${r.checksum})\n`
        : `FAILED ${r.chunkId}/${r.replicaId}: ${r.error ?? 'unknown error'}\n`,
    );
  }
}
