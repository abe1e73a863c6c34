/**
 * The local backend's metadata journal on the real filesystem: concurrent appends, torn
 * tails, forgets, rotation, and compaction of closed files next to live ones.
 */
import { spawnSync } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOURNAL_DIR, MetadataJournal } from '../src/catalog/metadata-journal.js';
import { currentRecord, type JournalRecord, type JournalReading } from '../src/catalog/journal-entries.js';

const HOUR_MS = 60 * 60_000;

function recordOf(chunkId: string, replicaId: string, recordedAtMs: number, extra: Partial<JournalRecord> = {}): JournalRecord {
  return {
    format: 'chunkvault.replica/1', chunkId, replicaId, backend: 'local', path: `${chunkId}/${replicaId}.dat`,
    checksum: 'a'.repeat(64), algorithm: 'sha256', sizeBytes: 10, targetNode: 'node-1', cloudProvider: 'local', taskId: 't1',
    storedAt: new Date(recordedAtMs).toISOString(), createdAtMs: recordedAtMs, codec: '', storedBytes: 10, recordedAtMs, ...extra,
  };
}

/** Current record per `chunkId/replicaId`, as reindex would use them. */
function currentOf(reading: JournalReading): Record<string, string> {
  const out: Record<string, string> = {};
  for (const state of reading.replicas.values()) {
    const record = currentRecord(state);
    if (record) out[`${record.chunkId}/${record.replicaId}`] = record.path;
  }
  return out;
}

/** A pid no process has now (a child that already exited). */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid!;
}

