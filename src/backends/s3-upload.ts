/**
 * S3Backend's two ways of putting a body (see putBySize in cloud-support.ts): one PutObject
 * for a body already read whole and verified, a multipart upload for a larger one. Both send a
 * Content-MD5 the server checks with every request that carries bytes, and compare the ETag
 * the server answers with where it is the MD5 of the data. A multipart upload is completed
 * only once the whole body matched, and aborted on any failure, so nothing appears under the
 * key.
 *
 * Only the SDK's types are imported here: the backend hands in the SDK it loaded on first use,
 * with its client.
 */
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { BackendIoError } from '../errors.js';
import { type PutOptions, piecesOf } from './backend.js';
import { BodyVerifier, chunkMetadata, hex, METADATA_CHECKSUM, multipartEtag, partsOf } from './cloud-support.js';
import { sendOnceMore } from './cloud-errors.js';
import { S3_DIGEST_REFUSAL } from './s3-errors.js';

/** Where one put goes: the loaded SDK and its client, the bucket, and the object's key under the key prefix. */
export interface S3PutTarget {
  sdk: typeof import('@aws-sdk/client-s3');
  client: S3Client;
  Bucket: string;
  Key: string;
}

/** One PutObject of a body already read whole and verified (`key` is the storage key, for messages). */
export async function putSingle(target: S3PutTarget, key: string, bytes: Buffer, md5: Buffer, options: PutOptions): Promise<void> {
  const { sdk, client, Bucket, Key } = target;
  const request = {
    Bucket,
    Key,
    Body: bytes,
    ContentLength: bytes.byteLength,
    ContentMD5: md5.toString('base64'),
    ContentType: 'application/octet-stream',
    Metadata: chunkMetadata(options),
  };
  const response = await sendOnceMore(() => client.send(new sdk.PutObjectCommand(request)), S3_DIGEST_REFUSAL);
  // The ETag of a single PUT is the MD5 of what the server stored (unless KMS / customer-key encrypted).
  const etag = unquote(response.ETag);
  if (etag && etagIsMd5(response) && etag !== hex(md5)) {
    throw new BackendIoError(`put ${key}: the server stored ETag ${etag}, not the body's MD5 ${hex(md5)}`, { retryable: true });
  }
}

/** A multipart upload of `body` in parts of `partSizeBytes`, verified as it passes (`key` is the storage key, for messages). */
export async function putMultipart(target: S3PutTarget, key: string, body: Readable | Uint8Array, partSizeBytes: number, options: PutOptions): Promise<void> {
  const { sdk, client, Bucket, Key } = target;
  const created = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket, Key, ContentType: 'application/octet-stream', Metadata: chunkMetadata(options) }));
  const UploadId = created.UploadId;
  if (!UploadId) throw new BackendIoError(`put ${key}: the server returned no multipart upload id`);
  try {
    const verifier = new BodyVerifier(key, options);
    const parts: { ETag: string; PartNumber: number }[] = [];
    const partMd5s: Buffer[] = [];
    for await (const part of partsOf(piecesOf(body), partSizeBytes, verifier)) {
      const PartNumber = parts.length + 1;
      const uploaded = await sendOnceMore(() =>
        client.send(
          new sdk.UploadPartCommand({
            Bucket,
            Key,
            UploadId,
            PartNumber,
            Body: part.bytes,
            ContentLength: part.bytes.byteLength,
            ContentMD5: part.md5.toString('base64'),
          }),
        ),
        S3_DIGEST_REFUSAL,
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
    const completed = await client.send(new sdk.CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
    if (etagIsMd5(completed)) await verifyCompleted(target, key, unquote(completed.ETag), multipartEtag(partMd5s), options);
  } catch (error) {
    await client.send(new sdk.AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
    throw error;
  }
}

/**
 * Confirms a completed multipart upload. radosgw answers CompleteMultipartUpload with an
 * empty ETag, so the object is read back. An object carrying another checksum was put by a
 * concurrent writer after ours (last writer wins, as for a single PUT): not an error.
 */
async function verifyCompleted(target: S3PutTarget, key: string, completedEtag: string, expectedEtag: string, options: PutOptions): Promise<void> {
  if (completedEtag) {
    if (completedEtag !== expectedEtag) {
      throw new BackendIoError(`put ${key}: completed upload has ETag ${completedEtag}, expected ${expectedEtag}`, { retryable: true });
    }
    return;
  }
  const { sdk, client, Bucket, Key } = target;
  const head = await client.send(new sdk.HeadObjectCommand({ Bucket, Key }));
  if (head.Metadata?.[METADATA_CHECKSUM] !== options.checksum) return;
  const storedEtag = unquote(head.ETag);
  if (head.ContentLength !== options.sizeBytes || (storedEtag && storedEtag !== expectedEtag)) {
    throw new BackendIoError(
      `put ${key}: stored object has ${head.ContentLength} bytes and ETag ${storedEtag}, expected ${options.sizeBytes} bytes and ${expectedEtag}`,
      { retryable: true },
    );
  }
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
