/**
 * The catalog's Lua scripts (scripts/*.lua), the one way to run them, and the one place their
 * replies are read. Each state change of a replica or a checkpoint and every counter it moves
 * happen in one script, so a transition is counted exactly once even when a job runs twice
 * (at-least-once processing) or two workers race.
 *
 * Each file opens with a header naming its KEYS, its ARGV and its reply. Every key a script
 * touches comes in KEYS, from CatalogKeys (see catalog-keys.ts for the two key bases); its
 * other input is one JSON object in ARGV[1], whose numbers are sent as strings so Lua never
 * formats a large one in exponent notation. `--- @include NAME` pulls in scripts/includes/NAME.lua
 * (the chunk keys, refresh_chunk, the stored counters, the per-minute series), once per script.
 */
import { readFileSync } from 'node:fs';
import type { RedisClient } from '../redis/redis-endpoint.js';
import { CHUNK_STATUSES, type ChunkStatus } from '../domain/types.js';

/** Each script: its file under scripts/ and how many KEYS it takes ('batch': as many as its batch needs). */
export const CATALOG_SCRIPTS = {
  cvRegisterChunk: { file: 'register-chunk', keys: 'batch' },
  cvRecordStored: { file: 'record-stored', keys: 'batch' },
  cvRecordFailed: { file: 'record-failed', keys: 10 },
  cvReserveQuota: { file: 'reserve-quota', keys: 2 },
  cvReleaseQuota: { file: 'release-quota', keys: 2 },
  cvRecordCorrupt: { file: 'record-corrupt', keys: 10 },
  cvRecordExpired: { file: 'record-expired', keys: 9 },
  cvRecordCompressed: { file: 'record-compressed', keys: 2 },
  cvMoveReplica: { file: 'move-replica', keys: 1 },
  cvSegmentChunkEnded: { file: 'segment-chunk-ended', keys: 1 },
  cvCommitCheckpoint: { file: 'commit-checkpoint', keys: 5 },
  cvRestoreCheckpoint: { file: 'restore-checkpoint', keys: 7 },
  cvRenumberStrandedLedger: { file: 'renumber-stranded-ledger', keys: 4 },
} as const satisfies Record<string, { file: string; keys: number | 'batch' }>;

export type CatalogScript = keyof typeof CATALOG_SCRIPTS;

type ScriptedRedis = RedisClient & { [name in CatalogScript]: (...args: string[]) => Promise<unknown> };

const SCRIPT_DIR = new URL('./scripts/', import.meta.url);

/** A script's source with its includes in place (each at most once). */
export function scriptSource(file: string): string {
  const included = new Set<string>();
  const expand = (name: string, text: string): string =>
    text.replace(/^--- @include (\S+)\s*$/gm, (_line, include: string) => {
      if (included.has(include)) return '';
      included.add(include);
      return expand(include, readFileSync(new URL(`includes/${include}.lua`, SCRIPT_DIR), 'utf8'));
    });
  return expand(file, readFileSync(new URL(`${file}.lua`, SCRIPT_DIR), 'utf8'));
}

/** A script's reply was not one it can give: the Lua and this side disagree. */
export class UnexpectedReplyError extends Error {
  override readonly name = 'UnexpectedReplyError';
  constructor(script: CatalogScript, reply: unknown) {
    super(`catalog script ${script} replied ${JSON.stringify(reply)}, which it never should`);
  }
}

/** Runs the catalog's scripts on one Redis connection; each is sent once, then by its sha. */
export class CatalogScripts {
  readonly #redis: ScriptedRedis;

  constructor(redis: RedisClient) {
    const scripted = redis as ScriptedRedis;
    for (const [name, { file, keys }] of Object.entries(CATALOG_SCRIPTS)) {
      if (typeof scripted[name as CatalogScript] !== 'function') {
        // A batch script takes its key count as its first argument (ioredis's defineCommand without numberOfKeys).
        redis.defineCommand(name, keys === 'batch' ? { lua: scriptSource(file) } : { numberOfKeys: keys, lua: scriptSource(file) });
      }
    }
    this.#redis = scripted;
  }

  /** Runs `script` with its KEYS and, when given, its JSON argument. */
  async run(script: CatalogScript, keys: readonly string[], arg?: object): Promise<unknown> {
    const expected: number | 'batch' = CATALOG_SCRIPTS[script].keys;
    if (expected !== 'batch' && keys.length !== expected) throw new Error(`catalog script ${script} takes ${expected} keys, not ${keys.length}`);
    const args = arg === undefined ? [] : [JSON.stringify(arg, (_key, value: unknown) => (typeof value === 'number' ? String(value) : value))];
    if (expected === 'batch') return this.#redis[script](String(keys.length), ...keys, ...args);
    return this.#redis[script](...keys, ...args);
  }
}

/** `reply` as one of `allowed`, or UnexpectedReplyError. */
export function oneOf<T extends string>(script: CatalogScript, reply: unknown, allowed: readonly T[]): T {
  if (typeof reply === 'string' && (allowed as readonly string[]).includes(reply)) return reply as T;
  throw new UnexpectedReplyError(script, reply);
}

/** A chunk's status. */
export function chunkStatusReply(script: CatalogScript, reply: unknown): ChunkStatus {
  return oneOf(script, reply, CHUNK_STATUSES);
}

/** A chunk's status, or the script's own word `other` ('skip', 'unknown'). */
export function chunkStatusOr<T extends string>(script: CatalogScript, reply: unknown, other: T): ChunkStatus | T {
  return oneOf<ChunkStatus | T>(script, reply, [...CHUNK_STATUSES, other]);
}

/** A whole-number reply. */
export function integerReply(script: CatalogScript, reply: unknown): number {
  const n = typeof reply === 'number' ? reply : typeof reply === 'string' ? Number(reply) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new UnexpectedReplyError(script, reply);
  return n;
}
