/**
 * Appends records to a pack file with group commit: appends that arrive while an fdatasync
 * runs are written together after it and share the next one, so N small replicas cost one
 * sync instead of N files. An append resolves only once an fdatasync that started after its
 * bytes were written has completed, so a resolved location is durable; the catalog may then
 * point at it. One writer per process and partition directory; packs are never shared
 * between processes or reopened for appending, so no two writers ever touch one file.
 *
 * Failure: when a write or an fdatasync fails, every append of that batch is rejected (as a
 * retryable BackendIoError), the pack is cut back to its last committed end where possible,
 * and the writer stops using it: after a failed fdatasync the kernel may have dropped the
 * dirty pages and cleared the error, so nothing written to that file since the last good
 * sync can be trusted again. The next append starts a new pack. A torn tail left by a crash
 * or by a cut that failed is never read (no catalog record points into it) and is found
 * and cut off by sealPack.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readSync, writevSync } from 'node:fs';
import { hostname } from 'node:os';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { BackendIoError } from '../../errors.js';
import { syncDirectory } from '../directory-sync.js';
import type { DurableDirectories } from '../durable-directories.js';
import { encodeRecord, packHeader, PACK_HEADER_BYTES, PACK_SUFFIX, RECORD_PREFIX_BYTES, type PackLocation, type PackRecordHeader } from './pack-format.js';

export interface PackWriterOptions {
  /** The directory packs are made in (absolute), and its storage key ('' for the backend's root). */
  dir: string;
  dirKey: string;
  directories: DurableDirectories;
  /** A pack that reached this size is closed and the next append starts another (a larger record still gets a pack of its own). */
  maxPackBytes: number;
  /** Bound on the bytes one commit writes; the rest waits for the next. */
  maxBatchBytes?: number;
  /** The open pack is sealed after no append for this long (SEAL_AFTER_IDLE_MS). */
  sealAfterIdleMs?: number;
}

/** How long an open pack waits for appends before it is sealed and closed. */
export const SEAL_AFTER_IDLE_MS = 30_000;

interface PendingAppend {
  pieces: Buffer[];
  length: number;
  headerLength: number;
  bodyLength: number;
  resolve: (location: PackLocation) => void;
  reject: (error: unknown) => void;
}

interface OpenPack {
  name: string;
  handle: FileHandle;
  /** End of the last committed record: everything before it is durable. */
  end: number;
}

/**
 * A batch up to this size is written with a synchronous writev: it lands in the page cache
 * (the fdatasync after it is what waits for the disk, on libuv's thread pool), a copy of
 * well under a millisecond, while a hop to the thread pool and back cost 30-60 us of CPU on
 * these machines, per commit (docs/BENCHMARKS.md). Larger batches go through the pool.
 */
const SYNC_WRITE_MAX_BYTES = 1024 * 1024;

/** At most this many buffers in one writev (IOV_MAX is 1024 on Linux; each record is three). */
const MAX_BATCH_RECORDS = 320;

export class PackWriter {
  readonly #options: PackWriterOptions;
  readonly #maxBatchBytes: number;
  #queue: PendingAppend[] = [];
  /** The drain of the queue that runs or ran last; #draining says whether it still runs. */
  #flushing: Promise<void> | undefined;
  #draining = false;
  #pack: OpenPack | undefined;
  #closed = false;
  #idleTimer: NodeJS.Timeout | undefined;
  #sealWhenIdle = false;
  /** Commits (fdatasyncs that made appends durable) and appends made durable, for tests and metrics. */
  readonly counts = { commits: 0, appends: 0, packsStarted: 0 };

  constructor(options: PackWriterOptions) {
    this.#options = options;
    this.#maxBatchBytes = options.maxBatchBytes ?? 16 * 1024 * 1024;
  }

