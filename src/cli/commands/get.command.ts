import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { idArgument, withVault } from '../cli-support.js';

export function registerGet(program: Command): void {
  program
    .command('get')
    .description('write a chunk\'s bytes (verified; bad replicas are repaired) to stdout or a file')
    .argument('<chunkId>', 'the chunk to read', idArgument('chunk id'))
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action((chunkId: string, options: { output?: string }, command: Command) =>
      withVault(command, async (vault) => {
        const bytes = await vault.getChunk(chunkId);
        if (options.output) await writeFile(options.output, bytes);
        else await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (error) => (error ? reject(error) : resolve())));
      }),
    );
}
