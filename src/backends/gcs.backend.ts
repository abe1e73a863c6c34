/**
 * Google Cloud Storage backend. The SDK is imported on first use, so a deployment without
 * GCS never loads it.
 *
 * A put checks the body against its announced size and checksum before anything becomes
 * visible under the key. Bodies up to `singlePutMaxBytes` are buffered and sent in one upload
 * whose object resource carries the body's MD5, which GCS checks; the MD5 the server reports
 * back is compared too. Larger bodies stream as a resumable upload to a temp object
 * (`<keyPrefix>.cvtmp~/...`, never listed), which is copied to the final key only once the
 * body and the server's MD5 matched, then removed; a crash leaves at most a temp object, which
 * sweepIncompleteWrites removes once it is stale; both ways are in gcs-upload.ts. The chunk
 * checksum and its algorithm are stored as custom metadata (`cv-checksum`, `cv-algorithm`), so
 * the bucket itself says what each object should hash to (reindex reads the sidecars, not this
 * metadata).
 *
 * Credentials come only from Google's Application Default Credentials. With a custom
 * `endpoint` (an emulator), the SDK sends none.
 */
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Bucket, File, FileMetadata, Storage } from '@google-cloud/storage';
import { BackendIoError, ConfigError } from '../errors.js';
import { type Backend, type BackendCapabilities, type BackendUsage, type ObjectInfo, type PutOptions, probeByListing, usageFromListing } from './backend.js';
import {
  DEFAULT_SINGLE_PUT_MAX_BYTES,
  DEFAULT_STALE_UPLOAD_AFTER_MS,
  normaliseKeyPrefix,
  objectStoreLocation,
  putBySize,
  type RangeAnswer,
  readRange,
  TEMP_FOLDER,
} from './cloud-support.js';
import { CloudErrors } from './cloud-errors.js';
import { GCS_ERROR_DIALECT, statusOf } from './gcs-errors.js';
import { type GcsPutTarget, putSingle, putThroughTemp } from './gcs-upload.js';
import { assertSafeKey } from './storage-key.js';

export interface GcsBackendOptions {
  /** Name recorded in the catalog for replicas on this backend. Default "gcp_gcs". */
  name?: string;
  bucket: string;
  /** The bucket's location, for messages only: GCS routes by bucket name. */
  region?: string;
  /** API endpoint of an emulator (e.g. "http://127.0.0.1:9199"); Google's when absent. */
  endpoint?: string;
  projectId?: string;
  /** Every key is stored under this prefix (e.g. "chunkvault/"). */
  keyPrefix?: string;
  /** Bodies up to this size go in one upload; larger ones as a resumable upload to a temp object. Default 8 MiB. */
  singlePutMaxBytes?: number;
  /** Temp objects older than this are removed by sweepIncompleteWrites. Default 24 h. */
  staleUploadAfterMs?: number;
  /** Attempts per request: inside the SDK (its own retry of idempotent requests), and of a media read in get() and getRange(). Default 4. */
  maxAttempts?: number;
}

type GcsSdk = typeof import('@google-cloud/storage');

/** Tries of a media read's request (the SDK's default for its own retries, which reads do not use). */
const DEFAULT_READ_ATTEMPTS = 4;
/** Wait before the second try of a read's request; doubles each time. */
const READ_RETRY_DELAY_MS = 100;

export class GcsBackend implements Backend {
  readonly name: string;
  readonly location: string;
  /** An object store declares nothing beyond the contract. */
  readonly capabilities: BackendCapabilities = {};
  readonly #options: GcsBackendOptions;
  readonly #keyPrefix: string;
  readonly #singlePutMaxBytes: number;
  readonly #staleUploadAfterMs: number;
  readonly #errors: CloudErrors;
  #connection: Promise<{ storage: Storage; bucket: Bucket; readBucket: Bucket }> | undefined;