  /** Appends one record; resolves with its location once it is durable. Rejects with BackendIoError (retryable) when it could not be made durable. */
  append(header: PackRecordHeader, body: Uint8Array): Promise<PackLocation> {
    if (this.#closed) return Promise.reject(new BackendIoError(`pack writer for ${this.#options.dir} is closed`));
    const pieces = encodeRecord(header, body);
    return new Promise<PackLocation>((resolve, reject) => {
      this.#queue.push({ pieces, length: pieces.reduce((n, p) => n + p.byteLength, 0), headerLength: pieces[1]!.byteLength, bodyLength: body.byteLength, resolve, reject });
      this.#kick();
    });
  }

  /**
   * The whole record at `location` read through this writer's own handle, when its pack is
   * the one open now; undefined otherwise (the caller reads the file). Never throws.
   *
   * A synchronous pread: the record was written and synced a moment ago, so its pages are in
   * the page cache and the read is a copy of at most max_chunk_bytes (256 KiB by default). A
   * read through libuv's thread pool cost 30-60 us of CPU per 4 KiB record here against 3-5 us
   * for this (docs/BENCHMARKS.md), which was 8% of a small replica's worker CPU.
   */
  readBack(location: PackLocation): Buffer | undefined {
    const pack = this.#pack;
    if (!pack || keyOf(this.#options.dirKey, pack.name) !== location.pack || location.offset + location.length > pack.end) return undefined;
    try {
      const record = Buffer.allocUnsafe(location.length);
      return readSync(pack.handle.fd, record, 0, location.length, location.offset) === location.length ? record : undefined;
    } catch {
      return undefined; // closed meanwhile (sealed, rotated): the file is still there to read
    }
  }

  /** Waits for every append made so far, then closes the open pack, sealed. Appends after this are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    await this.#flushing;
    await this.#retire();
  }

  /** Starts draining the queue unless a drain runs: a microtask later, so appends made in one go share the first commit too. */
  #kick(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#flushing = Promise.resolve().then(() => this.#flushAll());
  }

  async #flushAll(): Promise<void> {
    try {
      for (;;) {
        if (this.#queue.length > 0) await this.#commit(this.#takeBatch());
        else if (this.#sealWhenIdle) {
          this.#sealWhenIdle = false;
          await this.#retire();
        } else break;
      }
    } finally {
      // Reached in the same synchronous step as the loop's last look at the queue, so an
      // append made after that look starts a new drain and none waits for an ended one.
      this.#draining = false;
    }
  }

  /** Writes one batch at the open pack's end and fdatasyncs it; settles every append in it. */
  async #commit(batch: PendingAppend[]): Promise<void> {
    const bytes = batch.reduce((n, a) => n + a.length, 0);
    let pack: OpenPack | undefined;
    try {
      pack = await this.#packFor(bytes);
      const start = pack.end;
      await writeAllAt(pack.handle, batch.flatMap((a) => a.pieces), start);
      await pack.handle.datasync();
      pack.end = start + bytes;
      this.counts.commits += 1;
      this.counts.appends += batch.length;
      // A pack no one appends to for a while is sealed, so compaction can take it (a date
      // partition's pack of yesterday would otherwise stay open as long as the process).
      clearTimeout(this.#idleTimer);
      this.#idleTimer = setTimeout(() => {
        this.#sealWhenIdle = true;
        this.#kick();
      }, this.#options.sealAfterIdleMs ?? SEAL_AFTER_IDLE_MS).unref();
      let offset = start;
      for (const a of batch) {
        const bodyOffset = offset + RECORD_PREFIX_BYTES + a.headerLength;
        a.resolve({ pack: keyOf(this.#options.dirKey, pack.name), offset, length: a.length, bodyOffset, bodyLength: a.bodyLength });
        offset += a.length;
      }
    } catch (error) {
      if (pack) await this.#abandon(pack);
      const failure = new BackendIoError(`pack append in ${this.#options.dir}: ${(error as Error).message}`, { cause: error });
      for (const a of batch) a.reject(failure);
    }
  }

  #takeBatch(): PendingAppend[] {
    let bytes = 0;
    let n = 0;
    while (n < this.#queue.length && n < MAX_BATCH_RECORDS && (n === 0 || bytes + this.#queue[n]!.length <= this.#maxBatchBytes)) {
      bytes += this.#queue[n]!.length;
      n += 1;
    }
    return this.#queue.splice(0, n);
  }

  /** The pack the next `bytes` go into: the open one while they fit, else a new one. */
  async #packFor(bytes: number): Promise<OpenPack> {
    const current = this.#pack;
    if (current && (current.end === PACK_HEADER_BYTES || current.end + bytes <= this.#options.maxPackBytes)) return current;
    await this.#retire();
    const name = packName();
    const file = path.join(this.#options.dir, name);
    // Open for reading too, so an append's read-back needs no open of its own (readBack).
    const handle = await this.#options.directories.creatingIn(this.#options.dir, () => open(file, 'wx+'));
    try {
      await writeAllAt(handle, [packHeader(Date.now())], 0);
      // The pack's name must survive a crash before any record in it is acknowledged; its
      // header and size ride on the first commit's fdatasync.
      await syncDirectory(this.#options.dir);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    this.counts.packsStarted += 1;
    this.#pack = { name, handle, end: PACK_HEADER_BYTES };
    return this.#pack;
  }

  /**
   * Closes the open pack, sealed: a seal record after its last committed one says nothing will
   * be appended again, so compaction may take it while this process lives on. A seal that
   * fails to land leaves the pack unsealed, which compaction takes once this process is gone.
   */
  async #retire(): Promise<void> {
    const pack = this.#pack;
    this.#pack = undefined;
    if (!pack) return;
    try {
      await writeAllAt(pack.handle, encodeRecord({ kind: 'seal', sealedAtMs: Date.now() }, new Uint8Array(0)), pack.end);
      await pack.handle.datasync();
    } catch {
      await pack.handle.truncate(pack.end).catch(() => undefined);
    }
    await pack.handle.close().catch(() => undefined);
  }

  /** After a failed write or sync: cut what was written past the committed end (best effort) and never use the pack again. */
  async #abandon(pack: OpenPack): Promise<void> {
    if (this.#pack === pack) this.#pack = undefined;
    await pack.handle.truncate(pack.end).catch(() => undefined);
    await pack.handle.close().catch(() => undefined);
  }
}

/** This host, as pack names carry it (6 hex digits of its name's SHA-1): enough to tell this host's packs from others'. */
export const THIS_HOST_TAG = createHash('sha1').update(hostname()).digest('hex').slice(0, 6);

export interface PackNameParts {
  createdAtMs: number;
  hostTag: string;
  pid: number;
  /** Random hex digits, so two packs started in one millisecond by one process differ. */
  random: string;
}

/**
 * A pack's name: `<ms>-<host>-<pid>-<random>.pack`, the time it was started and the pid in
 * base 36, 31 characters today. Short for the catalog's sake: a packed replica's path,
 * `2026/12/07/<name>#<offset>=<length>` with the default date partitions, stays within 64
 * bytes, Redis's hash-max-listpack-value, past which the replica's record becomes a
 * hashtable of three times the memory (docs/BENCHMARKS.md). The first packs were named
 * `pack-<ms36>-<host8>-<pid>-<random8>.pack`; their names are still read.
 */
export function packNameOf(parts: PackNameParts): string {
  return `${parts.createdAtMs.toString(36)}-${parts.hostTag}-${parts.pid.toString(36)}-${parts.random}${PACK_SUFFIX}`;
}

function packName(): string {
  return packNameOf({ createdAtMs: Date.now(), hostTag: THIS_HOST_TAG, pid: process.pid, random: randomBytes(2).toString('hex') });
}

const PACK_NAME = /^([0-9a-z]+)-([0-9a-f]{6})-([0-9a-z]+)-[0-9a-f]+\.pack$/;
const FIRST_PACK_NAME = /^pack-([0-9a-z]+)-([0-9a-f]{8})-(\d+)-[0-9a-f]+\.pack$/;

/** What the name of a pack says of it, if it is a pack's name. */
export function packNameParts(name: string): Omit<PackNameParts, 'random'> | undefined {
  const match = PACK_NAME.exec(name);
  if (match) return { createdAtMs: parseInt(match[1]!, 36), hostTag: match[2]!, pid: parseInt(match[3]!, 36) };
  const first = FIRST_PACK_NAME.exec(name);
  return first ? { createdAtMs: parseInt(first[1]!, 36), hostTag: first[2]!, pid: Number(first[3]) } : undefined;
}

/** The storage key of file `name` in the directory with key `dirKey`. */
function keyOf(dirKey: string, name: string): string {
  return dirKey ? `${dirKey}/${name}` : name;
}

/** writev at `position` until every byte is written (a writev may write fewer bytes than asked). */
async function writeAllAt(handle: FileHandle, pieces: Buffer[], position: number): Promise<void> {
  let rest = pieces;
  let at = position;
  while (rest.length > 0) {
    const bytes = rest.reduce((n, piece) => n + piece.byteLength, 0);
    const bytesWritten = bytes <= SYNC_WRITE_MAX_BYTES ? writevSync(handle.fd, rest, at) : (await handle.writev(rest, at)).bytesWritten;
    if (bytesWritten === 0) throw new Error(`writev wrote nothing at offset ${at}`);
    at += bytesWritten;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const piece of rest) {
      if (skip >= piece.byteLength) skip -= piece.byteLength;
      else {
        next.push(skip > 0 ? piece.subarray(skip) : piece);
        skip = 0;
      }
    }
    rest = next;
  }
}
