/**
 * What the metadata journal (metadata-journal.ts) holds and how it is read back: the schemas
 * of its JSON lines, the streaming parse of one journal file, and the fold of entries into
 * each replica's current state. The journal's `read` (reindex) and its compaction both read
 * files through here, so a snapshot keeps exactly what a reader would have made of the files
 * it replaces.
 */
import { createReadStream, readdirSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { sidecarSchema, type Sidecar } from './sidecar.js';
import { idSchema } from '../domain/ids.js';
import { isErrno } from '../backends/fs-support.js';
import { withoutCodecSuffix } from '../integrity/codecs.js';

/** A replica's metadata, as recorded: a sidecar plus when it was recorded (orders entries). */
export const journalRecordSchema = sidecarSchema.extend({ recordedAtMs: z.number().int().nonnegative() });
export type JournalRecord = z.infer<typeof journalRecordSchema>;

/** Retention deleted the replica's object at `path`. */
export const journalForgetSchema = z.object({
  format: z.literal('chunkvault.replica-forgotten/1'),
  chunkId: idSchema,
  replicaId: idSchema,
  path: z.string().min(1),
  recordedAtMs: z.number().int().nonnegative(),
});
export type JournalForget = z.infer<typeof journalForgetSchema>;
export type JournalEntry = JournalRecord | JournalForget;

const entrySchema = z.union([journalRecordSchema, journalForgetSchema]);

/** The current state of one replica in the journal. */
export interface JournalState {
  /** Its latest record, unless a later forget of that record's path removed it. */
  record?: JournalRecord;
  /** Its latest forget, if any. */
  forget?: JournalForget;
}

export interface JournalReading {
  /** Current state per `chunkId\0replicaId`. */
  replicas: Map<string, JournalState>;
  /** Unreadable lines (not torn tails), naming file and line. */
  problems: string[];
  /** Files read. */
  files: string[];
}

/** Every file's entries in the journal directory `dir`, folded into each replica's current state. */
export async function readJournal(dir: string): Promise<JournalReading> {
  // A compaction may remove files between listing and reading them: list again then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await readJournalOnce(dir);
    } catch (error) {
      if (!isErrno(error, 'ENOENT') || attempt >= 5) throw error;
    }
  }
}

async function readJournalOnce(dir: string): Promise<JournalReading> {
  const reading: JournalReading = { replicas: new Map(), problems: [], files: listJournalFiles(dir) };
  for (const name of reading.files) await eachJournalEntry(dir, name, (entry) => foldEntry(reading.replicas, entry), reading.problems);
  return reading;
}

/** The journal files in `dir`, in name order (none when `dir` does not exist yet). */
export function listJournalFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => name.endsWith('.jsonl') && !name.startsWith('.')).sort();
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
}

/**
 * Streams the entries of the file `name` in `dir` to `visit` (a file may be far larger than a
 * string can hold); unreadable lines go to `problems`; a torn last line (no newline: its writer
 * died or failed mid-append) is skipped. Returns the number of entries visited.
 */
export async function eachJournalEntry(dir: string, name: string, visit: (entry: JournalEntry) => void, problems: string[]): Promise<number> {
  let rest: Buffer = Buffer.alloc(0);
  let lineNumber = 0;
  let visited = 0;
  for await (const piece of createReadStream(path.join(dir, name), { highWaterMark: 1 << 20 })) {
    const data: Buffer = rest.byteLength ? Buffer.concat([rest, piece as Buffer]) : (piece as Buffer);
    let start = 0;
    for (let newline = data.indexOf(10, start); newline !== -1; newline = data.indexOf(10, start)) {
      lineNumber += 1;
      const line = data.toString('utf8', start, newline);
      start = newline + 1;
      try {
        visit(entrySchema.parse(JSON.parse(line)));
        visited += 1;
      } catch (error) {
        // Named from the backend's base (the journal directory's own name), as an operator finds it.
        problems.push(`${path.basename(dir)}/${name} line ${lineNumber}: unreadable metadata (${(error as Error).message.split('\n')[0]})`);
      }
    }
    rest = data.subarray(start);
  }
  return visited;
}

/** The key of a replica's state in a JournalReading. */
export function replicaKey(entry: { chunkId: string; replicaId: string }): string {
  return `${entry.chunkId}\0${entry.replicaId}`;
}

/** Folds one entry into the replicas' states; later `recordedAtMs` wins, ties go to the later entry read. */
export function foldEntry(states: Map<string, JournalState>, entry: JournalEntry): void {
  const key = replicaKey(entry);
  const state = states.get(key) ?? {};
  if (entry.format === 'chunkvault.replica-forgotten/1') {
    if (!state.forget || entry.recordedAtMs >= state.forget.recordedAtMs) state.forget = entry;
  } else if (!state.record || entry.recordedAtMs >= state.record.recordedAtMs) {
    state.record = entry;
  }
  states.set(key, state);
}

/**
 * The record reindex should use: the latest, unless a forget came at or after it for its
 * object (compressed or not: retention removes every codec's object of a replica's path).
 */
export function currentRecord(state: JournalState): JournalRecord | undefined {
  const { record, forget } = state;
  if (!record) return undefined;
  if (forget && forget.recordedAtMs >= record.recordedAtMs && withoutCodecSuffix(forget.path) === withoutCodecSuffix(record.path)) return undefined;
  return record;
}

/** A journal record for `sidecar`, stamped now. */
export function journalRecordOf(sidecar: Sidecar): JournalRecord {
  return { ...sidecar, recordedAtMs: Date.now() };
}
