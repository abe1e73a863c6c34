/**
 * Amazon S3 backend (and S3-compatible servers such as Ceph radosgw, via `endpoint` and
 * `forcePathStyle`). The SDK is imported on first use, so a deployment without S3 never loads it.
 *
 * A put checks the body against its announced size and checksum before anything becomes
 * visible. Bodies up to `singlePutMaxBytes` are buffered and sent in one PutObject with a
 * Content-MD5 the server checks; larger ones go up as a multipart upload with a Content-MD5 on
 * every part, and the upload is completed only once the whole body matched (otherwise it is
 * aborted, so nothing appears under the key). The chunk checksum and its algorithm are stored
 * as object metadata (`cv-checksum`, `cv-algorithm`), so the bucket itself says what each
 * object should hash to; reindex rebuilds the catalog from the sidecars (`.meta.json`) beside
 * the data, not from this metadata.
 *
 * Credentials come only from the SDK's default chain (environment, shared config, instance
 * role); none are accepted here.
 */
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { BackendIoError, ConfigError } from '../errors.js';
import { type Backend, type BackendCapabilities, type BackendUsage, type ObjectInfo, type PutOptions, piecesOf, probeByListing, usageFromListing } from './backend.js';
import {
  BodyVerifier,
  chunkMetadata,
  DEFAULT_PART_SIZE_BYTES,
  DEFAULT_SINGLE_PUT_MAX_BYTES,
  DEFAULT_STALE_UPLOAD_AFTER_MS,
  hex,
  METADATA_CHECKSUM,
  multipartEtag,
  normaliseKeyPrefix,
  objectStoreLocation,
  partsOf,
  putBySize,
  type RangeAnswer,
  readRange,
} from './cloud-support.js';
import { type CloudErrorDialect, CloudErrors, sdkMessage } from './cloud-errors.js';
import { assertSafeKey } from './storage-key.js';

export interface S3BackendOptions {
  /** Name recorded in the catalog for replicas on this backend. Default "aws_s3". */
  name?: string;
  bucket: string;
  region: string;
  /** Endpoint of an S3-compatible server (e.g. "http://127.0.0.1:7480"); AWS when absent. */
  endpoint?: string;
  /** Path-style URLs (bucket in the path), which most S3-compatible servers need. */
  forcePathStyle?: boolean;
  /** Every key is stored under this prefix (e.g. "chunkvault/"). */
  keyPrefix?: string;
  /** Bodies up to this size go in one PutObject; larger ones as a multipart upload. Default 8 MiB. */
  singlePutMaxBytes?: number;
  /** Part size of multipart uploads; S3 needs at least 5 MiB for every part but the last. Default 8 MiB. */
  partSizeBytes?: number;
  /** Multipart uploads started longer ago than this are aborted by sweepIncompleteWrites. Default 24 h. */
  staleUploadAfterMs?: number;
  /** Attempts per request inside the SDK (its own retry with backoff). Default: the SDK's (3). */
  maxAttempts?: number;
}

type S3Sdk = typeof import('@aws-sdk/client-s3');

interface Connection {
  sdk: S3Sdk;
  client: S3Client;
}

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

export class S3Backend implements Backend {
  readonly name: string;
  readonly location: string;
  /** An object store declares nothing beyond the contract. */
  readonly capabilities: BackendCapabilities = {};
  readonly #options: S3BackendOptions;
  readonly #bucket: string;
  readonly #keyPrefix: string;
  readonly #singlePutMaxBytes: number;
  readonly #partSizeBytes: number;
  readonly #staleUploadAfterMs: number;
  readonly #errors: CloudErrors;
  #connection: Promise<Connection> | undefined;

