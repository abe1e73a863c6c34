/**
 * Azure Blob Storage backend (block blobs). The SDK is imported on first use, so a deployment
 * without Azure never loads it.
 *
 * A put checks the body against its announced size and checksum before anything becomes
 * visible under the key. Bodies up to `singlePutMaxBytes` are buffered and sent in one Put
 * Blob with a transactional Content-MD5 the service checks. Larger ones are staged as blocks of
 * a temp blob (`<keyPrefix>.cvtmp~/...`, never listed), each block with its own transactional
 * MD5; the temp blob is committed only once the whole body matched, then copied over the final
 * key server-side and removed. A crash leaves at most a temp blob, which sweepIncompleteWrites
 * removes once it is stale; both ways are in azure-blob-upload.ts, the SDK's error shapes in
 * azure-blob-errors.ts.
 * The chunk checksum and its algorithm are stored as blob metadata (`cv_checksum`,
 * `cv_algorithm`: Azure metadata names must be C# identifiers, so no '-'), so the container
 * says what each blob should hash to (reindex reads the sidecars, not this metadata).
 *
 * Credentials come only from the environment (see azure-credentials.ts), never from options.
 */
import type { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
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
  TEMP_FOLDER,
} from './cloud-support.js';
import { CloudErrors } from './cloud-errors.js';
import { AZURE_ERROR_DIALECT, statusOf } from './azure-blob-errors.js';
import { type AzurePutTarget, putBlocks, putSingle } from './azure-blob-upload.js';
import { serviceClientFromEnvironment } from './azure-credentials.js';
import { assertSafeKey } from './storage-key.js';

export interface AzureBlobBackendOptions {
  /** Name recorded in the catalog for replicas on this backend. Default "azure_blob". */
  name?: string;
  container: string;
  /**
   * Blob service URL (e.g. "https://account.blob.core.windows.net", or Azurite's
   * "http://127.0.0.1:10000/devstoreaccount1"). Default: the connection string's, else the
   * public endpoint of AZURE_STORAGE_ACCOUNT.
   */
  endpoint?: string;
  /** Every key is stored under this prefix (e.g. "chunkvault/"). */
  keyPrefix?: string;
  /** Bodies up to this size go in one Put Blob; larger ones as staged blocks. Default 8 MiB. */
  singlePutMaxBytes?: number;
  /** Block size for large bodies. Default 8 MiB. */
  blockSizeBytes?: number;
  /** Temp blobs older than this are removed by sweepIncompleteWrites. Default 24 h. */
  staleUploadAfterMs?: number;
  /** Tries per request inside the SDK (its own retry with backoff). Default: the SDK's (4). */
  maxAttempts?: number;
}

/** Re-exported from azure-blob-errors.ts, so code that imports it from the backend (test/cloud-errors.test.ts) keeps working. */
export { AZURE_ERROR_DIALECT } from './azure-blob-errors.js';

type AzureSdk = typeof import('@azure/storage-blob');

export class AzureBlobBackend implements Backend {
  readonly name: string;
  readonly location: string;
  /** An object store declares nothing beyond the contract. */
  readonly capabilities: BackendCapabilities = {};
  readonly #options: AzureBlobBackendOptions;
  readonly #keyPrefix: string;
  readonly #singlePutMaxBytes: number;
  readonly #blockSizeBytes: number;
  readonly #staleUploadAfterMs: number;
  readonly #errors: CloudErrors;
  #connection: Promise<ContainerClient> | undefined;

