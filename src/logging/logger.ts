/**
 * Structured logs (pino) on stderr, so stdout stays free for command output (--json).
 * Secrets never reach a log line: known secret fields are redacted by configuration and
 * URLs are logged through `redactUrl`.
 */
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import { pino, type Logger } from 'pino';
import type { Config } from '../config/config.schema.js';
import { redactSecrets } from './redact.js';

export type { Logger };

const REDACT_PATHS = [
  'password', '*.password', 'secret', '*.secret', 'secretAccessKey', '*.secretAccessKey',
  'accessKeyId', '*.accessKeyId', 'authorization', '*.authorization', 'headers.authorization',
  'redisUrl', '*.redisUrl', 'connectionString', '*.connectionString',
];

/**
 * JSON lines by default (for log collectors); `pretty` renders the same records for a
 * person at a terminal (colours only on a TTY). Redaction happens before either.
 */
export function createLogger(level: Config['chunkvault']['log_level'], destination: number = 2, format: Config['chunkvault']['log_format'] = 'json'): Logger {
  const options = {
    name: 'chunkvault', level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid },
    serializers: { err: serializeError },
  };
  if (format === 'pretty') {
    // Loaded only here: every process logs, few of them for a person (it is 30 modules to load).
    const pinoPretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    return pino(options, pinoPretty({ destination, sync: true, colorize: isatty(destination), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' }));
  }
  return pino(options, pino.destination({ dest: destination, sync: true }));
}

/**
 * Errors as they are logged: type, code, message and stack, and the same for each cause,
 * with secrets removed. Never the other properties an SDK error carries (its request, with
 * headers and signed URLs, or its response).
 */
export function serializeError(error: unknown, depth = 0): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: redactSecrets(String(error)) };
  const out: Record<string, unknown> = { type: error.name, message: redactSecrets(error.message) };
  const { code, retryable } = error as { code?: unknown; retryable?: unknown };
  if (typeof code === 'string' || typeof code === 'number') out.code = code;
  if (typeof retryable === 'boolean') out.retryable = retryable;
  if (error.stack) out.stack = redactSecrets(error.stack);
  if (error.cause !== undefined && depth < 5) out.cause = serializeError(error.cause, depth + 1);
  return out;
}

/** The URL with any user name and password replaced, safe to print. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    if (parsed.username) parsed.username = '***';
    return parsed.toString();
  } catch {
    return '[unparseable url]';
  }
}
