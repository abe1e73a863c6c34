/**
 * The checkpoint aggregator. Completed chunks enter the catalog's ledger exactly once (see
 * catalog-scripts.ts); this service seals consecutive ledger ranges into manifests. One
 * process seals at a time (a Redis lock); a commit only lands if that process still holds
 * the lock and the head has not moved, so every ledger entry is in exactly one checkpoint.
 * Sealing reads only the interval's chunks: its cost grows with the interval, not the total.
 */
import { hash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { CheckpointEntry, CheckpointIndex, LedgerState } from '../catalog/checkpoint-index.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Backend } from '../backends/backend.js';
import type { Logger } from '../logging/logger.js';
import type { RepairScheduler } from '../reads/repair-scheduler.js';
import { ManifestCorruptError, NotFoundError } from '../errors.js';
import { CHECKPOINT_KEY_PREFIX, checkpointId, manifestChecksum, manifestKey, parseManifest, type Manifest, type ManifestChunk } from './manifest.js';
import { verifyCheckpoint, type CheckpointVerifyReport } from './checkpoint-verifier.js';

export interface CheckpointServiceDeps {
  config: Config;
  catalog: Catalog;
  index: CheckpointIndex;
  backends: BackendRegistry;
  repairs: RepairScheduler;
  logger: Logger;
}

/**
 * How often sealSoon looks for due intervals at most. Each look reads the ledger's state; a
 * look per ended chunk was 4% of a small replica's worker CPU, and an interval sealed this
 * much later changes nothing.
 */
const SEAL_LOOK_EVERY_MS = 50;

export class CheckpointService {
  readonly #deps: CheckpointServiceDeps;
  #sealing: Promise<void> | undefined;
  #sealAgain = false;
  #lastLookAt = 0;

  constructor(deps: CheckpointServiceDeps) {
    this.#deps = deps;
  }

  get #interval(): number {
    return this.#deps.config.storage.organization.checkpoint_interval_chunks;
  }

  /**
   * Seals every full interval waiting in the ledger. Safe to call from any number of
   * processes at once: when another process holds the lock it returns, and that process
   * looks again after releasing it, so no due interval is left behind.
   */
  async sealDue(): Promise<CheckpointEntry[]> {
    const sealed: CheckpointEntry[] = [];
    if (!this.#deps.config.storage.organization.create_checkpoints) return sealed;
    for (;;) {
      const state = await this.#deps.index.state();
      if (state.ledgerSeq - state.headToSeq < this.#interval) return sealed;
      const token = await this.#deps.index.lock.acquire();
      if (!token) return sealed;
      await this.#holding(token, async () => {
        for (;;) {
          const current = await this.#deps.index.state();
          if (current.ledgerSeq - current.headToSeq < this.#interval) break;
          sealed.push(await this.#sealOne(token, current, this.#interval));
        }
      });
    }
  }

  /**
   * Seals due intervals in the background: what a worker calls each time a chunk ends. Calls
   * made while a seal runs are folded into one more look once it is done, and looks are at
   * least SEAL_LOOK_EVERY_MS apart, so a burst of ended chunks costs one ledger read, not one
   * each. Failures are logged; the worker pool's
   * periodic sealing tries again. `settled()` waits for it.
   */
  sealSoon(): void {
    if (this.#sealing) {
      this.#sealAgain = true;
      return;
    }
    this.#sealing = (async () => {
      do {
        // At most one look per SEAL_LOOK_EVERY_MS: chunks end by the thousand per second.
        const wait = this.#lastLookAt + SEAL_LOOK_EVERY_MS - Date.now();
        if (wait > 0) await sleep(wait);
        this.#sealAgain = false;
        this.#lastLookAt = Date.now();
        await this.sealDue();
      } while (this.#sealAgain);
    })()
      .catch((error: unknown) => this.#deps.logger.warn({ err: error }, 'could not seal due checkpoints; the worker pool tries again'))
      .finally(() => {
        this.#sealing = undefined;
      });
  }

  /** Resolves once no background seal (sealSoon) is running. */
  async settled(): Promise<void> {
    while (this.#sealing) await this.#sealing;
  }

  /**
   * Seals everything stored since the last checkpoint now (in interval-sized manifests),
   * waiting up to `waitMs` for a sealing process to finish. Returns the new checkpoints
   * (none when nothing was waiting).
   */
  async sealNow(waitMs = 30_000): Promise<CheckpointEntry[]> {
    const deadline = Date.now() + waitMs;
    let token = await this.#deps.index.lock.acquire();
    while (!token) {
      if (Date.now() > deadline) throw new Error('another process has been sealing a checkpoint for too long; try again');
      await sleep(100);
      token = await this.#deps.index.lock.acquire();
    }
    const sealed: CheckpointEntry[] = [];
    const held = token;
    await this.#holding(held, async () => {
      for (;;) {
        const state = await this.#deps.index.state();
        if (state.ledgerSeq === state.headToSeq) break;
        sealed.push(await this.#sealOne(held, state, this.#interval));
      }
    });
    return sealed;
  }

  /** Runs `body` holding the lock (renewed; a sealer that dies blocks others for one short TTL), then releases it. */
  #holding(token: string, body: () => Promise<void>): Promise<void> {
    return this.#deps.index.lock.holding(token, body, (error) => this.#deps.logger.warn({ err: error }, 'could not renew the checkpoint lock'));
  }

  /** Checkpoints sealed so far. */
  count(): Promise<number> {
    return this.#deps.index.count();
  }

  list(): Promise<CheckpointEntry[]> {
    return this.#deps.index.list();
  }

  /** The newest checkpoint's index entry, or undefined while none is sealed (it does not throw for that). */
  async latest(): Promise<CheckpointEntry | undefined> {
    const { headId } = await this.#deps.index.state();
    return headId ? this.#deps.index.get(headId) : undefined;
  }

  /** The stored manifest of checkpoint `id`, its own checksum verified. */
  async manifest(id: string): Promise<Manifest> {
    const entry = await this.#deps.index.get(id);
    if (!entry) throw new NotFoundError(`checkpoint ${id} not found`);
    const backend = this.#deps.backends.forCheckpoints();
    const pieces: Buffer[] = [];
    for await (const piece of await backend.get(entry.key)) pieces.push(piece as Buffer);
    const manifest = parseManifest(Buffer.concat(pieces), id);
    if (manifest.checksum !== entry.checksum) {
      throw new ManifestCorruptError(id, `checkpoint ${id}: stored manifest has checksum ${manifest.checksum}, the index records ${entry.checksum}`);
    }
    return manifest;
  }

  /**
   * Re-reads every replica checkpoint `id` names and reports each missing or corrupt one;
   * it also marks what it finds corrupt and queues repairs (see checkpoint-verifier.ts).
   */
  async verify(id: string, onProgress?: (chunksDone: number, chunks: number) => void): Promise<CheckpointVerifyReport> {
    return verifyCheckpoint(this.#deps, id, await this.manifest(id), onProgress);
  }

  async #sealOne(token: string, state: LedgerState, maxChunks: number): Promise<CheckpointEntry> {
    const { catalog, index, backends, logger } = this.#deps;
    const from = state.headToSeq;
    const to = Math.min(state.ledgerSeq, from + maxChunks);
    const chunkIds = await index.ledgerRange(from, to);
    if (chunkIds.length !== to - from) {
      throw new Error(`checkpoint ledger (${from}, ${to}] holds ${chunkIds.length} chunks, expected ${to - from}; refusing to seal`);
    }
    const chunks: ManifestChunk[] = (await catalog.manifestEntries(chunkIds)).map(({ chunk, replicas }, i) => {
      if (!chunk) throw new Error(`chunk ${chunkIds[i]} is in the checkpoint ledger but not in the catalog`);
      return {
        chunkId: chunk.chunkId, checksum: chunk.checksum, algorithm: chunk.algorithm, sizeBytes: chunk.sizeBytes,
        createdAtMs: Date.parse(chunk.createdAt) || 0, replicas,
      };
    });
    const sequence = state.headSequence + 1;
    const id = checkpointId(sequence);
    const body: Omit<Manifest, 'checksum'> = {
      format: 'chunkvault.checkpoint/1', id, sequence, createdAt: new Date().toISOString(), previousId: state.headId || null,
      fromLedgerSeq: from, toLedgerSeq: to, chunkCount: chunks.length, totalBytes: chunks.reduce((sum, c) => sum + c.sizeBytes, 0), chunks,
    };
    const manifest: Manifest = { ...body, checksum: manifestChecksum(body) };
    await this.#refuseIfSealedElsewhere(manifest);
    const bytes = Buffer.from(JSON.stringify(manifest));
    // The checksum in the name: a sealer that lost its lock can never overwrite a committed manifest.
    const key = manifestKey(id, manifest.checksum);
    await backends.forCheckpoints().put(key, bytes, { sizeBytes: bytes.byteLength, checksum: hash('sha256', bytes, 'hex'), algorithm: 'sha256' });
    const entry: CheckpointEntry = {
      id, sequence, createdAt: manifest.createdAt, previousId: state.headId, chunkCount: manifest.chunkCount,
      totalBytes: manifest.totalBytes, checksum: manifest.checksum, key, fromLedgerSeq: from, toLedgerSeq: to,
    };
    const outcome = await index.commit(token, from, entry);
    if (outcome !== 'ok') {
      await this.#dropManifest(key);
      throw new Error(`checkpoint ${id} was not committed (${outcome}); it will be sealed again`);
    }
    logger.info({ checkpoint: id, chunks: entry.chunkCount, totalBytes: entry.totalBytes }, 'checkpoint sealed');
    await this.#dropUncommittedManifests(manifest, key);
    return entry;
  }

  /**
   * Throws when the backend already holds a manifest for this checkpoint id that is not a
   * leftover of sealing this same interval: a checkpoint sealed before Redis lost its data.
   * Sealing again under its id would put two checkpoints with one id on the backend (and the
   * removal of leftovers below would delete the committed one); the chunks wait in the ledger until
   * `reindex` has restored the index from the backend.
   */
  async #refuseIfSealedElsewhere(manifest: Manifest): Promise<void> {
    const backend = this.#deps.backends.forCheckpoints();
    for await (const object of backend.list(`${CHECKPOINT_KEY_PREFIX}${manifest.id}-`)) {
      const existing = parseManifest(await readAll(backend, object.key), object.key);
      if (!isLeftoverOf(existing, manifest)) {
        throw new Error(
          `checkpoint ${manifest.id} already exists on the backend (${object.key}) with other chunks, but the checkpoint index does not know it: ` +
            'Redis lost its data? Run `chunkvault reindex` to restore the index; stored chunks wait in the ledger meanwhile',
        );
      }
    }
  }

  /**
   * A sealer killed between writing its manifest and committing it leaves a manifest that no
   * checkpoint names; the next sealer seals the same sequence again. Once that commit lands,
   * every other manifest for the sequence that is a leftover of the same interval goes, so each
   * chunk stays in exactly one manifest on the backend too (reindex would otherwise have to choose).
   */
  async #dropUncommittedManifests(committed: Manifest, committedKey: string): Promise<void> {
    const backend = this.#deps.backends.forCheckpoints();
    try {
      for await (const object of backend.list(`${CHECKPOINT_KEY_PREFIX}${committed.id}-`)) {
        if (object.key === committedKey) continue;
        const other = parseManifest(await readAll(backend, object.key), object.key);
        if (isLeftoverOf(other, committed)) await this.#dropManifest(object.key);
        else this.#deps.logger.error({ checkpoint: committed.id, key: object.key }, 'another manifest with this checkpoint id holds other chunks; kept (run `chunkvault reindex`)');
      }
    } catch (error) {
      this.#deps.logger.warn({ err: error, checkpoint: committed.id }, 'could not list manifests to remove uncommitted ones; reindex reports them');
    }
  }

  async #dropManifest(key: string): Promise<void> {
    try {
      await this.#deps.backends.forCheckpoints().delete(key);
      this.#deps.logger.info({ key }, 'removed a manifest that was never committed');
    } catch (error) {
      this.#deps.logger.warn({ err: error, key }, 'could not remove a manifest that was never committed; reindex reports it');
    }
  }
}

/**
 * Whether `other` is a manifest of the same interval as `manifest`, as a sealer that died
 * before its commit (or lost its lock) leaves: it starts at the same ledger place, and the
 * ledger's order is fixed, so one chunk list is a prefix of the other.
 */
function isLeftoverOf(other: Manifest, manifest: Manifest): boolean {
  if (other.id !== manifest.id || other.fromLedgerSeq !== manifest.fromLedgerSeq) return false;
  const shared = Math.min(other.chunks.length, manifest.chunks.length);
  for (let i = 0; i < shared; i++) if (other.chunks[i]!.chunkId !== manifest.chunks[i]!.chunkId) return false;
  return true;
}

async function readAll(backend: Backend, key: string): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of await backend.get(key)) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}
