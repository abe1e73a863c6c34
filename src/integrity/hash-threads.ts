/**
 * Hashing of large byte streams and files on worker threads. A worker writing a 16 MiB
 * replica hashes it twice (before its rename, and reading it back for verify_on_write); on its
 * main thread that was 45% of the worker's time (W4 profile) and the cause of its longest
 * event-loop stalls.
 * Here the main thread only copies each slice (a memcpy, ~10x cheaper than sha256) and hands
 * it to a hashing thread; each hash stays on one thread, so its slices are hashed in order.
 *
 * Back-pressure: `update` resolves at once while less than MAX_IN_FLIGHT_BYTES of a hash wait
 * on its thread, later otherwise, so a fast reader cannot pile copies up in memory.
 *
 * A file on local disk can be hashed whole on a thread (hashFileOnThread): the thread reads
 * it itself, so its bytes never reach the main thread at all.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChecksumAlgorithm } from '../domain/types.js';

/** Bytes of one hash copied to its thread and not hashed yet, at most (then update waits). */
const MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024;
/** A file hashed on a thread is read in slices of this size into one buffer the thread reuses. */
const FILE_SLICE_BYTES = 1024 * 1024;

const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { closeSync, openSync, readSync } = require('node:fs');
const hashes = new Map();
const slab = Buffer.allocUnsafe(${FILE_SLICE_BYTES});
function hashFile(m) {
  const hash = createHash(m.algorithm);
  const fd = openSync(m.path, 'r');
  let size = 0;
  try {
    for (let n; (n = readSync(fd, slab, 0, slab.length, null)) > 0; size += n) hash.update(slab.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  parentPort.postMessage({ id: m.id, digest: hash.digest('hex'), size });
}
parentPort.on('message', (m) => {
  try {
    if (m.op === 'file') hashFile(m);
    else if (m.op === 'open') hashes.set(m.id, createHash(m.algorithm));
    else if (m.op === 'update') {
      const hash = hashes.get(m.id);
      if (!hash) return;
      hash.update(new Uint8Array(m.bytes));
      parentPort.postMessage({ id: m.id, hashed: m.bytes.byteLength });
    } else if (m.op === 'digest') {
      const hash = hashes.get(m.id);
      hashes.delete(m.id);
      if (hash) parentPort.postMessage({ id: m.id, digest: hash.digest('hex') });
    } else hashes.delete(m.id);
  } catch (error) {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, error: String((error && error.message) || error), code: error && error.code });
  }
});
`;

interface Waiting {
  inFlight: number;
  /** Resolves the update waiting for room, if any. */
  room?: () => void;
  digest?: { resolve: (hex: string, sizeBytes?: number) => void; reject: (error: Error) => void };
  failed?: Error;
}

class HashThread {
  readonly #worker: Worker;
  readonly #hashes = new Map<number, Waiting>();
  dead = false;

  constructor() {
    // No inherited flags (--input-type=module would make the CommonJS source fail; loaders are not needed).
    this.#worker = new Worker(THREAD_SOURCE, { eval: true, name: 'chunkvault-hash', execArgv: [] });
    this.#worker.unref();
    this.#worker.on('message', (m: { id: number; hashed?: number; digest?: string; size?: number; error?: string; code?: string }) => {
      const waiting = this.#hashes.get(m.id);
      if (!waiting) return;
      // A file's error keeps its errno code (ENOENT: the object is not there).
      if (m.error !== undefined) this.#fail(m.id, waiting, m.code ? Object.assign(new Error(m.error), { code: m.code }) : new Error(`hashing thread: ${m.error}`));
      else if (m.digest !== undefined) {
        this.#forget(m.id);
        waiting.digest?.resolve(m.digest, m.size);
      } else {
        waiting.inFlight -= m.hashed ?? 0;
        if (waiting.inFlight < MAX_IN_FLIGHT_BYTES) waiting.room?.();
      }
    });
    const die = (error: Error): void => {
      this.dead = true;
      for (const [id, waiting] of this.#hashes) this.#fail(id, waiting, error);
    };
    this.#worker.on('error', die);
    this.#worker.on('exit', (code) => die(new Error(`hashing thread exited (code ${code})`)));
  }

  open(id: number, algorithm: ChecksumAlgorithm): void {
    // Referenced while a hash is open, so a process waiting only on a digest does not exit.
    if (this.#hashes.size === 0) this.#worker.ref();
    this.#hashes.set(id, { inFlight: 0 });
    this.#worker.postMessage({ op: 'open', id, algorithm });
  }

  async update(id: number, piece: Uint8Array): Promise<void> {
    const waiting = this.#hashes.get(id);
    if (!waiting) throw new Error('update of a hash that was digested or dropped');
    if (waiting.failed) throw waiting.failed;
    const copy = new Uint8Array(piece.byteLength);
    copy.set(piece);
    waiting.inFlight += copy.byteLength;
    this.#worker.postMessage({ op: 'update', id, bytes: copy.buffer }, [copy.buffer]);
    if (waiting.inFlight < MAX_IN_FLIGHT_BYTES) return;
    await new Promise<void>((resolve) => {
      waiting.room = () => {
        waiting.room = undefined;
        resolve();
      };
    });
    if (waiting.failed) throw waiting.failed;
  }

  digest(id: number): Promise<string> {
    const waiting = this.#hashes.get(id);
    if (!waiting) return Promise.reject(new Error('digest of a hash that was digested or dropped'));
    if (waiting.failed) return Promise.reject(waiting.failed);
    return new Promise<string>((resolve, reject) => {
      waiting.digest = { resolve, reject };
      this.#worker.postMessage({ op: 'digest', id });
    });
  }

  /** Reads the file at `path` and hashes it, all on the thread: no byte of it crosses to the caller's. */
  hashFile(id: number, path: string, algorithm: ChecksumAlgorithm): Promise<{ checksum: string; sizeBytes: number }> {
    if (this.#hashes.size === 0) this.#worker.ref();
    return new Promise((resolve, reject) => {
      this.#hashes.set(id, { inFlight: 0, digest: { resolve: (checksum, sizeBytes) => resolve({ checksum, sizeBytes: sizeBytes! }), reject } });
      this.#worker.postMessage({ op: 'file', id, path, algorithm });
    });
  }

  drop(id: number): void {
    if (!this.#hashes.has(id)) return;
    this.#forget(id);
    if (!this.dead) this.#worker.postMessage({ op: 'drop', id });
  }

  #fail(id: number, waiting: Waiting, error: Error): void {
    waiting.failed = error;
    waiting.room?.();
    if (waiting.digest) {
      this.#forget(id);
      waiting.digest.reject(error);
    }
  }

  #forget(id: number): void {
    this.#hashes.delete(id);
    if (this.#hashes.size === 0) this.#worker.unref();
  }
}

const threads: HashThread[] = [];
let nextId = 0;

/** One hashing thread per core but the one the main thread runs on (at least one). */
const POOL_SIZE = Math.max(1, Math.min(4, availableParallelism() - 1));

/**
 * Starts the hashing threads now rather than at the first large hash: starting a thread
 * holds the event loop for tens of milliseconds, which is better spent before jobs run.
 */
export function startHashThreads(): void {
  for (let slot = 0; slot < POOL_SIZE; slot++) threadFor(slot);
}

function threadFor(id: number): HashThread {
  const slot = id % POOL_SIZE;
  let thread = threads[slot];
  if (!thread || thread.dead) {
    thread = new HashThread();
    threads[slot] = thread;
  }
  return thread;
}

/**
 * Digest and size of the file at `path`, read and hashed on a hashing thread. For a large
 * replica (checked before its rename, and read back for verify_on_write) this spares the main
 * thread reading the bytes and copying them to a thread: in W3 those copies were a quarter of
 * a worker's main thread (a copy from a freshly read buffer costs ~0.5 ms per MiB here).
 * Errors carry the errno code (ENOENT, EACCES).
 */
export function hashFileOnThread(path: string, algorithm: ChecksumAlgorithm): Promise<{ checksum: string; sizeBytes: number }> {
  const id = nextId++;
  return threadFor(id).hashFile(id, path, algorithm);
}

/** A hash whose slices are hashed on a worker thread. Digest it or drop it. */
export class ThreadedHash {
  readonly #id = nextId++;
  readonly #thread = threadFor(this.#id);

  constructor(algorithm: ChecksumAlgorithm) {
    this.#thread.open(this.#id, algorithm);
  }

  /** Hands `piece` to the thread (copied: the caller may reuse it); waits while too much is in flight. */
  update(piece: Uint8Array): Promise<void> {
    return this.#thread.update(this.#id, piece);
  }

  digest(): Promise<string> {
    return this.#thread.digest(this.#id);
  }

  /** Abandons the hash (the stream failed); frees its state on the thread. */
  drop(): void {
    this.#thread.drop(this.#id);
  }
}
