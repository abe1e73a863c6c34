/**
 * Secrets never reach a log line or a recorded error: error messages of the cloud SDKs can
 * carry signed URLs and connection strings, and their error objects carry the request with
 * its headers.
 */
import { describe, expect, it } from 'vitest';
import { serializeError } from '../src/logging/logger.js';
import { BackendIoError, describeError } from '../src/errors.js';

const SAS = 'sv=2024-01-01&ss=b&sig=Zm9vYmFyc2VjcmV0c2lnbmF0dXJl%3D';

function sdkLikeError(): Error {
  const cause = Object.assign(new Error(`Server failed to authenticate the request: GET https://acct.blob.core.windows.net/c/b?${SAS}`), {
    name: 'RestError',
    code: 'AuthenticationFailed',
    request: { url: `https://acct.blob.core.windows.net/c/b?${SAS}`, headers: { authorization: 'SharedKey acct:c2lnbmF0dXJl' } },
    $response: { headers: { 'x-ms-request-id': 'r1' } },
  });
  return new BackendIoError('put a/b.dat in azure: AuthenticationFailed (HTTP 403)', { cause, retryable: false });
}

describe('logged and recorded errors', () => {
  it('keep type, code, message and cause, and drop the SDK request and response', () => {
    const logged = serializeError(sdkLikeError());
    expect(logged).toMatchObject({ type: 'BackendIoError', retryable: false, message: expect.stringContaining('AuthenticationFailed (HTTP 403)') });
    expect(logged.cause).toMatchObject({ type: 'RestError', code: 'AuthenticationFailed' });
    const text = JSON.stringify(logged);
    expect(text).not.toMatch(/Zm9vYmFyc2VjcmV0c2lnbmF0dXJl|c2lnbmF0dXJl|SharedKey|\$response/);
    expect(text).toContain('sig=[redacted]');
  });

  it('redact signed-URL and connection-string secrets from recorded messages', () => {
    const recorded = describeError(new Error(`upload to https://h/c/b?${SAS} failed; AccountKey=Eby8vdM02xNOcqF==;BlobEndpoint=http://h X-Amz-Signature=abcdef0123 done`));
    expect(recorded).not.toMatch(/Zm9vYmFy|Eby8vdM02xNOcqF|abcdef0123/);
    expect(recorded).toMatch(/sig=\[redacted\].*AccountKey=\[redacted\];BlobEndpoint=http:\/\/h X-Amz-Signature=\[redacted\] done/);
  });
});
