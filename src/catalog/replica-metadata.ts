/**
 * Where each replica's metadata is kept on its backend (what `reindex` needs to rebuild its
 * catalog record from the backend alone). A backend that is a local directory
 * (`capabilities.localDirectory`) gets an append-only journal in it (metadata-journal.ts),
 * because a file per replica costs a file creation, an fsync and a rename each, and the
 * journal shares one write and one fdatasync among every replica recorded at the same moment;
 * any other backend gets a sidecar object per replica beside the data (`<path>.meta.json`).
 * Sidecars a local directory holds from before the journal are still read (and removed by
 * retention).
 */
import type { Backend } from '../backends/backend.js';
import { METADATA_SUFFIX, metadataKeyOf } from '../storage/storage-layout.js';
import { MetadataJournal, type CompactionResult } from './metadata-journal.js';
import { currentRecord, journalRecordOf, replicaKey } from './journal-entries.js';
import { encodeSidecar, sidecarSchema, type Sidecar } from './sidecar.js';
import type { StoredReplicaInput } from './catalog.js';

/** One replica's current metadata, or a problem reading some metadata (naming where). */
export type MetadataEntry = { sidecar: Sidecar } | { problem: string };

export interface MetadataStore {
  /** Durably records `record` as the replica's current metadata (replacing any earlier). */
  record(record: Omit<StoredReplicaInput, 'attempts'>): Promise<void>;
  /** Records that retention deleted the replica's object at `path` (any codec's). */
  forget(chunkId: string, replicaId: string, path: string): Promise<void>;
  /** Every replica's current metadata; `keys` is the backend's full listing. */
  current(keys: readonly string[]): AsyncIterable<MetadataEntry>;
  /** Bounds the metadata's growth (journals only); undefined where there is nothing to do. */
  compact(): Promise<CompactionResult | undefined>;
}

/**
 * The metadata store of each backend, made on first use and kept for the process's life;
 * `close()` waits for the journals' appends in flight and closes their files.
 */
export class ReplicaMetadata {
  readonly #stores = new Map<Backend, MetadataStore>();
  readonly #journals: MetadataJournal[] = [];
  readonly #staleAfterMs: number;

  /** `staleAfterMs`: a journal file of another host unchanged this long counts as closed (stale_temp_after_ms). */
  constructor(options: { staleAfterMs: number }) {
    this.#staleAfterMs = options.staleAfterMs;
  }

  /** The store that keeps the metadata of replicas on `backend`. */
  of(backend: Backend): MetadataStore {
    let store = this.#stores.get(backend);
    if (!store) {
      const directory = backend.capabilities.localDirectory;
      if (directory === undefined) {
        store = sidecarStore(backend);
      } else {
        const journal = new MetadataJournal(directory, { staleAfterMs: this.#staleAfterMs });
        this.#journals.push(journal);
        store = journalStore(backend, journal);
      }
      this.#stores.set(backend, store);
    }
    return store;
  }

  async close(): Promise<void> {
    for (const journal of this.#journals) await journal.close();
  }
}

function sidecarStore(backend: Backend): MetadataStore {
  return {
    async record(record) {
      const sidecar = encodeSidecar(record);
      await backend.put(metadataKeyOf(record.path), sidecar.bytes, sidecar.putOptions);
    },
    async forget(_chunkId, _replicaId, path) {
      await backend.delete(metadataKeyOf(path));
    },
    current: (keys) => sidecarsIn(backend, keys),
    compact: async () => undefined,
  };
}

function journalStore(backend: Backend, journal: MetadataJournal): MetadataStore {
  return {
    async record(record) {
      await journal.append(journalRecordOf(encodeSidecar(record).sidecar));
    },
    async forget(chunkId, replicaId, path) {
      await journal.append({ format: 'chunkvault.replica-forgotten/1', chunkId, replicaId, path, recordedAtMs: Date.now() });
      await backend.delete(metadataKeyOf(path)); // a sidecar from before the journal, if any
    },
    async *current(keys) {
      const reading = await journal.read();
      for (const problem of reading.problems) yield { problem: `${backend.name}:${problem}` };
      const inJournal = new Set<string>();
      for (const [key, state] of reading.replicas) {
        inJournal.add(key);
        const record = currentRecord(state);
        if (!record) continue;
        const { recordedAtMs: _recordedAt, ...sidecar } = record;
        yield { sidecar };
      }
      // Sidecars written before the journal: only for replicas the journal does not know.
      for await (const entry of sidecarsIn(backend, keys)) {
        if ('sidecar' in entry && inJournal.has(replicaKey(entry.sidecar))) continue;
        yield entry;
      }
    },
    compact: () => journal.compact(),
  };
}

async function* sidecarsIn(backend: Backend, keys: readonly string[]): AsyncIterable<MetadataEntry> {
  for (const key of keys) {
    if (!key.endsWith(METADATA_SUFFIX)) continue;
    let sidecar: Sidecar;
    try {
      sidecar = sidecarSchema.parse(JSON.parse((await readAll(backend, key)).toString('utf8')));
    } catch (error) {
      yield { problem: `${backend.name}:${key}: unreadable metadata (${(error as Error).message.split('\n')[0]})` };
      continue;
    }
    if (metadataKeyOf(sidecar.path) !== key) {
      yield { problem: `${backend.name}:${key}: metadata names path ${sidecar.path}, which does not belong to it` };
      continue;
    }
    yield { sidecar };
  }
}

async function readAll(backend: Backend, key: string): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of await backend.get(key)) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}