  constructor(options: GcsBackendOptions) {
    if (!options.bucket) throw new ConfigError('GCS backend: bucket is required');
    this.#options = options;
    this.name = options.name ?? 'gcp_gcs';
    this.#keyPrefix = normaliseKeyPrefix(options.keyPrefix, 'GCS backend');
    this.#singlePutMaxBytes = options.singlePutMaxBytes ?? DEFAULT_SINGLE_PUT_MAX_BYTES;
    this.#staleUploadAfterMs = options.staleUploadAfterMs ?? DEFAULT_STALE_UPLOAD_AFTER_MS;
    this.location = objectStoreLocation('gs', options.bucket, this.#keyPrefix, options.endpoint);
    this.#errors = new CloudErrors(GCS_ERROR_DIALECT, this.location);
  }

  put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    return putBySize(key, body, options, this.#singlePutMaxBytes, {
      single: async (bytes, md5) => putSingle(await this.#target(), key, bytes, md5, options),
      large: async () => putThroughTemp(await this.#target(), key, body, options),
      wrap: (error) => this.#errors.wrap(error, 'put', key),
    });
  }

  async get(key: string): Promise<Readable> {
    assertSafeKey(key);
    const { bucket } = await this.#connect();
    try {
      // Asked first, so a missing object rejects here rather than as a stream error later.
      await bucket.file(this.#keyPrefix + key).getMetadata();
    } catch (error) {
      throw this.#errors.wrap(error, 'get', key);
    }
    return (await this.#openMedia(key)).body;
  }

  /**
   * One ranged media read, tried again as get()'s is. No metadata request first: the range is
   * read whole before this resolves, so a missing object's 404 rejects here anyway.
   */
  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return readRange(key, offset, length, {
      open: (first, last) => this.#openMedia(key, { start: first, end: last }),
      statusOf,
      wrap: (error) => this.#errors.wrap(error, 'get', key),
    });
  }

  /**
   * A media read of the object, or of the bytes `range.start` through `range.end`, tried again
   * after a retryable failure: no byte has been handed on until the response is there.
   */
  async #openMedia(key: string, range?: { start: number; end: number }): Promise<RangeAnswer> {
    const { readBucket } = await this.#connect();
    const file = readBucket.file(this.#keyPrefix + key);
    const attempts = this.#options.maxAttempts ?? DEFAULT_READ_ATTEMPTS;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#openRead(file, key, range);
      } catch (error) {
        const wrapped = this.#errors.wrap(error, 'get', key);
        if (attempt >= attempts || !(wrapped instanceof BackendIoError && wrapped.retryable)) throw wrapped;
        await sleep(READ_RETRY_DELAY_MS * 2 ** (attempt - 1));
      }
    }
  }