  constructor(options: S3BackendOptions) {
    if (!options.bucket) throw new ConfigError('S3 backend: bucket is required');
    if (!options.region) throw new ConfigError('S3 backend: region is required');
    this.#options = options;
    this.name = options.name ?? 'aws_s3';
    this.#bucket = options.bucket;
    this.#keyPrefix = normaliseKeyPrefix(options.keyPrefix, 'S3 backend');
    this.#singlePutMaxBytes = options.singlePutMaxBytes ?? DEFAULT_SINGLE_PUT_MAX_BYTES;
    this.#partSizeBytes = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    this.#staleUploadAfterMs = options.staleUploadAfterMs ?? DEFAULT_STALE_UPLOAD_AFTER_MS;
    if (!(this.#partSizeBytes >= 1)) throw new ConfigError('S3 backend: partSizeBytes must be positive');
    this.location = objectStoreLocation('s3', this.#bucket, this.#keyPrefix, options.endpoint);
    this.#errors = new CloudErrors(S3_ERROR_DIALECT, this.location);
  }

  put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    return putBySize(key, body, options, this.#singlePutMaxBytes, {
      single: (bytes, md5) => this.#putSingle(key, bytes, md5, options),
      large: () => this.#putMultipart(key, body, options),
      wrap: (error) => this.#errors.wrap(error, 'put', key),
    });
  }

  async get(key: string): Promise<Readable> {
    assertSafeKey(key);
    try {
      return (await this.#getObject(key)).body;
    } catch (error) {
      throw this.#errors.wrap(error, 'get', key);
    }
  }

  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return readRange(key, offset, length, {
      open: (first, last) => this.#getObject(key, `bytes=${first}-${last}`),
      statusOf,
      wrap: (error) => this.#errors.wrap(error, 'get', key),
    });
  }

  /** Undefined for a missing object. A HEAD has no error body, so a missing bucket also reads as undefined here (put, get and list report it). */
  async head(key: string): Promise<ObjectInfo | undefined> {
    assertSafeKey(key);
    const { sdk, client } = await this.#connect();
    try {
      const response = await client.send(new sdk.HeadObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key }));
      return { key, sizeBytes: response.ContentLength ?? 0, modifiedAt: response.LastModified ?? new Date(0) };
    } catch (error) {
      if (this.#errors.isObjectMissing(error)) return undefined;
      throw this.#errors.wrap(error, 'head', key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const { sdk, client } = await this.#connect();
    let token: string | undefined;
    do {
      let page;
      try {
        page = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#keyPrefix + prefix, ContinuationToken: token, MaxKeys: 1000 }),
        );
      } catch (error) {
        throw this.#errors.wrap(error, 'list', prefix || '(all)');
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined) continue;
        yield { key: item.Key.slice(this.#keyPrefix.length), sizeBytes: item.Size ?? 0, modifiedAt: item.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    const { sdk, client } = await this.#connect();
    try {
      // S3 answers 204 whether or not the object existed.
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key }));
    } catch (error) {
      if (codeOf(error) === 'NoSuchKey') return;
      throw this.#errors.wrap(error, 'delete', key);
    }
  }

  usage(): Promise<BackendUsage> {
    return usageFromListing(this);
  }

  probe(): Promise<void> {
    return probeByListing(this);
  }

