/** How the Cloud Storage SDK's errors say what went wrong, for GcsBackend and the cloud backends' shared error mapping (cloud-errors.ts). */
import { type CloudErrorDialect, sdkMessage } from './cloud-errors.js';

interface GcsError {
  code?: number | string;
  status?: number;
  message?: string;
  errors?: { reason?: string; message?: string }[];
  response?: { status?: number };
}

/**
 * How the SDK's errors say what went wrong. GCS answers "notFound" for a missing bucket and a
 * missing object alike; only the message tells them apart, and an object's message ("No such
 * object: <bucket>/<name>") may itself contain the word "bucket". The throttling reasons are
 * those the SDK itself retries on.
 */
export const GCS_ERROR_DIALECT: CloudErrorDialect = {
  statusOf,
  codeOf,
  messageOf: sdkMessage,
  objectMissingCodes: new Set(),
  containerMissingCodes: new Set(['bucketNotFound']),
  containerMissingMessage: /bucket does not exist|no such bucket/i,
  transientCodes: new Set(['rateLimitExceeded', 'userRateLimitExceeded']),
};

/** GCS answers 400 "Provided MD5 hash ... doesn't match calculated MD5 hash" (or the same for crc32c). */
export function isDigestRejection(error: unknown): boolean {
  return statusOf(error) === 400 && /md5|crc32c|hash/i.test(sdkMessage(error));
}

export function statusOf(error: unknown): number | undefined {
  const candidate = error as GcsError | undefined;
  if (typeof candidate?.code === 'number') return candidate.code;
  return candidate?.status ?? candidate?.response?.status;
}

/** The reason of the JSON API's answer, else the code of a failed connection. */
function codeOf(error: unknown): string | undefined {
  const candidate = error as GcsError | undefined;
  return candidate?.errors?.[0]?.reason ?? (typeof candidate?.code === 'string' ? candidate.code : undefined);
}