  /**
   * One media request; resolves with its body once the response is there, rejects when the
   * request fails first (the caller may try again: no byte has been handed on yet).
   *
   * The SDK's own retry is off for these requests (readBucket), and the stream is handed on
   * only after its response: on Node 24 both the SDK's retry (it destroys a request stream
   * from a response listener) and a read stream destroyed before its response make
   * teeny-request pipe into a destroyed stream, which ends in an unhandled rejection
   * (ERR_STREAM_UNABLE_TO_PIPE, googleapis/google-cloud-node#8670) that would end the process.
   */
  #openRead(file: File, key: string, range?: { start: number; end: number }): Promise<RangeAnswer> {
    // Reads are verified against the chunk checksum by the caller, so the SDK's own
    // (whole-object) validation is not needed (and the SDK refuses it for a range).
    const source = file.createReadStream({ validation: false, ...range });
    const out = new PassThrough();
    return new Promise((resolve, reject) => {
      let started = false;
      source.on('response', (response: { statusCode?: number; headers?: Record<string, string | string[] | undefined> }) => {
        // An error status is followed by the error, which says what it was.
        if (started || (response.statusCode ?? 200) >= 300) return;
        started = true;
        out.on('close', () => source.destroy());
        const contentRange = response.headers?.['content-range'];
        resolve({ body: out, contentRange: Array.isArray(contentRange) ? contentRange[0] : contentRange });
      });
      source.on('error', (error) => {
        if (started) out.destroy(this.#errors.wrap(error, 'get', key));
        else reject(error);
      });
      source.pipe(out);
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertSafeKey(key);
    const { bucket } = await this.#connect();
    try {
      const [metadata] = await bucket.file(this.#keyPrefix + key).getMetadata();
      return this.#infoOf(key, metadata);
    } catch (error) {
      if (this.#errors.isObjectMissing(error)) return undefined;
      throw this.#errors.wrap(error, 'head', key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const metadata of this.#listRaw(this.#keyPrefix + prefix, prefix || '(all)')) {
      const key = (metadata.name ?? '').slice(this.#keyPrefix.length);
      if (key.startsWith(TEMP_FOLDER)) continue;
      yield this.#infoOf(key, metadata);
    }
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    const { bucket } = await this.#connect();
    try {
      await bucket.file(this.#keyPrefix + key).delete({ ignoreNotFound: true });
    } catch (error) {
      throw this.#errors.wrap(error, 'delete', key);
    }
  }

  usage(): Promise<BackendUsage> {
    return usageFromListing(this);
  }

  probe(): Promise<void> {
    return probeByListing(this);
  }

  /** Removes temp objects of large puts created longer ago than `staleUploadAfterMs`. */
  async sweepIncompleteWrites(): Promise<number> {
    const { bucket } = await this.#connect();
    const cutoff = Date.now() - this.#staleUploadAfterMs;
    let removed = 0;
    for await (const metadata of this.#listRaw(this.#keyPrefix + TEMP_FOLDER, 'sweep')) {
      const created = Date.parse(metadata.timeCreated ?? '');
      if (!metadata.name || !(created <= cutoff)) continue;
      try {
        await bucket.file(metadata.name).delete({ ignoreNotFound: true });
        removed += 1;
      } catch (error) {
        throw this.#errors.wrap(error, 'sweep', metadata.name);
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    this.#connection = undefined;
  }

  async *#listRaw(fullPrefix: string, what: string): AsyncIterable<FileMetadata> {
    const { bucket } = await this.#connect();
    let pageToken: string | undefined;
    do {
      let files: File[];
      let next: { pageToken?: string } | null | undefined;
      try {
        [files, next] = await bucket.getFiles({ prefix: fullPrefix, autoPaginate: false, maxResults: 1000, ...(pageToken ? { pageToken } : {}) });
      } catch (error) {
        throw this.#errors.wrap(error, 'list', what);
      }
      for (const file of files) yield { ...file.metadata, name: file.name };
      pageToken = next?.pageToken;
    } while (pageToken);
  }

  /** Where puts go (gcs-upload.ts): the bucket whose client retries as `maxAttempts` says. */
  async #target(): Promise<GcsPutTarget> {
    const { bucket } = await this.#connect();
    return { bucket, keyPrefix: this.#keyPrefix };
  }

  #infoOf(key: string, metadata: FileMetadata): ObjectInfo {
    const modified = Date.parse(metadata.updated ?? metadata.timeCreated ?? '');
    return { key, sizeBytes: Number(metadata.size ?? 0), modifiedAt: new Date(Number.isNaN(modified) ? 0 : modified) };
  }

  #connect(): Promise<{ storage: Storage; bucket: Bucket; readBucket: Bucket }> {
    this.#connection ??= (async () => {
      let sdk: GcsSdk;
      try {
        sdk = await import('@google-cloud/storage');
      } catch (error) {
        this.#connection = undefined;
        throw new ConfigError('GCS backend: the package @google-cloud/storage cannot be loaded', [], { cause: error });
      }
      const common = {
        ...(this.#options.endpoint ? { apiEndpoint: this.#options.endpoint } : {}),
        ...(this.#options.projectId ? { projectId: this.#options.projectId } : {}),
      };
      const storage = new sdk.Storage({ ...common, ...sdkRetryOptions(this.#options.maxAttempts) });
      // Media reads retry in #openMedia, not in the SDK (see #openRead).
      const reads = new sdk.Storage({ ...common, retryOptions: { autoRetry: false } });
      return { storage, bucket: storage.bucket(this.#options.bucket), readBucket: reads.bucket(this.#options.bucket) };
    })();
    return this.#connection;
  }
}

/**
 * The SDK's retry settings for `maxAttempts` attempts per request. A single attempt turns its
 * retry off: the SDK reads `maxRetries: 0` as unset and makes it its default of 3.
 */
function sdkRetryOptions(maxAttempts: number | undefined): { retryOptions?: { autoRetry: false } | { maxRetries: number } } {
  if (!maxAttempts) return {};
  return { retryOptions: maxAttempts <= 1 ? { autoRetry: false } : { maxRetries: maxAttempts - 1 } };
}
