/**
 * What the object-store backends (S3, GCS, Azure Blob) share: reading a put's body while
 * checking it against its announced size and checksum, cutting it into upload parts with an
 * MD5 per part, ranged reads, key prefixes, the checksum metadata stored on every object
 * (what it should hash to; reindex reads the sidecars, not this). How their SDK errors become
 * chunkvault errors is in cloud-errors.ts.
 *
 * No cloud SDK is imported here.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BackendIoError, ChecksumMismatchError, ConfigError, SizeMismatchError } from '../errors.js';
import { newHash } from '../integrity/checksum.js';
import { assertByteRange, piecesOf, type PutOptions } from './backend.js';
import { assertSafeKey } from './storage-key.js';

/** Object metadata names (lower case: S3 and Azure lower-case them anyway). */
export const METADATA_CHECKSUM = 'cv-checksum';
export const METADATA_ALGORITHM = 'cv-algorithm';

/** The metadata stored with every object: the chunk checksum and its algorithm, so the bucket says what each object should hash to. */
export function chunkMetadata(options: PutOptions): Record<string, string> {
  return { [METADATA_CHECKSUM]: options.checksum, [METADATA_ALGORITHM]: options.algorithm };
}

/**
 * Temp objects of large puts (GCS, Azure: the body is checked there before it is copied to its
 * key) live under this folder of the key prefix; no storage key can start with '.'.
 */
export const TEMP_FOLDER = '.cvtmp~/';

/** A fresh temp object's name under `keyPrefix` (see TEMP_FOLDER). */
export function tempKeyUnder(keyPrefix: string): string {
  return `${keyPrefix}${TEMP_FOLDER}${Date.now()}-${randomBytes(8).toString('hex')}`;
}

/** Default size up to which a body is buffered and sent in one request; larger bodies go in parts. */
export const DEFAULT_SINGLE_PUT_MAX_BYTES = 8 * 1024 * 1024;
export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
/** Leftovers of interrupted writes younger than this are assumed to belong to a live writer. */
export const DEFAULT_STALE_UPLOAD_AFTER_MS = 24 * 60 * 60_000;

/**
 * Normalises a key prefix ("" or segments ending in '/'); refuses one that could not be a
 * storage key, so a bad configuration fails at start rather than at the first write.
 */
export function normaliseKeyPrefix(prefix: string | undefined, what: string): string {
  if (prefix === undefined || prefix === '') return '';
  const trimmed = prefix.replace(/\/+$/, '');
  try {
    assertSafeKey(trimmed);
  } catch (error) {
    throw new ConfigError(`${what}: key prefix ${JSON.stringify(prefix)} is not a valid relative path`, [], { cause: error });
  }
  return `${trimmed}/`;
}

/**
 * Counts and hashes a put's body as it passes, and refuses it as soon as it is longer than
 * announced, or at the end when it is shorter or hashes to another checksum. It also keeps
 * the body's MD5, which is what object stores check on the wire.
 */
export class BodyVerifier {
  readonly #key: string;
  readonly #options: PutOptions;
  readonly #chunkHash: Hash;
  readonly #md5: Hash | undefined;
  #received = 0;

  constructor(key: string, options: PutOptions) {
    this.#key = key;
    this.#options = options;
    this.#chunkHash = newHash(options.algorithm);
    this.#md5 = options.algorithm === 'md5' ? undefined : createHash('md5');
  }

  get receivedBytes(): number {
    return this.#received;
  }

