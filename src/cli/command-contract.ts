/**
 * What every command promises its caller, declared in one call per command: the codes it exits
 * with (listed at the end of its --help) and, when it prints data, a `--json` option naming the
 * shape it prints. program.ts refuses to start when a command declared nothing, so a new
 * command cannot ship without its exit codes, and the --json help text cannot drift from the
 * option: both come from here.
 *
 * The codes are the ones runCommand and program.ts produce (cli-support.ts): 0 success,
 * 1 the operation failed or found problems, 2 bad usage or configuration.
 */
import type { Command } from 'commander';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from './cli-support.js';

/** When a command exits 1 (in its own words), what its 0 means where that is not plain success, and its own cases of 2. */
export interface ExitCodeHelp {
  /** Absent: the command never exits 1 (a group of subcommands only shows help or refuses). */
  failed?: string;
  ok?: string;
  /** Cases of bad usage this command adds to the common ones (e.g. "--chunk-id with more than one file"). */
  usage?: string;
}

export interface CommandContract {
  /**
   * The one JSON value `--json` prints on stdout (e.g. "an array of {id, createdAt}").
   * Absent: the command prints no data, and gets no `--json`.
   */
  json?: string;
  exitCodes: ExitCodeHelp;
}

const OK = 'success';
const USAGE = "bad usage or configuration: an unknown command or option, a bad argument, an invalid config file, storage that is not this deployment's";

/** Commander's own width for help that does not go to a terminal. */
const HELP_WIDTH = 80;

const declared = new WeakSet<Command>();

/** Gives `command` its `--json` option (when it prints data) and the "Exit codes:" end of its help. */
export function declareContract(command: Command, contract: CommandContract): Command {
  if (contract.json !== undefined) command.option('--json', `print the result as one JSON value on stdout (nothing else goes there): ${contract.json}`);
  command.addHelpText('after', exitCodesHelp(contract.exitCodes));
  declared.add(command);
  return command;
}

/** The "Exit codes:" section of a command's help. */
export function exitCodesHelp(codes: ExitCodeHelp): string {
  const rows: Array<[number, string | undefined]> = [[EXIT_OK, codes.ok ?? OK], [EXIT_FAILED, codes.failed], [EXIT_USAGE, codes.usage === undefined ? USAGE : `${USAGE}; ${codes.usage}`]];
  return `\nExit codes:\n${rows.flatMap(([code, text]) => (text === undefined ? [] : [hangingIndent(`  ${code}  `, text)])).join('\n')}`;
}

/** `text` wrapped at HELP_WIDTH after `lead`, its next lines indented as far as the lead (as commander does for options). */
function hangingIndent(lead: string, text: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && lead.length + line.length + 1 + word.length > HELP_WIDTH) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.map((text, i) => `${i === 0 ? lead : ' '.repeat(lead.length)}${text}`).join('\n');
}

/** Throws naming every command (the root and subcommands at any depth) that declared no contract. */
export function assertContracts(program: Command): void {
  const missing: string[] = [];
  const walk = (command: Command, path: string): void => {
    if (!declared.has(command)) missing.push(path);
    for (const sub of command.commands) walk(sub, `${path} ${sub.name()}`);
  };
  walk(program, program.name());
  if (missing.length) throw new Error(`commands without declared exit codes (see src/cli/command-contract.ts): ${missing.join(', ')}`);
}

/**
 * Prints one JSON value on stdout: what every `--json` prints. Indented, except 'line' for a
 * command that keeps running after it (serve), whose reader waits for one line.
 */
export function printJson(value: unknown, layout: 'indented' | 'line' = 'indented'): void {
  process.stdout.write(`${layout === 'line' ? JSON.stringify(value) : JSON.stringify(value, null, 2)}\n`);
}
