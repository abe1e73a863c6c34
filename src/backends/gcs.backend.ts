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
 * sweepIncompleteWrites removes once it is stale. The chunk checksum and its algorithm are
 * stored as custom metadata (`cv-checksum`, `cv-algorithm`), so the bucket itself says what
 * each object should hash to (reindex reads the sidecars, not this metadata).
 *
 * Credentials come only from Google's Application Default Credentials. With a custom
 * `endpoint` (an emulator), the SDK sends none.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Bucket, File, FileMetadata, Storage } from '@google-cloud/storage';
import { BackendIoError, ConfigError } from '../errors.js';
import { type Backend, type BackendCapabilities, type BackendUsage, type ObjectInfo, type PutOptions, piecesOf, probeByListing, usageFromListing } from './backend.js';
import {
  BodyVerifier,
  chunkMetadata,
  DEFAULT_SINGLE_PUT_MAX_BYTES,
  DEFAULT_STALE_UPLOAD_AFTER_MS,
  hex,
  normaliseKeyPrefix,
  objectStoreLocation,
  putBySize,
  type RangeAnswer,
  readRange,
} from './cloud-support.js';
import { CloudErrors, sdkMessage } from './cloud-errors.js';
import { GCS_ERROR_DIALECT, isDigestRejection, statusOf } from './gcs-errors.js';
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

/** Temp objects of large puts live under this folder of the key prefix; no storage key can start with '.'. */
const TEMP_FOLDER = '.cvtmp~/';

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
      single: (bytes, md5) => this.#putSingle(key, bytes, md5, options),
      large: () => this.#putThroughTemp(key, body, options),
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

  async #putSingle(key: string, bytes: Buffer, md5: Buffer, options: PutOptions): Promise<void> {
    const { bucket } = await this.#connect();
    const file = bucket.file(this.#keyPrefix + key);
    for (let attempt = 1; ; attempt += 1) {
      try {
        // md5Hash in the object resource makes GCS refuse a body that arrives other than sent.
        await file.save(bytes, {
          resumable: false,
          validation: false,
          metadata: { contentType: 'application/octet-stream', md5Hash: md5.toString('base64'), metadata: chunkMetadata(options) },
        });
      } catch (error) {
        // Sent once more when refused for its hash, as on the other clouds; a second refusal is final.
        if (attempt === 1 && isDigestRejection(error)) continue;
        if (isDigestRejection(error)) throw new BackendIoError(`put ${key}: the server refused the body's MD5 twice: ${sdkMessage(error)}`, { cause: error, retryable: false });
        throw error;
      }
      const stored = file.metadata;
      if (stored.md5Hash === md5.toString('base64') && Number(stored.size) === bytes.byteLength) return;
      // A server that did not check (an emulator) stored other bytes: remove exactly that
      // generation, then send once more; a second mismatch is not a transient fault.
      await file.delete({ ignoreNotFound: true, ...(stored.generation ? { ifGenerationMatch: stored.generation } : {}) }).catch(() => undefined);
      const what = `the server stored ${stored.size} bytes with MD5 ${base64ToHex(stored.md5Hash)}, not ${bytes.byteLength} bytes with MD5 ${hex(md5)}`;
      if (attempt >= 2) throw new BackendIoError(`put ${key}: ${what}, twice`, { retryable: false });
    }
  }

  async #putThroughTemp(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    const { bucket } = await this.#connect();
    const temp = bucket.file(`${this.#keyPrefix}${TEMP_FOLDER}${Date.now()}-${randomBytes(8).toString('hex')}`);
    try {
      const verifier = new BodyVerifier(key, options);
      let bodyEnded = false;
      async function* verified(): AsyncIterable<Uint8Array> {
        for await (const piece of piecesOf(body)) {
          verifier.update(piece);
          yield piece;
        }
        bodyEnded = true;
      }
      const upload = temp.createWriteStream({
        resumable: true,
        validation: false,
        // An MD5 chunk checksum is known before the upload, so GCS can check the body at finalisation.
        metadata: { contentType: 'application/octet-stream', ...(options.algorithm === 'md5' ? { md5Hash: Buffer.from(options.checksum, 'hex').toString('base64') } : {}) },
      });
      try {
        await pipeline(Readable.from(verified(), { objectMode: false }), upload);
      } catch (error) {
        // The whole body was read, so a refusal may be GCS checking the MD5 above: report the
        // body's own mismatch if it has one.
        if (bodyEnded) verifier.finish();
        // Otherwise a hash refusal means damage in transit, worth a retry of the whole put
        // (the stream cannot be sent again from here), unlike other 400s.
        if (isDigestRejection(error)) {
          throw new BackendIoError(`put ${key}: the server refused the uploaded body's MD5: ${sdkMessage(error)}`, { cause: error, retryable: true });
        }
        throw error;
      }
      const md5 = verifier.finish();
      const uploaded = temp.metadata;
      if (uploaded.md5Hash !== md5.toString('base64') || Number(uploaded.size) !== options.sizeBytes) {
        throw new BackendIoError(
          `put ${key}: the upload stored ${uploaded.size} bytes with MD5 ${base64ToHex(uploaded.md5Hash)}, not ${options.sizeBytes} bytes with MD5 ${hex(md5)}`,
        );
      }
      // A server-side copy replaces the final object in one step, with the chunk's metadata.
      const final = bucket.file(this.#keyPrefix + key);
      const [, response] = await temp.copy(final, { contentType: 'application/octet-stream', metadata: chunkMetadata(options) });
      const copiedMd5 = (response as { resource?: FileMetadata } | undefined)?.resource?.md5Hash;
      if (copiedMd5 !== undefined && copiedMd5 !== md5.toString('base64')) {
        throw new BackendIoError(`put ${key}: the copy has MD5 ${base64ToHex(copiedMd5)}, not ${hex(md5)}`, { retryable: true });
      }
    } finally {
      await temp.delete({ ignoreNotFound: true }).catch(() => undefined);
    }
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

function base64ToHex(value: string | undefined): string {
  return value ? Buffer.from(value, 'base64').toString('hex') : '(none)';
}