  update(piece: Uint8Array): void {
    this.#received += piece.byteLength;
    if (this.#received > this.#options.sizeBytes) {
      throw new SizeMismatchError(`storage key ${this.#key}`, this.#options.sizeBytes, this.#received);
    }
    this.#chunkHash.update(piece);
    this.#md5?.update(piece);
  }

  /** Throws SizeMismatchError / ChecksumMismatchError unless the whole body matched; returns its MD5. */
  finish(): Buffer {
    if (this.#received !== this.#options.sizeBytes) {
      throw new SizeMismatchError(`storage key ${this.#key}`, this.#options.sizeBytes, this.#received);
    }
    const digest = this.#chunkHash.digest();
    const actual = digest.toString('hex');
    if (actual !== this.#options.checksum) {
      throw new ChecksumMismatchError(`storage key ${this.#key}`, this.#options.checksum, actual);
    }
    return this.#md5 ? this.#md5.digest() : digest;
  }
}

/** One upload part: its bytes and their MD5 (raw 16 bytes). */
export interface BodyPart {
  bytes: Buffer;
  md5: Buffer;
}

/**
 * Regroups `pieces` into parts of exactly `partSize` bytes (the last one shorter, and never
 * empty unless the whole body is), feeding every byte to `verifier` on the way. Holds at most
 * one part in memory.
 */
export async function* partsOf(pieces: AsyncIterable<Uint8Array>, partSize: number, verifier: BodyVerifier): AsyncIterable<BodyPart> {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let md5 = createHash('md5');
  let yielded = false;
  const take = (): BodyPart => {
    const part = { bytes: Buffer.concat(held, heldBytes), md5: md5.digest() };
    held = [];
    heldBytes = 0;
    md5 = createHash('md5');
    yielded = true;
    return part;
  };
  for await (const piece of pieces) {
    let rest = piece;
    while (rest.byteLength > 0) {
      const slice = rest.subarray(0, partSize - heldBytes);
      rest = rest.subarray(slice.byteLength);
      verifier.update(slice);
      md5.update(slice);
      // Copy: a stream may reuse its buffers, and a Uint8Array body is the caller's memory.
      held.push(Buffer.from(slice));
      heldBytes += slice.byteLength;
      if (heldBytes === partSize) yield take();
    }
  }
  if (heldBytes > 0 || !yielded) yield take();
}

/** The whole body in one buffer (for bodies up to the single-put size), checked against `options`. */
export async function readVerifiedBody(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<{ bytes: Buffer; md5: Buffer }> {
  const verifier = new BodyVerifier(key, options);
  const pieces: Buffer[] = [];
  for await (const piece of piecesOf(body)) {
    verifier.update(piece);
    if (!(body instanceof Uint8Array)) pieces.push(Buffer.from(piece));
  }
  const md5 = verifier.finish();
  const bytes = body instanceof Uint8Array ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : Buffer.concat(pieces, verifier.receivedBytes);
  return { bytes, md5 };
}

/** Releases a stream body that will not be read to its end (after a refusal or a failure). */
export function discardBody(body: Readable | Uint8Array): void {
  if (!(body instanceof Uint8Array)) body.destroy();
}

/** The multipart ETag S3 gives an object completed from parts with these MD5s. */
export function multipartEtag(partMd5s: readonly Buffer[]): string {
  return `${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${partMd5s.length}`;
}

/** Hex digest helper for error messages. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** How an object store names where its objects are, for statistics and messages. */
export function objectStoreLocation(scheme: string, bucket: string, keyPrefix: string, endpoint: string | undefined): string {
  return `${scheme}://${bucket}/${keyPrefix}${endpoint ? ` (${endpoint})` : ''}`;
}

/** The two ways an object store takes a body, and how its errors become chunkvault errors. */
export interface PutPaths {
  /** A body read whole and already verified against size and checksum, with its MD5. */
  single(bytes: Buffer, md5: Buffer): Promise<void>;
  /** A body too large to hold: streamed in parts, verified as it passes. */
  large(): Promise<void>;
  wrap(error: unknown): Error;
}

/**
 * The put every object store shares: bodies up to `singlePutMaxBytes` are read and verified
 * first and sent in one request, larger ones take the store's own large-body path; on any
 * failure the body is discarded and the error wrapped with the key.
 */
export async function putBySize(key: string, body: Readable | Uint8Array, options: PutOptions, singlePutMaxBytes: number, paths: PutPaths): Promise<void> {
  try {
    assertSafeKey(key);
    if (options.sizeBytes <= singlePutMaxBytes) {
      const { bytes, md5 } = await readVerifiedBody(key, body, options);
      await paths.single(bytes, md5);
    } else {
      await paths.large();
    }
  } catch (error) {
    discardBody(body);
    throw paths.wrap(error);
  }
}

/** A ranged read's answer: the body, and its Content-Range (absent when the server sent the whole object). */
export interface RangeAnswer {
  body: Readable;
  contentRange: string | undefined;
}

/** How one object store serves `readRange`. */
export interface RangePaths {
  /** One request for the bytes `first` through `last` (inclusive, as HTTP counts them). */
  open(first: number, last: number): Promise<RangeAnswer>;
  /** The HTTP status of one of the SDK's errors (its dialect's `statusOf`). */
  statusOf(error: unknown): number | undefined;
  wrap(error: unknown): Error;
}

/**
 * `getRange` for an object store (see Backend.getRange): one ranged request, its body read
 * into a Buffer of exactly `length` bytes. A server may ignore a Range and send the whole
 * object (HTTP allows it; the GCS emulator does for a range past the end), so the body is
 * placed by its Content-Range and the range cut from it. A 416 says the object ends before
 * `offset`: a SizeMismatchError, as for an object that ends inside the range, never a
 * retryable BackendIoError.
 */
export async function readRange(key: string, offset: number, length: number, paths: RangePaths): Promise<Buffer> {
  assertSafeKey(key);
  assertByteRange(key, offset, length);
  if (length === 0) return Buffer.alloc(0);
  let bytes: Buffer;
  try {
    const answer = await paths.open(offset, offset + length - 1);
    try {
      const startsAt = rangeStartOf(key, answer.contentRange);
      if (startsAt > offset) throw new BackendIoError(`get ${key}: asked for bytes from ${offset}, the server sent them from ${startsAt}`, { retryable: false });
      bytes = await bytesAt(answer.body, offset - startsAt, length);
    } finally {
      // Releases the connection of a body not read to its end.
      answer.body.destroy();
    }
  } catch (error) {
    if (hasStatus(error, 416, paths.statusOf)) throw new SizeMismatchError(`storage key ${key} at ${offset}`, length, 0);
    throw paths.wrap(error);
  }
  if (bytes.byteLength !== length) throw new SizeMismatchError(`storage key ${key} at ${offset}`, length, bytes.byteLength);
  return bytes;
}

/** Up to `length` bytes of `body` after its first `skip`; stops reading (and releases the body) once it has them. */
async function bytesAt(body: AsyncIterable<Uint8Array>, skip: number, length: number): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  let held = 0;
  let toSkip = skip;
  for await (const piece of body) {
    if (toSkip >= piece.byteLength) {
      toSkip -= piece.byteLength;
      continue;
    }
    const wanted = piece.subarray(toSkip, toSkip + length - held);
    toSkip = 0;
    pieces.push(wanted);
    held += wanted.byteLength;
    if (held === length) break;
  }
  return Buffer.concat(pieces, held);
}

/**
 * Where in the object a ranged answer's body starts: at its Content-Range's first byte, or at
 * 0 when there is none (the whole object). Only the first byte is read: Azurite answers a
 * range of an empty blob with "bytes 0--1/0".
 */
function rangeStartOf(key: string, contentRange: string | undefined): number {
  if (contentRange === undefined || contentRange === '') return 0;
  const match = /^bytes (\d+)-/.exec(contentRange.trim());
  if (!match) throw new BackendIoError(`get ${key}: the server answered a ranged read with Content-Range ${JSON.stringify(contentRange)}`, { retryable: false });
  return Number(match[1]);
}

/** True when `error`, or an error it wraps (its `cause` chain), is the server's answer with `status`. */
function hasStatus(error: unknown, status: number, statusOf: (error: unknown) => number | undefined): boolean {
  for (let current = error, depth = 0; current !== undefined && current !== null && depth < 4; depth += 1) {
    if (statusOf(current) === status) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
