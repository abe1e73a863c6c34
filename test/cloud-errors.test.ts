/**
 * How the cloud backends' SDK errors become chunkvault errors (src/backends/cloud-errors.ts),
 * one table per rule, with errors built by the SDKs' own error classes: "no such object" is a
 * NotFoundError, anything else a BackendIoError that says whether retrying can help; every
 * message names the operation, the key and the location; the SDK's error is the `cause`.
 *
 * The behaviour against real servers (server down, 503, missing bucket, refused credentials) is
 * in cloud-backends.test.ts; this covers the codes a loopback server never answers (throttling,
 * rate limits) and each SDK's way of telling a missing object from a missing bucket.
 */
import { NoSuchBucket, NoSuchKey, S3ServiceException } from '@aws-sdk/client-s3';
import { RestError } from '@azure/storage-blob';
import { ApiError } from '@google-cloud/storage';
import { describe, expect, it } from 'vitest';
import { AZURE_ERROR_DIALECT } from '../src/backends/azure-blob.backend.js';
import { type CloudErrorDialect, CloudErrors } from '../src/backends/cloud-errors.js';
import { GCS_ERROR_DIALECT } from '../src/backends/gcs-errors.js';
import { S3_ERROR_DIALECT } from '../src/backends/s3-errors.js';
import { BackendIoError, ChecksumMismatchError, NotFoundError } from '../src/errors.js';

const LOCATION = 'store://bucket/prefix/';
const KEY = 'ab/cd/chunk.bin';

function s3Error(name: string, status: number | undefined, message: string): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'server', $metadata: status === undefined ? {} : { httpStatusCode: status }, message });
}

function azureError(code: string, status: number | undefined, message: string): RestError {
  const error = new RestError(`${message}\nRequestId:5f1c0e2a-0001\nTime:2026-12-01T10:00:00.0000000Z`, { code, statusCode: status });
  error.details = { errorCode: code };
  return error;
}

/** As the SDK builds it from the JSON API's answer; the raw HTTP response only matters there for the `errors` it carries, given here. */
function gcsError(status: number, reason: string, message: string, errors = [{ reason, message }]): ApiError {
  return new ApiError({ code: status, message, errors, response: undefined as never });
}

function connectionRefused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
}

type Row = [label: string, dialect: CloudErrorDialect, error: unknown, operation: string, expected: typeof NotFoundError | typeof BackendIoError, retryable: boolean, says: string[]];

const ROWS: Row[] = [
  ['S3: NoSuchKey on get', S3_ERROR_DIALECT, new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } }), 'get', NotFoundError, false, ['no such object']],
  ['S3: NoSuchKey on any operation', S3_ERROR_DIALECT, new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } }), 'put', NotFoundError, false, ['no such object']],
  ['S3: a bare 404 on get', S3_ERROR_DIALECT, s3Error('NotFound', 404, 'UnknownError'), 'get', NotFoundError, false, ['no such object']],
  ['S3: NoSuchBucket on get', S3_ERROR_DIALECT, new NoSuchBucket({ message: 'The specified bucket does not exist', $metadata: { httpStatusCode: 404 } }), 'get', BackendIoError, false, ['NoSuchBucket (HTTP 404)', 'bucket does not exist']],
  ['S3: a 404 on list', S3_ERROR_DIALECT, s3Error('NotFound', 404, 'UnknownError'), 'list', BackendIoError, false, ['NotFound (HTTP 404)']],
  ['S3: SlowDown', S3_ERROR_DIALECT, s3Error('SlowDown', 503, 'Please reduce your request rate.'), 'put', BackendIoError, true, ['SlowDown (HTTP 503)', 'reduce your request rate']],
  ['S3: Throttling with a 400', S3_ERROR_DIALECT, s3Error('Throttling', 400, 'Rate exceeded'), 'put', BackendIoError, true, ['Throttling (HTTP 400)']],
  ['S3: AccessDenied', S3_ERROR_DIALECT, s3Error('AccessDenied', 403, 'Access Denied'), 'put', BackendIoError, false, ['AccessDenied (HTTP 403)', 'Access Denied']],
  ['S3: connection refused', S3_ERROR_DIALECT, connectionRefused(), 'get', BackendIoError, true, ['ECONNREFUSED']],
  ['GCS: notFound on get', GCS_ERROR_DIALECT, gcsError(404, 'notFound', `No such object: bucket-x/prefix/${KEY}`), 'get', NotFoundError, false, ['no such object']],
  ['GCS: notFound on get, in a bucket whose name says bucket', GCS_ERROR_DIALECT, gcsError(404, 'notFound', `No such object: ml-bucket/${KEY}`), 'get', NotFoundError, false, ['no such object']],
  ['GCS: notFound on delete', GCS_ERROR_DIALECT, gcsError(404, 'notFound', 'No such object'), 'delete', BackendIoError, false, ['notFound (HTTP 404)']],
  ['GCS: a missing bucket, said in the message', GCS_ERROR_DIALECT, gcsError(404, 'notFound', 'The specified bucket does not exist.'), 'get', BackendIoError, false, ['notFound (HTTP 404)', 'bucket does not exist']],
  ['GCS: bucketNotFound', GCS_ERROR_DIALECT, gcsError(404, 'bucketNotFound', 'Not Found'), 'get', BackendIoError, false, ['bucketNotFound (HTTP 404)']],
  ['GCS: userRateLimitExceeded with a 403', GCS_ERROR_DIALECT, gcsError(403, 'userRateLimitExceeded', 'Rate limit exceeded'), 'put', BackendIoError, true, ['userRateLimitExceeded (HTTP 403)']],
  ['GCS: forbidden', GCS_ERROR_DIALECT, gcsError(403, 'forbidden', 'caller does not have storage.objects.create access'), 'put', BackendIoError, false, ['forbidden (HTTP 403)', 'storage.objects.create']],
  ['GCS: backendError 503', GCS_ERROR_DIALECT, gcsError(503, 'backendError', 'Backend Error'), 'list', BackendIoError, true, ['backendError (HTTP 503)']],
  ['GCS: connection refused', GCS_ERROR_DIALECT, connectionRefused(), 'get', BackendIoError, true, ['ECONNREFUSED: connect ECONNREFUSED']],
  ['Azure: BlobNotFound on get', AZURE_ERROR_DIALECT, azureError('BlobNotFound', 404, 'The specified blob does not exist.'), 'get', NotFoundError, false, ['no such object']],
  ['Azure: ContainerNotFound on get', AZURE_ERROR_DIALECT, azureError('ContainerNotFound', 404, 'The specified container does not exist.'), 'get', BackendIoError, false, ['ContainerNotFound (HTTP 404)', 'container does not exist.']],
  ['Azure: ServerBusy', AZURE_ERROR_DIALECT, azureError('ServerBusy', 503, 'The server is busy.'), 'put', BackendIoError, true, ['ServerBusy (HTTP 503)']],
  ['Azure: OperationTimedOut with a 400', AZURE_ERROR_DIALECT, azureError('OperationTimedOut', 400, 'The operation could not be completed within the permitted time.'), 'put', BackendIoError, true, ['OperationTimedOut']],
  ['Azure: REQUEST_SEND_ERROR', AZURE_ERROR_DIALECT, new RestError('socket hang up', { code: 'REQUEST_SEND_ERROR' }), 'list', BackendIoError, true, ['REQUEST_SEND_ERROR: socket hang up']],
  ['Azure: AuthorizationFailure', AZURE_ERROR_DIALECT, azureError('AuthorizationFailure', 403, 'This request is not authorized to perform this operation.'), 'put', BackendIoError, false, ['AuthorizationFailure (HTTP 403)', 'not authorized']],
];

