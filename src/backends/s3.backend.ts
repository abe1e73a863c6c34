/**
 * Amazon S3 backend (and S3-compatible servers such as Ceph radosgw, via `endpoint` and
 * `forcePathStyle`). The SDK is imported on first use, so a deployment without S3 never loads it.
 *
 * A put checks the body against its announced size and checksum before anything becomes
 * visible. Bodies up to `singlePutMaxBytes` are buffered and sent in one PutObject with a
 * Content-MD5 the server checks; larger ones go up as a multipart upload with a Content-MD5 on
 * every part, and the upload is completed only once the whole body matched (otherwise it is
 * aborted, so nothing appears under the key); both ways are in s3-upload.ts. The chunk
 * checksum and its algorithm are stored as object metadata (`cv-checksum`, `cv-algorithm`), so
 * the bucket itself says what each object should hash to; reindex rebuilds the catalog from
 * the sidecars (`.meta.json`) beside the data, not from this metadata.
 *
 * Credentials come only from the SDK's default chain (environment, shared config, instance
 * role); none are accepted here.
 */
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { BackendIoError, ConfigError } from '../errors.js';
import { type Backend, type BackendCapabilities, type BackendUsage, type ObjectInfo, type PutOptions, probeByListing, usageFromListing } from './backend.js';
import {
  DEFAULT_PART_SIZE_BYTES,
  DEFAULT_SINGLE_PUT_MAX_BYTES,
  DEFAULT_STALE_UPLOAD_AFTER_MS,
  normaliseKeyPrefix,
  objectStoreLocation,
  putBySize,
  type RangeAnswer,
  readRange,
} from './cloud-support.js';
import { CloudErrors } from './cloud-errors.js';
import { codeOf, S3_ERROR_DIALECT, statusOf } from './s3-errors.js';
import { putMultipart, putSingle, type S3PutTarget } from './s3-upload.js';
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
      single: async (bytes, md5) => putSingle(await this.#target(key), key, bytes, md5, options),
      large: async () => putMultipart(await this.#target(key), key, body, this.#partSizeBytes, options),
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

  /** Where a put of `key` goes (s3-upload.ts). */
  async #target(key: string): Promise<S3PutTarget> {
    const { sdk, client } = await this.#connect();
    return { sdk, client, Bucket: this.#bucket, Key: this.#keyPrefix + key };
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
