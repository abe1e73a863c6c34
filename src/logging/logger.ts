/**
 * Structured logs (pino) on stderr, so stdout stays free for command output (--json).
 * Secrets never reach a log line: known secret fields are redacted by configuration and
 * URLs are logged through `redactUrl`.
 */
import { pino, type Logger } from 'pino';
import type { Config } from '../config/config.schema.js';

export type { Logger };

const REDACT_PATHS = [
  'password', '*.password', 'secret', '*.secret', 'secretAccessKey', '*.secretAccessKey',
  'accessKeyId', '*.accessKeyId', 'authorization', '*.authorization', 'headers.authorization',
  'redisUrl', '*.redisUrl', 'connectionString', '*.connectionString',
];

export function createLogger(level: Config['chunkvault']['log_level'], destination: number = 2): Logger {
  return pino(
    { name: 'chunkvault', level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } },
    pino.destination({ dest: destination, sync: true }),
  );
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