describe('cloud SDK errors become chunkvault errors', () => {
  it.each(ROWS)('%s', (_label, dialect, error, operation, expected, retryable, says) => {
    const wrapped = new CloudErrors(dialect, LOCATION).wrap(error, operation, KEY);

    expect(wrapped).toBeInstanceOf(expected);
    expect(wrapped).toMatchObject({ retryable, cause: error });
    expect(wrapped.message).toContain(`${operation} ${KEY}`);
    expect(wrapped.message).toContain(LOCATION);
    for (const part of says) expect(wrapped.message).toContain(part);
  });

  it("keeps only the first line of Azure's messages (the rest is a request id and a time)", () => {
    const wrapped = new CloudErrors(AZURE_ERROR_DIALECT, LOCATION).wrap(azureError('ServerBusy', 503, 'The server is busy.'), 'put', KEY);

    expect(wrapped.message).toMatch(/The server is busy\.$/);
  });

  it('keeps the whole of a GCS message that lists several errors', () => {
    const error = gcsError(400, 'invalid', 'Invalid argument.', [{ reason: 'invalid', message: 'Metadata part is too large.' }]);

    const wrapped = new CloudErrors(GCS_ERROR_DIALECT, LOCATION).wrap(error, 'put', KEY);

    expect(wrapped.message).toContain('Metadata part is too large.');
  });
});

describe("chunkvault's own errors pass through", () => {
  const errors = new CloudErrors(S3_ERROR_DIALECT, LOCATION);

  it('as they are when they name the key', () => {
    const mismatch = new ChecksumMismatchError(`storage key ${KEY}`, 'aa', 'bb');

    expect(errors.wrap(mismatch, 'put', KEY)).toBe(mismatch);
  });

  it('with the operation and key added to a BackendIoError that lacks them, its retryability and cause kept', () => {
    const sdkError = s3Error('BadDigest', 400, 'The Content-MD5 you specified did not match what we received.');
    const inner = new BackendIoError('the server rejected the body checksum twice', { cause: sdkError, retryable: false });

    const wrapped = errors.wrap(inner, 'put', KEY);

    expect(wrapped).toBeInstanceOf(BackendIoError);
    expect(wrapped).toMatchObject({ retryable: false, cause: sdkError });
    expect(wrapped.message).toBe(`put ${KEY}: the server rejected the body checksum twice`);
  });
});

describe('a head tells a missing object from a missing bucket', () => {
  it.each([
    ['S3: a HEAD 404 (no error body)', S3_ERROR_DIALECT, s3Error('NotFound', 404, 'UnknownError'), true],
    ['S3: NoSuchBucket', S3_ERROR_DIALECT, new NoSuchBucket({ message: 'The specified bucket does not exist', $metadata: { httpStatusCode: 404 } }), false],
    ['S3: a 403', S3_ERROR_DIALECT, s3Error('Forbidden', 403, 'UnknownError'), false],
    ['GCS: no such object', GCS_ERROR_DIALECT, gcsError(404, 'notFound', 'No such object: bucket-x/chunk.bin'), true],
    ['GCS: no such bucket', GCS_ERROR_DIALECT, gcsError(404, 'notFound', 'The specified bucket does not exist.'), false],
    ['Azure: BlobNotFound', AZURE_ERROR_DIALECT, azureError('BlobNotFound', 404, 'The specified blob does not exist.'), true],
    ['Azure: ContainerNotFound', AZURE_ERROR_DIALECT, azureError('ContainerNotFound', 404, 'The specified container does not exist.'), false],
    ['Azure: connection refused', AZURE_ERROR_DIALECT, connectionRefused(), false],
  ])('%s', (_label, dialect, error, missing) => {
    expect(new CloudErrors(dialect, LOCATION).isObjectMissing(error)).toBe(missing);
  });
});
