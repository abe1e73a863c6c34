/**
 * chunkvault's errors: a stable `code` to branch on, the id or key in the message, the
 * original error as `cause`, and whether trying again can help. The job layer turns a
 * non-retryable error into BullMQ's UnrecoverableError so the job fails without retries.
 */
import { redactSecrets } from './logging/redact.js';
export type ErrorCode =
  | 'E_CONFIG'
  | 'E_INVALID_INPUT'
  | 'E_CHECKSUM_MISMATCH'
  | 'E_SIZE_MISMATCH'
  | 'E_NOT_FOUND'
  | 'E_QUOTA_EXCEEDED'
  | 'E_CONFLICT'
  | 'E_BACKEND_IO'
  | 'E_REDIS_UNAVAILABLE'
  | 'E_REDIS_REPLICATION'
  | 'E_CORRUPT'
  | 'E_STORAGE_IDENTITY';

export class ChunkvaultError extends Error {
  override readonly name: string = 'ChunkvaultError';
  readonly code: ErrorCode;
  /** True when the same operation may succeed later (I/O hiccup), false when it never will. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A configuration file or value is invalid; `problems` lists each as "path: message". */
export class ConfigError extends ChunkvaultError {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly problems: readonly string[] = [],
    options: { cause?: unknown } = {},
  ) {
    super('E_CONFIG', problems.length ? `${message}\n  - ${problems.join('\n  - ')}` : message, options);
  }
}

/** Input from a producer (task, job data, id) that can never be stored as given. */
export class InvalidInputError extends ChunkvaultError {
  override readonly name = 'InvalidInputError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('E_INVALID_INPUT', message, options);
  }
}

/** Bytes did not hash to the checksum they were announced with; nothing was stored. */
export class ChecksumMismatchError extends ChunkvaultError {
  override readonly name = 'ChecksumMismatchError';
  constructor(what: string, expected: string, actual: string) {
    super('E_CHECKSUM_MISMATCH', `${what}: checksum mismatch (expected ${expected}, got ${actual})`);
  }
}

/** Bytes had another length than announced; nothing was stored. */
export class SizeMismatchError extends ChunkvaultError {
  override readonly name = 'SizeMismatchError';
  constructor(what: string, expected: number, actual: number) {
    super('E_SIZE_MISMATCH', `${what}: size mismatch (expected ${expected} bytes, got ${actual})`);
  }
}

export class NotFoundError extends ChunkvaultError {
  override readonly name: string = 'NotFoundError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('E_NOT_FOUND', message, options);
  }
}

/** A chunk's staged bytes are gone: every replica of it was settled (by some run) and they were freed, or lost. */
export class StagedBytesGoneError extends NotFoundError {
  override readonly name = 'StagedBytesGoneError';
}

/** A write would take a backend past its configured size limit; nothing was stored. */
export class QuotaExceededError extends ChunkvaultError {
  override readonly name = 'QuotaExceededError';
  constructor(message: string) {
    super('E_QUOTA_EXCEEDED', message);
  }
}

/** The request contradicts what is already recorded (e.g. a chunk id with another checksum). */
export class ConflictError extends ChunkvaultError {
  override readonly name = 'ConflictError';
  constructor(message: string) {
    super('E_CONFLICT', message);
  }
}

/** A storage backend operation failed; `retryable` says whether it is worth trying again. */
export class BackendIoError extends ChunkvaultError {
  override readonly name = 'BackendIoError';
  constructor(message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super('E_BACKEND_IO', message, { retryable: true, ...options });
  }
}

/** Every replica of a chunk is missing, unreadable or corrupt; `replicas` says what is wrong with each. */
export class ChunkCorruptError extends ChunkvaultError {
  override readonly name = 'ChunkCorruptError';
  constructor(
    readonly chunkId: string,
    readonly replicas: ReadonlyArray<{ replicaId: string; problem: string }>,
  ) {
    super('E_CORRUPT', `chunk ${chunkId}: no good replica (${replicas.map((r) => `${r.replicaId}: ${r.problem}`).join('; ') || 'no stored replicas'})`);
  }
}

/** A checkpoint manifest that is not one, or fails its own checksum or the one its index entry records. */
export class ManifestCorruptError extends ChunkvaultError {
  override readonly name = 'ManifestCorruptError';
  constructor(readonly checkpointId: string, message: string, options: { cause?: unknown } = {}) {
    super('E_CORRUPT', message, options);
  }
}

/** A replica's object is not on its backend (a read found it missing). The message is the catalog's word for it. */
export class ReplicaMissingError extends ChunkvaultError {
  override readonly name = 'ReplicaMissingError';
  constructor(options: { cause?: unknown } = {}) {
    super('E_NOT_FOUND', 'missing', options);
  }
}

/** What a backend holds where the deployment expects its marker (see storage/storage-identity.ts). */
export interface IdentityMismatch {
  backend: string;
  location: string;
  /** The marker the deployment records in Redis (its id; where and when it was made), or undefined when it records none. */
  expected: { id: string; location: string; host: string; createdAt: string } | undefined;
  /** Id of the marker the backend holds, or why there is none to compare ("no marker", "an unreadable marker ..."). */
  found: string;
}

/**
 * A backend is not the storage this deployment knows (another disk, bucket or key prefix): the
 * process must not start, or it would write replicas the others cannot find. Not retryable.
 */
export class StorageIdentityError extends ChunkvaultError {
  override readonly name = 'StorageIdentityError';
  constructor(readonly mismatches: readonly IdentityMismatch[], message: string) {
    super('E_STORAGE_IDENTITY', message);
  }
}

/** Short form of any thrown value for records and logs. */
export function describeError(error: unknown): string {
  return redactSecrets(error instanceof Error ? error.message : String(error));
}
