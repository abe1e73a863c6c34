/**
 * Append-only metadata journal of a backend that is a local directory (see
 * BackendCapabilities.localDirectory): one JSON line per replica recorded (or
 * forgotten by retention), in files under `<base>/.chunkvault-journal/`. It replaces the
 * per-replica sidecar file there, because creating a file costs far more on a local disk
 * than appending a line: each process appends to its own file, and appends that arrive while
 * an fdatasync runs share the next one (group commit), so a batch of concurrent replicas costs
 * one write and one fdatasync instead of a file creation, an fsync and a rename each.
 *
 * File names are `<host>~<pid>~<startMs>~<writer>~<seq>.jsonl`. A file is *closed* (no one
 * appends to it any more) when its writer started a later one, when its pid on this host is
 * dead, or, for other hosts, when it has not changed for `staleAfterMs`. Compaction merges
 * closed files into one `snapshot~...jsonl` holding only each replica's current entry.
 *
 * A line is complete or it is the torn tail of a file whose writer died mid-append (or
 * whose append failed; the writer then moves to a new file): readers skip a torn last line.
 * The entries' format, and how files are read back and folded, are in journal-entries.ts.
 */
import { closeSync, constants as fsConstants, fdatasync, open as openFd, write } from 'node:fs';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { currentRecord, eachJournalEntry, foldEntry, listJournalFiles, readJournal, replicaKey, type JournalEntry, type JournalReading, type JournalState } from './journal-entries.js';
import { syncDirectory } from '../backends/directory-sync.js';
import { isErrno, processAlive, tempNameFor } from '../backends/fs-support.js';

export const JOURNAL_DIR = '.chunkvault-journal';
const fdatasyncAsync = promisify(fdatasync);
const openAsync = promisify(openFd);
const writeAsync = promisify(write);

export interface CompactionResult {
  /** Closed files merged (and removed). */
  filesMerged: number;
  /** Entries those files held, and how many the snapshot kept. */
  entriesRead: number;
  entriesKept: number;
}

export class MetadataJournal {
  readonly dir: string;
  readonly #host = hostname();
  readonly #writer = randomBytes(4).toString('hex');
  readonly #startMs = Date.now();
  readonly #staleAfterMs: number;
  readonly #rotateBytes: number;
  #seq = 0;
  #fd: number | undefined;
  #size = 0;
  #pending: string[] = [];
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #dirReady = false;

  /**
   * `staleAfterMs`: a file of another host's writer unchanged this long is closed.
   * `rotateBytes`: a writer starts a new file past this size (default 64 MiB).
   */
  constructor(baseDir: string, options: { staleAfterMs: number; rotateBytes?: number }) {
    this.dir = path.join(baseDir, JOURNAL_DIR);
    this.#staleAfterMs = options.staleAfterMs;
    this.#rotateBytes = options.rotateBytes ?? 64 * 1024 * 1024;
  }

