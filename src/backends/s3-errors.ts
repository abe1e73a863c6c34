/** How the S3 SDK's errors say what went wrong, for S3Backend, its puts (s3-upload.ts) and the cloud backends' shared error mapping (cloud-errors.ts). */
import { type CloudErrorDialect, type DigestRefusal, sdkMessage } from './cloud-errors.js';

/** What the SDK's errors carry that matters here. */
interface S3ServiceError {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** How the SDK's errors say what went wrong (a HEAD's 404 has no body, so its code is just "NotFound"). */
export const S3_ERROR_DIALECT: CloudErrorDialect = {
  statusOf,
  codeOf,
  messageOf: sdkMessage,
  objectMissingCodes: new Set(['NoSuchKey']),
  containerMissingCodes: new Set(['NoSuchBucket']),
  transientCodes: new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeoutException', 'InternalError', 'ServiceUnavailable']),
};

/** The server received other bytes than the client hashed: worth sending once more, never forever. */
const DIGEST_CODES = new Set(['BadDigest', 'XAmzContentSHA256Mismatch']);

/**
 * How S3 refuses a body for its hash, for sendOnceMore (cloud-errors.ts): BadDigest when it does
 * not hash to its Content-MD5, XAmzContentSHA256Mismatch when not to its signed SHA-256.
 */
export const S3_DIGEST_REFUSAL: DigestRefusal = {
  matches: (error) => DIGEST_CODES.has(codeOf(error) ?? ''),
  twiceMessage: (error) => `the server rejected the body's checksum twice (${codeOf(error)}: ${(error as S3ServiceError).message ?? codeOf(error)})`,
};

/** The service's error code from the response body, else the SDK's name for the error (a HEAD's 404 has no body). */
export function codeOf(error: unknown): string | undefined {
  const candidate = error as S3ServiceError | undefined;
  return candidate?.Code ?? candidate?.name;
}

export function statusOf(error: unknown): number | undefined {
  return (error as S3ServiceError | undefined)?.$metadata?.httpStatusCode;
}