describe('metadata journal', () => {
  let base: string;
  let journal: MetadataJournal;

  beforeEach(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'chunkvault-journal-'));
    journal = new MetadataJournal(base, { staleAfterMs: HOUR_MS });
  });

  afterEach(async () => {
    await journal.close();
    await rm(base, { recursive: true, force: true });
  });

  it('keeps every one of many concurrent appends, in one file, as complete lines', async () => {
    await Promise.all(Array.from({ length: 500 }, (_, i) => journal.append(recordOf(`c${i}`, `c${i}_r0`, 1000 + i))));
    const files = await readdir(path.join(base, JOURNAL_DIR));
    expect(files).toHaveLength(1);
    const text = await readFile(path.join(base, JOURNAL_DIR, files[0]!), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n').filter(Boolean)).toHaveLength(500);
    const reading = await journal.read();
    expect(reading.problems).toEqual([]);
    expect(Object.keys(currentOf(reading))).toHaveLength(500);
  });

  it('uses the latest record of a replica, and a forget of its path (any codec) removes it until it is recorded again', async () => {
    await journal.append(recordOf('c1', 'c1_r0', 1000));
    await journal.append(recordOf('c1', 'c1_r0', 2000, { path: 'c1/c1_r0.dat.gz', codec: 'gzip' }));
    await journal.append(recordOf('c2', 'c2_r0', 1000));
    await journal.append({ format: 'chunkvault.replica-forgotten/1', chunkId: 'c2', replicaId: 'c2_r0', path: 'c2/c2_r0.dat', recordedAtMs: 3000 });
    await journal.append(recordOf('c3', 'c3_r0', 1000, { path: 'c3/c3_r0.dat.gz', codec: 'gzip' }));
    await journal.append({ format: 'chunkvault.replica-forgotten/1', chunkId: 'c3', replicaId: 'c3_r0', path: 'c3/c3_r0.dat', recordedAtMs: 3000 });
    await journal.append(recordOf('c4', 'c4_r0', 1000));
    await journal.append({ format: 'chunkvault.replica-forgotten/1', chunkId: 'c4', replicaId: 'c4_r0', path: 'c4/c4_r0.dat', recordedAtMs: 2000 });
    await journal.append(recordOf('c4', 'c4_r0', 5000));
    // A forget of another path (an older object of the replica) leaves the current record.
    await journal.append(recordOf('c5', 'c5_r0', 6000, { path: 'other/c5_r0.dat' }));
    await journal.append({ format: 'chunkvault.replica-forgotten/1', chunkId: 'c5', replicaId: 'c5_r0', path: 'c5/c5_r0.dat', recordedAtMs: 7000 });
    expect(currentOf(await journal.read())).toEqual({ 'c1/c1_r0': 'c1/c1_r0.dat.gz', 'c4/c4_r0': 'c4/c4_r0.dat', 'c5/c5_r0': 'other/c5_r0.dat' });
  });

  it('skips the torn last line a dead writer left, and reports an unreadable line before it', async () => {
    await journal.append(recordOf('c1', 'c1_r0', 1000));
    await journal.close();
    const dir = path.join(base, JOURNAL_DIR);
    const name = `${hostname()}~${deadPid()}~1~dead~1.jsonl`;
    await writeFile(path.join(dir, name), `${JSON.stringify(recordOf('c2', 'c2_r0', 1000))}\n{ not json\n${JSON.stringify(recordOf('c3', 'c3_r0', 1000))}\n${JSON.stringify(recordOf('c4', 'c4_r0', 1000)).slice(0, 40)}`);
    const reading = await journal.read();
    expect(currentOf(reading)).toEqual({ 'c1/c1_r0': 'c1/c1_r0.dat', 'c2/c2_r0': 'c2/c2_r0.dat', 'c3/c3_r0': 'c3/c3_r0.dat' });
    expect(reading.problems).toEqual([expect.stringMatching(new RegExp(`${name.replaceAll('~', '.')} line 2: unreadable metadata`))]);
  });

  it('starts a new file past its size limit', async () => {
    const small = new MetadataJournal(base, { staleAfterMs: HOUR_MS, rotateBytes: 2048 });
    try {
      for (let i = 0; i < 20; i++) await small.append(recordOf(`c${i}`, `c${i}_r0`, 1000 + i));
      const files = await readdir(path.join(base, JOURNAL_DIR));
      expect(files.length).toBeGreaterThan(3);
      expect(files.every((f) => /~\d+\.jsonl$/.test(f))).toBe(true);
      expect(Object.keys(currentOf(await small.read()))).toHaveLength(20);
    } finally {
      await small.close();
    }
  });

  it('reads a file far larger than one read, with lines across read boundaries', async () => {
    await Promise.all(Array.from({ length: 6000 }, (_, i) => journal.append(recordOf(`chunk-${i}`, `chunk-${i}_replica-0`, 1000 + i))));
    const [file] = await readdir(path.join(base, JOURNAL_DIR));
    expect((await readFile(path.join(base, JOURNAL_DIR, file!))).byteLength).toBeGreaterThan(2 * 1024 * 1024);
    const reading = await journal.read();
    expect(reading.problems).toEqual([]);
    expect(Object.keys(currentOf(reading))).toHaveLength(6000);
  });

  it('compaction writes snapshots no larger than the rotation size', async () => {
    const dir = path.join(base, JOURNAL_DIR);
    const small = new MetadataJournal(base, { staleAfterMs: HOUR_MS, rotateBytes: 4096 });
    try {
      for (let i = 0; i < 40; i++) await small.append(recordOf(`c${i}`, `c${i}_r0`, 1000 + i));
      const before = currentOf(await small.read());
      const written = await readdir(dir);
      // Its files are closed (a later one exists) but for the last.
      expect((await small.compact()).filesMerged).toBe(written.length - 1);
      const snapshots = (await readdir(dir)).filter((f) => f.startsWith('snapshot~'));
      expect(snapshots.length).toBeGreaterThan(1);
      for (const f of snapshots) expect((await readFile(path.join(dir, f))).byteLength).toBeLessThanOrEqual(4096);
      expect(currentOf(await small.read())).toEqual(before);
    } finally {
      await small.close();
    }
  });

  it('compaction merges closed files into one snapshot with the same current state, leaving live files alone', async () => {
    const dir = path.join(base, JOURNAL_DIR);
    // The live writer (this process): c1 recorded, later compressed; c9 recorded.
    await journal.append(recordOf('c1', 'c1_r0', 1000));
    await journal.append(recordOf('c9', 'c9_r0', 1000));
    const live = (await readdir(dir))[0]!;
    // Two files of a dead writer: c2 recorded then forgotten, c3 recorded twice, c9 forgotten
    // (its record is in the live file, so the forget must stay), c1 compressed.
    const dead = deadPid();
    const lines = (entries: object[]) => entries.map((e) => `${JSON.stringify(e)}\n`).join('');
    await writeFile(path.join(dir, `${hostname()}~${dead}~5~w~1.jsonl`), lines([
      recordOf('c2', 'c2_r0', 2000), recordOf('c3', 'c3_r0', 2000),
      recordOf('c1', 'c1_r0', 2500, { path: 'c1/c1_r0.dat.gz', codec: 'gzip' }),
    ]));
    await writeFile(path.join(dir, `${hostname()}~${dead}~5~w~2.jsonl`), lines([
      { format: 'chunkvault.replica-forgotten/1', chunkId: 'c2', replicaId: 'c2_r0', path: 'c2/c2_r0.dat', recordedAtMs: 3000 },
      recordOf('c3', 'c3_r0', 3000, { checksum: 'b'.repeat(64) }),
      { format: 'chunkvault.replica-forgotten/1', chunkId: 'c9', replicaId: 'c9_r0', path: 'c9/c9_r0.dat', recordedAtMs: 3000 },
    ]));
    // Another host's file, fresh: it may still be appended to.
    const otherHost = 'elsewhere~123~5~w~1.jsonl';
    await writeFile(path.join(dir, otherHost), lines([recordOf('c4', 'c4_r0', 2000)]));
    const before = currentOf(await journal.read());

    const result = await journal.compact();
    expect(result).toEqual({ filesMerged: 2, entriesRead: 6, entriesKept: 3 }); // c1 (gz), c3 (latest), forget of c9
    const files = await readdir(dir);
    expect(files).toHaveLength(3);
    expect(files).toEqual(expect.arrayContaining([live, otherHost]));
    expect(files.filter((f) => /^snapshot~\d+~[0-9a-f]+\.jsonl$/.test(f))).toHaveLength(1);
    const after = await journal.read();
    expect(currentOf(after)).toEqual(before);
    expect(currentOf(after)).toEqual({ 'c1/c1_r0': 'c1/c1_r0.dat.gz', 'c3/c3_r0': 'c3/c3_r0.dat', 'c4/c4_r0': 'c4/c4_r0.dat' });
    expect(currentRecord(after.replicas.get('c3\0c3_r0')!)!.checksum).toBe('b'.repeat(64));

    // The snapshot alone is closed: nothing more to merge until another file closes.
    expect(await journal.compact()).toEqual({ filesMerged: 0, entriesRead: 0, entriesKept: 0 });
    await appendFile(path.join(dir, `${hostname()}~${dead}~5~w~3.jsonl`), lines([recordOf('c5', 'c5_r0', 4000)]));
    expect((await journal.compact()).filesMerged).toBe(2);
    expect(currentOf(await journal.read())).toEqual({ ...before, 'c5/c5_r0': 'c5/c5_r0.dat' });
  });
});