  /** Resolves once `entry` is durable in the journal (shared fdatasync with concurrent appends). */
  append(entry: JournalEntry): Promise<void> {
    this.#pending.push(`${JSON.stringify(entry)}\n`);
    if (this.#next) return this.#next;
    const previous = this.#running ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        const lines = this.#pending;
        this.#pending = [];
        const running = this.#write(lines.join(''));
        this.#running = running;
        return running;
      });
    this.#next = next;
    return next;
  }

  /** Waits for appends in flight, then closes the current file. */
  async close(): Promise<void> {
    await this.#next?.catch(() => undefined);
    await this.#running?.catch(() => undefined);
    this.#closeFile();
  }

  /** Every file's entries folded into each replica's current state. */
  read(): Promise<JournalReading> {
    return readJournal(this.dir);
  }

  /**
   * Merges the closed files into one snapshot of the entries still current (a replica's
   * latest record unless forgotten since, and a forget only while an older record of it may
   * remain in a file not merged), then removes them. Crash-safe: the snapshot is durable
   * before any input is removed, and entries read twice fold to the same state.
   */
  async compact(): Promise<CompactionResult> {
    const names = listJournalFiles(this.dir);
    const closed = await this.#closedOf(names);
    const result: CompactionResult = { filesMerged: 0, entriesRead: 0, entriesKept: 0 };
    if (closed.length < 2) return result;
    const closedSet = new Set(closed);
    const merged = new Map<string, JournalState>();
    const stillElsewhere = new Set<string>();
    for (const name of names) {
      if (closedSet.has(name)) {
        result.entriesRead += await eachJournalEntry(this.dir, name, (entry) => foldEntry(merged, entry), []);
      } else {
        await eachJournalEntry(this.dir, name, (entry) => stillElsewhere.add(replicaKey(entry)), []);
      }
    }
    const writer = new SnapshotWriter(this.dir, this.#rotateBytes);
    try {
      for (const [key, state] of merged) {
        const record = currentRecord(state);
        const kept = record ?? (state.forget && stillElsewhere.has(key) ? state.forget : undefined);
        if (!kept) continue;
        await writer.add(kept);
        result.entriesKept += 1;
      }
      await writer.finish();
    } catch (error) {
      await writer.abandon();
      throw error;
    }
    // The snapshots are durable (and named) before any merged file goes.
    await syncDirectory(this.dir);
    for (const name of closed) await unlink(path.join(this.dir, name)).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
    await syncDirectory(this.dir);
    result.filesMerged = closed.length;
    return result;
  }

  async #write(text: string): Promise<void> {
    const bytes = Buffer.from(text);
    const fd = await this.#fileFor(bytes.byteLength);
    try {
      // Not writeSync: an append changes the file's size, and ext4 makes that wait while the
      // filesystem journal commits, which under large writes held a worker's loop 100+ ms.
      for (let offset = 0; offset < bytes.byteLength; ) offset += (await writeAsync(fd, bytes, offset, bytes.byteLength - offset)).bytesWritten;
      this.#size += bytes.byteLength;
      await fdatasyncAsync(fd);
    } catch (error) {
      // The file may now end in a torn line: later appends go to a new file.
      this.#closeFile();
      throw error;
    }
  }

  async #fileFor(bytes: number): Promise<number> {
    if (this.#fd !== undefined && this.#size + bytes <= this.#rotateBytes) return this.#fd;
    this.#closeFile();
    if (!this.#dirReady) {
      await mkdirDurable(this.dir);
      this.#dirReady = true;
    }
    this.#seq += 1;
    const name = `${this.#host}~${process.pid}~${this.#startMs}~${this.#writer}~${this.#seq}.jsonl`;
    try {
      this.#fd = await openAsync(path.join(this.dir, name), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_APPEND, 0o644);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) this.#dirReady = false; // the directory was removed: make it again next time
      throw error;
    }
    this.#size = 0;
    await syncDirectory(this.dir);
    return this.#fd;
  }

  #closeFile(): void {
    if (this.#fd === undefined) return;
    try {
      closeSync(this.#fd);
    } finally {
      this.#fd = undefined;
    }
  }

  async #closedOf(names: string[]): Promise<string[]> {
    const latestSeq = new Map<string, number>();
    const parsed = names.map((name) => {
      const parts = name.slice(0, -'.jsonl'.length).split('~');
      if (parts[0] === 'snapshot' || parts.length !== 5) return { name, snapshot: true as const };
      const [host, pidText, startMs, writer, seqText] = parts as [string, string, string, string, string];
      const writerId = `${host}~${pidText}~${startMs}~${writer}`;
      const seq = Number(seqText);
      latestSeq.set(writerId, Math.max(latestSeq.get(writerId) ?? 0, seq));
      return { name, snapshot: false as const, host, pid: Number(pidText), writerId, seq };
    });
    const closed: string[] = [];
    for (const file of parsed) {
      if (file.snapshot) {
        closed.push(file.name);
      } else if (file.seq < latestSeq.get(file.writerId)!) {
        closed.push(file.name);
      } else if (file.host === this.#host) {
        if (!processAlive(file.pid)) closed.push(file.name);
      } else {
        const info = await stat(path.join(this.dir, file.name)).catch(() => undefined);
        if (info && Date.now() - info.mtimeMs > this.#staleAfterMs) closed.push(file.name);
      }
    }
    return closed;
  }
}

/** Writes compaction output as snapshot files of at most `maxBytes`, each durable before it is named. */
class SnapshotWriter {
  readonly #dir: string;
  readonly #maxBytes: number;
  #handle: FileHandle | undefined;
  #temp = '';
  #size = 0;
  #buffer: string[] = [];
  #buffered = 0;

  constructor(dir: string, maxBytes: number) {
    this.#dir = dir;
    this.#maxBytes = maxBytes;
  }

  async add(entry: JournalEntry): Promise<void> {
    const line = `${JSON.stringify(entry)}\n`;
    if (this.#handle && this.#size + this.#buffered + line.length > this.#maxBytes) await this.#seal();
    if (!this.#handle) {
      this.#temp = path.join(this.#dir, tempNameFor('snapshot.jsonl'));
      this.#handle = await open(this.#temp, 'wx', 0o644);
      this.#size = 0;
    }
    this.#buffer.push(line);
    this.#buffered += line.length;
    if (this.#buffered >= 1 << 20) await this.#flush();
  }

  async finish(): Promise<void> {
    if (this.#handle) await this.#seal();
  }

  /** Removes the file being written (named snapshots stay: they hold current entries). */
  async abandon(): Promise<void> {
    await this.#handle?.close().catch(() => undefined);
    this.#handle = undefined;
    if (this.#temp) await unlink(this.#temp).catch(() => undefined);
  }

  async #flush(): Promise<void> {
    if (!this.#buffered) return;
    await this.#handle!.write(this.#buffer.join(''));
    this.#size += this.#buffered;
    this.#buffer = [];
    this.#buffered = 0;
  }

  async #seal(): Promise<void> {
    await this.#flush();
    const handle = this.#handle!;
    this.#handle = undefined;
    await handle.datasync();
    await handle.close();
    const name = `snapshot~${Date.now()}~${randomBytes(4).toString('hex')}.jsonl`;
    await rename(this.#temp, path.join(this.#dir, name));
    this.#temp = '';
  }
}

async function mkdirDurable(dir: string): Promise<void> {
  const made = await mkdir(dir, { recursive: true });
  if (made !== undefined) {
    for (let current = dir; current.length >= made.length; current = path.dirname(current)) await syncDirectory(path.dirname(current));
  }
}