  constructor(options: AzureBlobBackendOptions) {
    if (!options.container) throw new ConfigError('Azure Blob backend: container is required');
    this.#options = options;
    this.name = options.name ?? 'azure_blob';
    this.#keyPrefix = normaliseKeyPrefix(options.keyPrefix, 'Azure Blob backend');
    this.#singlePutMaxBytes = options.singlePutMaxBytes ?? DEFAULT_SINGLE_PUT_MAX_BYTES;
    this.#blockSizeBytes = options.blockSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    this.#staleUploadAfterMs = options.staleUploadAfterMs ?? DEFAULT_STALE_UPLOAD_AFTER_MS;
    if (!(this.#blockSizeBytes >= 1)) throw new ConfigError('Azure Blob backend: blockSizeBytes must be positive');
    this.location = objectStoreLocation('azure', options.container, this.#keyPrefix, options.endpoint);
    this.#errors = new CloudErrors(AZURE_ERROR_DIALECT, this.location);
  }

  put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
    return putBySize(key, body, options, this.#singlePutMaxBytes, {
      single: async (bytes, md5) => putSingle(await this.#target(), key, bytes, md5, options),
      large: async () => putBlocks(await this.#target(), key, body, this.#blockSizeBytes, options),
      wrap: (error) => this.#errors.wrap(error, 'put', key),
    });
  }

  async get(key: string): Promise<Readable> {
    assertSafeKey(key);
    try {
      return (await this.#download(key, 0)).body;
    } catch (error) {
      throw this.#errors.wrap(error, 'get', key);
    }
  }

  getRange(key: string, offset: number, length: number): Promise<Buffer> {
    return readRange(key, offset, length, {
      open: (first, last) => this.#download(key, first, last - first + 1),
      statusOf,
      wrap: (error) => this.#errors.wrap(error, 'get', key),
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertSafeKey(key);
    const container = await this.#connect();
    try {
      const properties = await container.getBlockBlobClient(this.#keyPrefix + key).getProperties();
      return { key, sizeBytes: properties.contentLength ?? 0, modifiedAt: properties.lastModified ?? new Date(0) };
    } catch (error) {
      if (this.#errors.isObjectMissing(error)) return undefined;
      throw this.#errors.wrap(error, 'head', key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const container = await this.#connect();
    const pages = container.listBlobsFlat({ prefix: this.#keyPrefix + prefix }).byPage({ maxPageSize: 1000 });
    for (;;) {
      let page;
      try {
        page = await pages.next();
      } catch (error) {
        throw this.#errors.wrap(error, 'list', prefix || '(all)');
      }
      if (page.done) return;
      for (const item of page.value.segment.blobItems) {
        const key = item.name.slice(this.#keyPrefix.length);
        if (key.startsWith(TEMP_FOLDER)) continue;
        yield {
          key,
          sizeBytes: item.properties.contentLength ?? 0,
          modifiedAt: item.properties.lastModified ?? new Date(0),
        };
      }
    }
  }

  async delete(key: string): Promise<void> {
    assertSafeKey(key);
    const container = await this.#connect();
    try {
      await container.getBlockBlobClient(this.#keyPrefix + key).deleteIfExists();
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

  /**
   * Removes committed temp blobs of large puts older than `staleUploadAfterMs`. Blocks a dead
   * writer staged but never committed are invisible and discarded by the service after a week.
   */
  async sweepIncompleteWrites(): Promise<number> {
    const container = await this.#connect();
    const cutoff = Date.now() - this.#staleUploadAfterMs;
    let removed = 0;
    const pages = container.listBlobsFlat({ prefix: this.#keyPrefix + TEMP_FOLDER }).byPage({ maxPageSize: 1000 });
    for (;;) {
      let page;
      try {
        page = await pages.next();
      } catch (error) {
        throw this.#errors.wrap(error, 'sweep', this.#keyPrefix + TEMP_FOLDER);
      }
      if (page.done) return removed;
      for (const item of page.value.segment.blobItems) {
        const created = (item.properties.createdOn ?? item.properties.lastModified).getTime();
        if (created > cutoff) continue;
        try {
          if ((await container.getBlockBlobClient(item.name).deleteIfExists()).succeeded) removed += 1;
        } catch (error) {
          throw this.#errors.wrap(error, 'sweep', item.name);
        }
      }
    }
  }

  async close(): Promise<void> {
    this.#connection = undefined;
  }

  /** One Get Blob, from `offset` to the end or of `count` bytes. */
  async #download(key: string, offset: number, count?: number): Promise<RangeAnswer> {
    const container = await this.#connect();
    const response = await container.getBlockBlobClient(this.#keyPrefix + key).download(offset, count);
    if (!response.readableStreamBody) throw new BackendIoError(`get ${key}: the service returned no body`);
    return { body: response.readableStreamBody as Readable, contentRange: response.contentRange };
  }

  /** Where puts go (azure-blob-upload.ts): the container whose client retries as `maxAttempts` says. */
  async #target(): Promise<AzurePutTarget> {
    return { container: await this.#connect(), keyPrefix: this.#keyPrefix };
  }

  #connect(): Promise<ContainerClient> {
    this.#connection ??= (async () => {
      let sdk: AzureSdk;
      try {
        sdk = await import('@azure/storage-blob');
      } catch (error) {
        this.#connection = undefined;
        throw new ConfigError('Azure Blob backend: the package @azure/storage-blob cannot be loaded', [], { cause: error });
      }
      const pipelineOptions = this.#options.maxAttempts ? { retryOptions: { maxTries: this.#options.maxAttempts } } : {};
      const service = serviceClientFromEnvironment(sdk, this.#options.endpoint, pipelineOptions);
      return service.getContainerClient(this.#options.container);
    })();
    return this.#connection;
  }
}
