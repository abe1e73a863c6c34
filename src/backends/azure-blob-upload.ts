/**
 * AzureBlobBackend's two ways of putting a body (see putBySize in cloud-support.ts): one Put
 * Blob for a body already read whole and verified, with a transactional Content-MD5 the
 * service checks, and blocks staged on a temp blob for a larger one, each block with its own
 * transactional MD5. The temp blob is committed only once the whole body matched, then copied
 * over the final key server-side, and removed in any case, so nothing other than a whole,
 * matching body appears under the key; a crash leaves at most a temp blob, which the backend's
 * sweepIncompleteWrites removes once it is stale.
 *
 * Only the SDK's types are imported here: the backend hands in the container client it built
 * on first use.
 */
import type { Readable } from 'node:stream';
import type { BlockBlobUploadOptions, ContainerClient } from '@azure/storage-blob';
import { BackendIoError } from '../errors.js';
import { type PutOptions, piecesOf } from './backend.js';
import { BodyVerifier, hex, partsOf, tempKeyUnder } from './cloud-support.js';
import { sendOnceMore } from './cloud-errors.js';
import { AZURE_DIGEST_REFUSAL } from './azure-blob-errors.js';

/** Where one put goes: the container (whose client retries as the backend's `maxAttempts` says) and the key prefix every blob name starts with. */
export interface AzurePutTarget {
  container: ContainerClient;
  keyPrefix: string;
}

/** One Put Blob of a body already read whole and verified (`key` is the storage key). */
export async function putSingle(target: AzurePutTarget, key: string, bytes: Buffer, md5: Buffer, options: PutOptions): Promise<void> {
  const blob = target.container.getBlockBlobClient(target.keyPrefix + key);
  // The SDK passes transactionalContentMD5 through to Put Blob as Content-MD5 (checked by
  // the service), though its option type does not list it.
  const uploadOptions: BlockBlobUploadOptions & { transactionalContentMD5: Uint8Array } = {
    transactionalContentMD5: md5,
    blobHTTPHeaders: { blobContentType: 'application/octet-stream', blobContentMD5: md5 },
    metadata: azureMetadata(options),
  };
  const response = await sendOnceMore(() => blob.upload(bytes, bytes.byteLength, uploadOptions), AZURE_DIGEST_REFUSAL);
  if (response.contentMD5 && !Buffer.from(response.contentMD5).equals(md5)) {
    throw new BackendIoError(`put ${key}: the service stored MD5 ${hex(response.contentMD5)}, not the body's ${hex(md5)}`, { retryable: true });
  }
}

/**
 * Stages `body` as blocks of `blockSizeBytes` on a temp blob of this writer's own, commits it
 * once the whole body matched, then copies it over the final key in one server-side step
 * (`key` is the storage key). Staging on the final blob itself would not do: a commit there
 * discards every other writer's staged blocks, so two concurrent large puts of one key would
 * fail each other.
 */
export async function putBlocks(target: AzurePutTarget, key: string, body: Readable | Uint8Array, blockSizeBytes: number, options: PutOptions): Promise<void> {
  const { container, keyPrefix } = target;
  const temp = container.getBlockBlobClient(tempKeyUnder(keyPrefix));
  try {
    const verifier = new BodyVerifier(key, options);
    const blockIds: string[] = [];
    for await (const part of partsOf(piecesOf(body), blockSizeBytes, verifier)) {
      // Block ids must all have one length within a blob.
      const blockId = Buffer.from(String(blockIds.length).padStart(6, '0')).toString('base64');
      const staged = await sendOnceMore(() => temp.stageBlock(blockId, part.bytes, part.bytes.byteLength, { transactionalContentMD5: part.md5 }), AZURE_DIGEST_REFUSAL);
      if (staged.contentMD5 && !Buffer.from(staged.contentMD5).equals(part.md5)) {
        throw new BackendIoError(`put ${key}: block ${blockIds.length} stored with MD5 ${hex(staged.contentMD5)}, not ${hex(part.md5)}`);
      }
      blockIds.push(blockId);
    }
    // Refuses a body that did not match before anything is committed.
    const md5 = verifier.finish();
    await temp.commitBlockList(blockIds, { blobHTTPHeaders: { blobContentType: 'application/octet-stream', blobContentMD5: md5 } });
    const final = container.getBlockBlobClient(keyPrefix + key);
    const poller = await final.beginCopyFromURL(temp.url, { metadata: azureMetadata(options) });
    const copied = await poller.pollUntilDone();
    if (copied.copyStatus !== 'success') {
      throw new BackendIoError(`put ${key}: the server-side copy ended ${copied.copyStatus ?? 'without a status'}`, { retryable: true });
    }
  } finally {
    await temp.deleteIfExists().catch(() => undefined);
  }
}

/** Metadata names on Azure (C# identifiers). */
export const AZURE_METADATA_CHECKSUM = 'cv_checksum';
export const AZURE_METADATA_ALGORITHM = 'cv_algorithm';

/** The chunk's checksum and algorithm, stored with the blob so the container says what it should hash to. */
function azureMetadata(options: PutOptions): Record<string, string> {
  return { [AZURE_METADATA_CHECKSUM]: options.checksum, [AZURE_METADATA_ALGORITHM]: options.algorithm };
}