  /** Aborts multipart uploads under the key prefix started longer ago than `staleUploadAfterMs`. */
  async sweepIncompleteWrites(): Promise<number> {
    const { sdk, client } = await this.#connect();
    const cutoff = Date.now() - this.#staleUploadAfterMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await client.send(
          new sdk.ListMultipartUploadsCommand({ Bucket: this.#bucket, Prefix: this.#keyPrefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        );
      } catch (error) {
        throw this.#errors.wrap(error, 'sweep', this.#keyPrefix || '(all)');
      }
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated.getTime() > cutoff) continue;
        try {
          await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: upload.Key, UploadId: upload.UploadId }));
          removed += 1;
        } catch (error) {
          if (codeOf(error) !== 'NoSuchUpload') throw this.#errors.wrap(error, 'sweep', upload.Key);
        }
      }
      if (!page.IsTruncated) return removed;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async close(): Promise<void> {
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection) (await connection.catch(() => undefined))?.client.destroy();
  }

  /** One GetObject, of the whole object or of an HTTP `range`. */
  async #getObject(key: string, range?: string): Promise<RangeAnswer> {
    const { sdk, client } = await this.#connect();
    const response = await client.send(new sdk.GetObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key, ...(range ? { Range: range } : {}) }));
    if (!response.Body) throw new BackendIoError(`get ${key}: the server returned no body`);
    return { body: response.Body as Readable, contentRange: response.ContentRange };
  }

  async #putSingle(key: string, bytes: Buffer, md5: Buffer, options: PutOptions): Promise<void> {
    const { sdk, client } = await this.#connect();
    const request = {
      Bucket: this.#bucket,
      Key: this.#keyPrefix + key,
      Body: bytes,
      ContentLength: bytes.byteLength,
      ContentMD5: md5.toString('base64'),
      ContentType: 'application/octet-stream',
      Metadata: chunkMetadata(options),
    };
    const response = await sendOnceMore(() => client.send(new sdk.PutObjectCommand(request)));
    // The ETag of a single PUT is the MD5 of what the server stored (unless KMS / customer-key encrypted).
    const etag = unquote(response.ETag);
    if (etag && etagIsMd5(response) && etag !== hex(md5)) {
      throw new BackendIoError(`put ${key}: the server stored ETag ${etag}, not the body's MD5 ${hex(md5)}`, { retryable: true });
    }
  }

  async #putMultipart(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    const { sdk, client } = await this.#connect();
    const Key = this.#keyPrefix + key;
    const created = await client.send(
      new sdk.CreateMultipartUploadCommand({ Bucket: this.#bucket, Key, ContentType: 'application/octet-stream', Metadata: chunkMetadata(options) }),
    );
    const UploadId = created.UploadId;
    if (!UploadId) throw new BackendIoError(`put ${key}: the server returned no multipart upload id`);
    try {
      const verifier = new BodyVerifier(key, options);
      const parts: { ETag: string; PartNumber: number }[] = [];
      const partMd5s: Buffer[] = [];
      for await (const part of partsOf(piecesOf(body), this.#partSizeBytes, verifier)) {
        const PartNumber = parts.length + 1;
        const uploaded = await sendOnceMore(() =>
          client.send(
            new sdk.UploadPartCommand({
              Bucket: this.#bucket,
              Key,
              UploadId,
              PartNumber,
              Body: part.bytes,
              ContentLength: part.bytes.byteLength,
              ContentMD5: part.md5.toString('base64'),
            }),
          ),
        );
        const etag = unquote(uploaded.ETag);
        if (!etag || (etagIsMd5(uploaded) && etag !== hex(part.md5))) {
          throw new BackendIoError(`put ${key}: part ${PartNumber} stored with ETag ${etag || '(none)'}, not its MD5 ${hex(part.md5)}`);
        }
        parts.push({ ETag: `"${etag}"`, PartNumber });
        partMd5s.push(part.md5);
      }
      // Refuses a body that did not match before the upload can become visible.
      verifier.finish();
      const completed = await client.send(
        new sdk.CompleteMultipartUploadCommand({ Bucket: this.#bucket, Key, UploadId, MultipartUpload: { Parts: parts } }),
      );
      if (etagIsMd5(completed)) await this.#verifyCompleted(key, unquote(completed.ETag), multipartEtag(partMd5s), options);
    } catch (error) {
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.#bucket, Key, UploadId })).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Confirms a completed multipart upload. radosgw answers CompleteMultipartUpload with an
   * empty ETag, so the object is read back. An object carrying another checksum was put by a
   * concurrent writer after ours (last writer wins, as for a single PUT): not an error.
   */
  async #verifyCompleted(key: string, completedEtag: string, expectedEtag: string, options: PutOptions): Promise<void> {
    if (completedEtag) {
      if (completedEtag !== expectedEtag) {
        throw new BackendIoError(`put ${key}: completed upload has ETag ${completedEtag}, expected ${expectedEtag}`, { retryable: true });
      }
      return;
    }
    const { sdk, client } = await this.#connect();
    const head = await client.send(new sdk.HeadObjectCommand({ Bucket: this.#bucket, Key: this.#keyPrefix + key }));
    if (head.Metadata?.[METADATA_CHECKSUM] !== options.checksum) return;
    const storedEtag = unquote(head.ETag);
    if (head.ContentLength !== options.sizeBytes || (storedEtag && storedEtag !== expectedEtag)) {
      throw new BackendIoError(
        `put ${key}: stored object has ${head.ContentLength} bytes and ETag ${storedEtag}, expected ${options.sizeBytes} bytes and ${expectedEtag}`,
        { retryable: true },
      );
    }
  }

  #connect(): Promise<Connection> {
    this.#connection ??= (async () => {
      let sdk: S3Sdk;
      try {
        sdk = await import('@aws-sdk/client-s3');
      } catch (error) {
        this.#connection = undefined;
        throw new ConfigError('S3 backend: the package @aws-sdk/client-s3 cannot be loaded', [], { cause: error });
      }
      const client = new sdk.S3Client({
        region: this.#options.region,
        ...(this.#options.endpoint ? { endpoint: this.#options.endpoint } : {}),
        forcePathStyle: this.#options.forcePathStyle ?? false,
        // The default (WHEN_SUPPORTED) streams an aws-chunked body with a trailing CRC that
        // S3-compatible servers store framed or reject; integrity comes from Content-MD5 instead.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        ...(this.#options.maxAttempts ? { maxAttempts: this.#options.maxAttempts } : {}),
      });
      return { sdk, client };
    })();
    return this.#connection;
  }
}

/** Sends a request once more when the server says the body arrived other than hashed; a second such answer is final. */
async function sendOnceMore<T>(send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    if (!DIGEST_CODES.has(codeOf(error) ?? '')) throw error;
    try {
      return await send();
    } catch (second) {
      if (!DIGEST_CODES.has(codeOf(second) ?? '')) throw second;
      const reason = (second as S3ServiceError).message ?? codeOf(second);
      throw new BackendIoError(`the server rejected the body's checksum twice (${codeOf(second)}: ${reason})`, { cause: second, retryable: false });
    }
  }
}

function codeOf(error: unknown): string | undefined {
  const candidate = error as S3ServiceError | undefined;
  return candidate?.Code ?? candidate?.name;
}

function statusOf(error: unknown): number | undefined {
  return (error as S3ServiceError | undefined)?.$metadata?.httpStatusCode;
}

/**
 * Whether an ETag is the MD5 of the data: not for objects encrypted with SSE-KMS or a
 * customer-provided key (AWS documents those ETags as opaque). Content-MD5 was checked by the
 * server either way.
 */
function etagIsMd5(response: { ServerSideEncryption?: string; SSECustomerAlgorithm?: string }): boolean {
  return !response.SSECustomerAlgorithm && !(response.ServerSideEncryption ?? '').startsWith('aws:kms');
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}
