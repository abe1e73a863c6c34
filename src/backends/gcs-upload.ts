/**
 * GcsBackend's two ways of putting a body (see putBySize in cloud-support.ts): one upload for a
 * body already read whole and verified, whose object resource carries the body's MD5 for GCS
 * to check, and a resumable upload to a temp object for a larger one. The temp object is
 * copied to the final key only once the body and the server's MD5 matched, and removed in any
 * case, so nothing other than a whole, matching body appears under the key; a crash leaves at
 * most a temp object, which the backend's sweepIncompleteWrites removes once it is stale.
 *
 * Only the SDK's types are imported here: the backend hands in the bucket of the client it
 * built on first use.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Bucket, FileMetadata } from '@google-cloud/storage';
import { BackendIoError } from '../errors.js';
import { type PutOptions, piecesOf } from './backend.js';
import { BodyVerifier, chunkMetadata, hex, tempKeyUnder } from './cloud-support.js';
import { sdkMessage } from './cloud-errors.js';
import { isDigestRejection } from './gcs-errors.js';

/** Where one put goes: the bucket (with the SDK's own retry settings) and the key prefix every object name starts with. */
export interface GcsPutTarget {
  bucket: Bucket;
  keyPrefix: string;
}

/** One upload of a body already read whole and verified (`key` is the storage key). */
export async function putSingle(target: GcsPutTarget, key: string, bytes: Buffer, md5: Buffer, options: PutOptions): Promise<void> {
  const file = target.bucket.file(target.keyPrefix + key);
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

/** A resumable upload of `body` to a temp object, verified as it passes, then copied to the key (`key` is the storage key). */
export async function putThroughTemp(target: GcsPutTarget, key: string, body: Readable | Uint8Array, options: PutOptions): Promise<void> {
  const { bucket, keyPrefix } = target;
  const temp = bucket.file(tempKeyUnder(keyPrefix));
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
    const final = bucket.file(keyPrefix + key);
    const [, response] = await temp.copy(final, { contentType: 'application/octet-stream', metadata: chunkMetadata(options) });
    const copiedMd5 = (response as { resource?: FileMetadata } | undefined)?.resource?.md5Hash;
    if (copiedMd5 !== undefined && copiedMd5 !== md5.toString('base64')) {
      throw new BackendIoError(`put ${key}: the copy has MD5 ${base64ToHex(copiedMd5)}, not ${hex(md5)}`, { retryable: true });
    }
  } finally {
    await temp.delete({ ignoreNotFound: true }).catch(() => undefined);
  }
}

function base64ToHex(value: string | undefined): string {
  return value ? Buffer.from(value, 'base64').toString('hex') : '(none)';
}
