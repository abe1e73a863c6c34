/**
 * What every CLI command shares: loading the config from --config, exit codes
 * (0 success, 1 operation failed, 2 bad usage or config, storage that is not the deployment's
 * included) and the error message on stderr.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load-config.js';
import { openChunkvault, type Chunkvault } from '../app.js';
import { ChunkvaultError, ConfigError } from '../errors.js';
import { idSchema } from '../domain/ids.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A command was called wrongly (bad argument or option value). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The config as the root program's --config (or CHUNKVAULT_CONFIG) and --pretty say. */
export function configFor(command: Command): LoadedConfig {
  let root = command;
  while (root.parent) root = root.parent;
  const { config: configPath, pretty } = root.opts<{ config?: string; pretty?: boolean }>();
  return loadConfig({ ...(configPath === undefined ? {} : { configPath }), ...(pretty ? { env: { ...process.env, LOG_FORMAT: 'pretty' } } : {}) });
}

/** Runs a command body and turns its outcome into an exit code, printing errors to stderr. */
export async function runCommand(body: () => Promise<number | void>): Promise<never> {
  let code: number;
  try {
    code = (await body()) ?? EXIT_OK;
  } catch (error) {
    code = exitCodeOf(error);
    process.stderr.write(`chunkvault: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  process.exit(code);
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof ConfigError || error instanceof UsageError) return EXIT_USAGE;
  // A process pointed at storage that is not the deployment's is configured wrongly, like a bad config.
  if (error instanceof ChunkvaultError && (error.code === 'E_INVALID_INPUT' || error.code === 'E_STORAGE_IDENTITY')) return EXIT_USAGE;
  // Not found, corrupt, I/O: the operation failed.
  return EXIT_FAILED;
}

export function positiveInteger(name: string): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
    return parsed;
  };
}

/** A TCP port option: 0 (per the option: off, or any free port) to 65535. */
export function portNumber(name: string): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!/^\d{1,5}$/.test(value) || parsed > 65_535) {
      throw new InvalidArgumentError(`${name} must be a port number (0-65535), got ${JSON.stringify(value)}`);
    }
    return parsed;
  };
}

/** An id argument (chunk, replica, node, checkpoint), held to the same rules as everywhere else. */
export function idArgument(name: string): (value: string) => string {
  return (value) => {
    const parsed = idSchema.safeParse(value);
    if (!parsed.success) throw new InvalidArgumentError(`${name} ${JSON.stringify(value)} ${parsed.error.issues[0]!.message}`);
    return value;
  };
}

/**
 * Runs a one-shot command body with chunkvault opened on the command's config (quietly:
 * unimplemented settings are reported by long-running commands), closing it afterwards.
 */
export function withVault(command: Command, body: (vault: Chunkvault) => Promise<number | void>): Promise<never> {
  return runCommand(async () => {
    const vault = await openChunkvault(configFor(command).config, { announceUnimplemented: false });
    try {
      return await body(vault);
    } finally {
      await vault.close();
    }
  });
}
