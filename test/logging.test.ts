/**
 * Secrets never reach a log line or a recorded error: error messages of the cloud SDKs can
 * carry signed URLs and connection strings, and their error objects carry the request with
 * its headers.
 */
import { describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { serializeError } from '../src/logging/logger.js';
import { BackendIoError, describeError } from '../src/errors.js';
import { openChunkvault } from '../src/app.js';
import { startPrivateRedis } from '../src/redis/private-redis.js';
import { makeTestEnv, waitFor } from './support/harness.js';

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

describe('a Redis outage', () => {
  it('is logged through the logger, never printed raw to stderr by the queues', async () => {
    const redis = await startPrivateRedis();
    const env = await makeTestEnv({}, redis.url);
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const vault = await openChunkvault(env.config, { logger, announceUnimplemented: false });
    const printed = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      await vault.pingRedis();
      await redis.stop();
      // Both connections (catalog, queues) fail, and retry: two rounds of errors each.
      await waitFor('the outage to be logged', () => lines.filter((line) => line.includes('redis connection error')).length >= 4);
      expect(printed).not.toHaveBeenCalled();
    } finally {
      printed.mockRestore();
      vault.close().catch(() => undefined); // Redis is gone: closing would wait for it
      await env.cleanup();
    }
  });
});
