import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { openChunkvault } from '../../app.js';
import type { DistributionTask, StoredChunk } from '../../domain/types.js';
import { configFor, idArgument, positiveInteger, runCommand, UsageError } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';
import { startProgress } from '../progress.js';

interface PutOptions {
  replica: Array<{ targetNode: string; cloudProvider: string }>;
  chunkId?: string;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
}

/** What --json prints per replica (the producer's StoredChunk, the seed's fields). */
const STORED_CHUNK = '{chunkId, replicaId, status: "stored"|"failed", storagePath, backend, checksum, algorithm, sizeBytes, storedAt, nodeId, cloudProvider, taskId, error?}';

function parseReplica(value: string, previous: PutOptions['replica'] = []): PutOptions['replica'] {
  const match = /^([^:]+):([^:]+)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected NODE:CLOUD, got ${JSON.stringify(value)}`);
  return [...previous, { targetNode: idArgument('NODE')(match[1]!), cloudProvider: idArgument('CLOUD')(match[2]!) }];
}

export function registerPut(program: Command): void {
  const command = program
    .command('put')
    .description('queue files as chunks, one replica job per --replica')
    .argument('<file...>', 'files to store, one chunk each')
    .requiredOption('-r, --replica <NODE:CLOUD>', 'a replica placement (repeat for more)', parseReplica)
    .option('--chunk-id <id>', 'chunk id (one file only; default: the file name)', idArgument('--chunk-id'))
    .option('-w, --wait', 'wait for the outcome and print one result per replica; exit 1 if any failed')
    .option('--timeout <seconds>', 'with --wait, give up after this many seconds', positiveInteger('--timeout'));
  declareContract(command, {
    json: `without --wait {queued: [{chunkId, replicaId}], rejected: [${STORED_CHUNK}]}; with --wait an array of ${STORED_CHUNK}, one per replica`,
    exitCodes: { failed: 'a replica was refused, or with --wait a replica failed or --timeout passed; or Redis could not be reached', usage: 'a file that cannot be read, --chunk-id with more than one file' },
  });
  command.action((files: string[], options: PutOptions, self: Command) =>
    runCommand(async () => {
      if (options.chunkId !== undefined && files.length !== 1) throw new UsageError('--chunk-id needs exactly one file');
      const { config } = configFor(self);
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
          if (options.json) printJson({ queued: handle.tracked, rejected: handle.rejected });
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
        if (options.json) printJson(results);
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
