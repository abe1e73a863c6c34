/**
 * The one place where a cloud SDK's errors become chunkvault errors. Each object-store backend
 * describes how its SDK's errors look (a CloudErrorDialect: where the HTTP status and the
 * service's error code are, which codes mean "no such object", "no such bucket" or "try again
 * later"); the rules are applied here, once, for all of them:
 *
 * - a ChunkvaultError stays as it is (a BackendIoError gains the operation and key when its
 *   message lacks the key);
 * - "no such object" becomes a NotFoundError naming the operation, key and location;
 * - anything else becomes a BackendIoError naming the operation, key, location, the service's
 *   code and HTTP status and the SDK's message, retryable when the connection failed, the
 *   status says "later" (408, 429, 5xx) or the service's code says throttled or timed out.
 *
 * The SDK's error is always kept as `cause`. Also here, shared by the S3 and Azure puts:
 * sending a request once more when the server refused its body for not hashing to what the
 * request said (sendOnceMore). No cloud SDK is imported here.
 */
import { BackendIoError, ChunkvaultError, NotFoundError } from '../errors.js';

/** How one cloud SDK's errors say what went wrong. Shapes only: reading them never loads the SDK. */
export interface CloudErrorDialect {
  /** The HTTP status of the service's answer, when there was one. */
  statusOf(error: unknown): number | undefined;
  /** The service's own error code ("NoSuchKey", "BlobNotFound", a GCS reason), when it gave one. */
  codeOf(error: unknown): string | undefined;
  /** The SDK's message, as much of it as says what happened. */
  messageOf(error: unknown): string;
  /** Codes that mean "no such object", whatever the operation. */
  readonly objectMissingCodes: ReadonlySet<string>;
  /** Codes that mean the bucket or container itself is missing: a 404 with one is a configuration problem, not a missing object. */
  readonly containerMissingCodes: ReadonlySet<string>;
  /** The same, said only in the message by an SDK whose code does not tell the two apart. */
  readonly containerMissingMessage?: RegExp;
  /** The service's throttling and timeout codes: the same request may succeed later. */
  readonly transientCodes: ReadonlySet<string>;
}

/** Maps the errors of one object store (an SDK's dialect, at one location) to chunkvault errors. */
export class CloudErrors {
  readonly #dialect: CloudErrorDialect;
  readonly #location: string;

  constructor(dialect: CloudErrorDialect, location: string) {
    this.#dialect = dialect;
    this.#location = location;
  }

  /**
   * The chunkvault error for `error`, thrown by `operation` on `key` (or on what stands for
   * it, e.g. a list prefix): see the rules at the top of this file.
   */
  wrap(error: unknown, operation: string, key: string): Error {
    if (error instanceof ChunkvaultError) {
      if (error instanceof BackendIoError && !error.message.includes(key)) {
        return new BackendIoError(`${operation} ${key}: ${error.message}`, { cause: error.cause ?? error, retryable: error.retryable });
      }
      return error;
    }
    const code = this.#dialect.codeOf(error);
    const status = this.#dialect.statusOf(error);
    // Only a read names one object: a 404 to a put, list or delete means the bucket is missing.
    if (this.#dialect.objectMissingCodes.has(code ?? '') || (operation === 'get' && this.isObjectMissing(error))) {
      return new NotFoundError(`${operation} ${key}: no such object in ${this.#location}`, { cause: error });
    }
    const retryable = isTransientNetworkError(error) || isTransientStatus(status) || this.#dialect.transientCodes.has(code ?? '');
    const where = `${code ?? 'error'}${status ? ` (HTTP ${status})` : ''}`;
    return new BackendIoError(`${operation} ${key} in ${this.#location}: ${where}: ${this.#dialect.messageOf(error)}`, { cause: error, retryable });
  }

  /** True when the service answered that the object is not there (and not that its bucket or container is not). */
  isObjectMissing(error: unknown): boolean {
    const code = this.#dialect.codeOf(error);
    if (this.#dialect.objectMissingCodes.has(code ?? '')) return true;
    if (this.#dialect.statusOf(error) !== 404 || this.#dialect.containerMissingCodes.has(code ?? '')) return false;
    return !this.#dialect.containerMissingMessage?.test(this.#dialect.messageOf(error));
  }
}

/** How one SDK says the server refused a body that arrived other than its request said it hashes to. */
export interface DigestRefusal {
  /** Whether `error` is such a refusal. */
  matches(error: unknown): boolean;
  /** The message of the error that ends the request after a second refusal. */
  twiceMessage(error: unknown): string;
}

/**
 * Sends a request once more when the server refused its body as damaged in transit; a second
 * such refusal is final (a BackendIoError that is not retryable), never a loop.
 */
export async function sendOnceMore<T>(send: () => Promise<T>, refusal: DigestRefusal): Promise<T> {
  try {
    return await send();
  } catch (error) {
    if (!refusal.matches(error)) throw error;
    try {
      return await send();
    } catch (second) {
      if (!refusal.matches(second)) throw second;
      throw new BackendIoError(refusal.twiceMessage(second), { cause: second, retryable: false });
    }
  }
}

const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/**
 * True when `error` (or any error in its `cause` chain) is a connection-level failure:
 * refused, reset, timed out, unreachable. Such a request may succeed when tried again.
 */
function isTransientNetworkError(error: unknown): boolean {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 6; depth += 1) {
    const candidate = current as { code?: unknown; name?: unknown; errno?: unknown; cause?: unknown };
    if (typeof candidate.code === 'string' && TRANSIENT_NETWORK_CODES.has(candidate.code)) return true;
    if (typeof candidate.errno === 'string' && TRANSIENT_NETWORK_CODES.has(candidate.errno)) return true;
    if (candidate.name === 'TimeoutError' || candidate.name === 'RequestTimeout') return true;
    current = candidate.cause;
  }
  return false;
}

/** True for HTTP statuses that say "try again later": timeouts, throttling and server errors. */
function isTransientStatus(status: number | undefined): boolean {
  return status !== undefined && (status === 408 || status === 429 || status >= 500);
}

/** An SDK error's message (what a thrown non-Error says of itself). */
export function sdkMessage(error: unknown): string {
  return (error as { message?: string } | undefined)?.message ?? String(error);
}
