/** How the Azure Blob SDK's errors say what went wrong, for AzureBlobBackend, its puts (azure-blob-upload.ts) and the cloud backends' shared error mapping (cloud-errors.ts). */
import { type CloudErrorDialect, type DigestRefusal, sdkMessage } from './cloud-errors.js';

interface AzureError {
  statusCode?: number;
  code?: string;
  message?: string;
  details?: { errorCode?: string };
}

/** How the SDK's errors say what went wrong (REQUEST_SEND_ERROR: the request never got an answer). */
export const AZURE_ERROR_DIALECT: CloudErrorDialect = {
  statusOf,
  codeOf,
  messageOf,
  objectMissingCodes: new Set(['BlobNotFound']),
  containerMissingCodes: new Set(['ContainerNotFound']),
  transientCodes: new Set(['REQUEST_SEND_ERROR', 'ServerBusy', 'OperationTimedOut', 'InternalError']),
};

/** How the service refuses a body for its MD5, for sendOnceMore (cloud-errors.ts). */
export const AZURE_DIGEST_REFUSAL: DigestRefusal = {
  matches: isDigestRejection,
  twiceMessage: (error) => `the service rejected the body's MD5 twice (${codeOf(error)}: ${messageOf(error)})`,
};

/** Azure answers Md5Mismatch; Azurite answers InvalidOperation "Provided contentMD5 doesn't match." */
function isDigestRejection(error: unknown): boolean {
  const code = codeOf(error);
  return statusOf(error) === 400 && (code === 'Md5Mismatch' || /md5/i.test(sdkMessage(error)));
}

export function statusOf(error: unknown): number | undefined {
  return (error as AzureError | undefined)?.statusCode;
}

function codeOf(error: unknown): string | undefined {
  const candidate = error as AzureError | undefined;
  return candidate?.details?.errorCode ?? candidate?.code;
}

/** The service's messages go on with a request id and a timestamp; the first line says what happened. */
function messageOf(error: unknown): string {
  const text = sdkMessage(error);
  return text.split('\n')[0] ?? text;
}
