import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { idArgument, withVault } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';

export function registerGet(program: Command): void {
  declareContract(
    program
      .command('get')
      .description('write a chunk\'s bytes (verified; bad replicas are repaired) to stdout or a file')
      .argument('<chunkId>', 'the chunk to read', idArgument('chunk id'))
      .option('-o, --output <file>', 'write to this file instead of stdout'),
    {
      // The bytes travel in the JSON only when no file takes them: a script gets one value either way.
      json: '{chunkId, sizeBytes, checksum, algorithm, output, base64}: output is the -o file (else null), base64 the bytes when there is no -o (else null)',
      exitCodes: { failed: 'the chunk is unknown, no replica of it is good, the -o file cannot be written, or Redis or the storage backend could not be reached' },
    },
  ).action((chunkId: string, options: { output?: string; json?: boolean }, command: Command) =>
    withVault(command, async (vault) => {
      const { chunk, bytes } = await vault.readChunk(chunkId);
      if (options.output) await writeFile(options.output, bytes);
      if (options.json) {
        const { checksum, algorithm } = chunk;
        return printJson({ chunkId, sizeBytes: bytes.byteLength, checksum, algorithm, output: options.output ?? null, base64: options.output ? null : bytes.toString('base64') });
      }
      if (!options.output) await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (error) => (error ? reject(error) : resolve())));
    }),
  );
}
