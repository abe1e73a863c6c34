/** The `chunkvault` command's commands (main.ts loads this). Exit codes: 0 success, 1 operation failed, 2 bad usage or config. */
import { Command, CommanderError } from 'commander';
import { EXIT_OK, EXIT_USAGE } from './cli-support.js';
import { assertContracts, declareContract } from './command-contract.js';
import { registerWorker } from './commands/worker.command.js';
import { registerPut } from './commands/put.command.js';
import { registerStats } from './commands/stats.command.js';
import { registerReindex } from './commands/reindex.command.js';
import { registerDemo } from './commands/demo.command.js';
import { registerGet } from './commands/get.command.js';
import { registerCheckpoint } from './commands/checkpoint.command.js';
import { registerMaintenance } from './commands/maintenance.command.js';
import { registerServe } from './commands/serve.command.js';

const program = new Command('chunkvault')
  .description('durable, verified storage of training-data chunk replicas')
  .option('-c, --config <file>', 'YAML config (default: $CHUNKVAULT_CONFIG, else config/storage_config.yml if present, else embedded defaults)')
  .option('--pretty', 'readable log lines on stderr instead of JSON (same as LOG_FORMAT=pretty)')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(`chunkvault: ${text.replace(/^error: /, '')}`) });
declareContract(program, { exitCodes: { failed: "the command failed or found problems (each command's --help says when)", ok: 'success (also: help shown with --help or `help`)' } });

for (const register of [registerWorker, registerPut, registerGet, registerCheckpoint, registerStats, registerMaintenance, registerReindex, registerServe, registerDemo]) register(program);
assertContracts(program);
const overrideExit = (command: Command): void => {
  command.exitOverride();
  command.commands.forEach(overrideExit);
};
overrideExit(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Commander's own code is 0 for help asked for (--help, `help`) and the version, and non-zero
    // for everything else, help shown for a missing subcommand included: that is bad usage.
    process.exit(error.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
  }
  throw error;
}
