/**
 * Compression of old data: replicas stored longer ago than `compression_age_days` are
 * re-encoded with the configured codec.
 *
 * Per replica: encode -> write the compressed object beside the original (atomic, durable,
 * checksummed) -> read it back and decode it against the chunk's checksum -> note the
 * replica as "compressing" -> rewrite its metadata -> point the catalog at the compressed
 * object -> remove the original -> clear the note. Every pass first finishes what a crashed
 * pass left noted: if the catalog points at the compressed object the original is removed,
 * otherwise the compressed object is. So a crash at any step leaves a readable replica, and
 * the next pass leaves no garbage. Data that does not shrink is left as it is.
 */
import { hash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import type { Config } from '../config/config.schema.js';
import type { Catalog } from '../catalog/catalog.js';
import type { BackendRegistry } from '../backends/backend-registry.js';
import type { Backend } from '../backends/backend.js';
import type { Logger } from '../logging/logger.js';
import type { ReplicaRecord } from '../domain/types.js';
import type { ReplicaMetadata } from '../catalog/replica-metadata.js';
import { checksumOfStream } from '../integrity/checksum.js';
import { CODEC_SUFFIX, decoded, encoder, withoutCodecSuffix } from '../integrity/codecs.js';
import { parsePackedKey } from '../backends/pack/packed-key.js';
import { packedMetadataOf } from '../catalog/packed-metadata.js';
import { DAY_MS, agedReplicas, type AgedReplica } from './aged-replicas.js';
import { itemLines, type MaintenanceTask } from './maintenance-task.js';

/** A replica compression re-encodes. */
export type CompressionItem = AgedReplica;

export interface CompressionResult {
  dryRun: boolean;
  cutoff: string;
  codec: string;
  replicasCompressed: number;
  bytesBefore: number;
  bytesAfter: number;
  /** Replicas left as they were because the codec did not make them smaller. */
  skippedNoGain: number;
  /** Interrupted compressions of an earlier pass that this pass finished. */
  recovered: number;
  more: boolean;
  /** What was (or, in a dry run, would be) compressed. */
  items: CompressionItem[];
}

export interface CompressionDeps {
  config: Config;
  catalog: Catalog;
  metadata: ReplicaMetadata;
  backends: BackendRegistry;
  logger: Logger;
}

export class Compression {
  readonly #deps: CompressionDeps;

  constructor(deps: CompressionDeps) {
    this.#deps = deps;
  }

  /** Stored, uncompressed replicas of settled chunks stored before the cutoff, oldest first. */
  async plan(nowMs: number): Promise<{ cutoff: string; items: CompressionItem[]; more: boolean }> {
    const { config, catalog } = this.#deps;
    const cutoffMs = nowMs - config.storage.cleanup.compression_age_days * DAY_MS;
    const limit = config.chunkvault.maintenance.compress_replicas_per_pass;
    const { items, more } = await agedReplicas(catalog, cutoffMs, limit, (r) => r.status === 'stored' && r.codec === '');
    return { cutoff: new Date(cutoffMs).toISOString(), items, more };
  }

  async run(nowMs: number, dryRun: boolean): Promise<CompressionResult> {
    const codec = this.#deps.config.chunkvault.maintenance.compression_codec;
    const recovered = dryRun ? 0 : await this.recover();
    const plan = await this.plan(nowMs);
    const result: CompressionResult = {
      dryRun, cutoff: plan.cutoff, codec, replicasCompressed: 0, bytesBefore: 0, bytesAfter: 0, skippedNoGain: 0, recovered, more: plan.more, items: [],
    };
    if (dryRun) {
      result.items = plan.items;
      return result;
    }
    for (const item of plan.items) {
      const record = await this.#deps.catalog.getReplica(item.chunkId, item.replicaId);
      if (!record || record.status !== 'stored' || record.path !== item.path) continue;
      const after = await this.#compressOne(record);
      if (after === undefined) {
        result.skippedNoGain += 1;
        continue;
      }
      result.items.push(item);
      result.replicasCompressed += 1;
      result.bytesBefore += item.sizeBytes;
      result.bytesAfter += after;
    }
    this.#deps.logger.info({ codec, replicasCompressed: result.replicasCompressed, bytesBefore: result.bytesBefore, bytesAfter: result.bytesAfter, skippedNoGain: result.skippedNoGain, recovered }, 'compression pass done');
    return result;
  }

  /** Finishes compressions a crashed pass left half-way. Returns how many it finished. */
  async recover(): Promise<number> {
    const { catalog, backends } = this.#deps;
    let finished = 0;
    for (const member of await catalog.compressionsInFlight()) {
      // A packed replica's member also names its original record (a compressed record's key
      // does not say where the original was, as a file's codec suffix does).
      const [chunkId, replicaId, backendName, compressedKey, originalKey] = member.split('\n') as [string, string, string, string, string?];
      const backend = backends.byName(backendName);
      if (!backend) continue;
      const record = await catalog.getReplica(chunkId, replicaId);
      // The catalog decides which object is the replica; the other one is the leftover.
      const compressedWon = record?.path === compressedKey;
      await backend.delete(compressedWon ? (originalKey ?? withoutCodecSuffix(compressedKey)) : compressedKey);
      // The metadata may already name the compressed object: make it name the original again.
      if (!compressedWon) await this.#recordMetadataOf(backend, record);
      await catalog.endCompression(member);
      finished += 1;
    }
    return finished;
  }

  /** Records the catalog's `record` of a replica on `backend` as its metadata, if it is stored there. */
  async #recordMetadataOf(backend: Backend, record: ReplicaRecord | undefined): Promise<void> {
    if (record?.status !== 'stored' || record.backend !== backend.name || !this.#deps.config.storage.integrity.store_metadata) return;
    await this.#deps.metadata.of(backend).record({ ...record, createdAtMs: await this.#createdAtMsOf(record) });
  }

  /** When the replica's chunk was created (metadata records it), its storedAt when the chunk record is gone. */
  async #createdAtMsOf(record: ReplicaRecord): Promise<number> {
    const chunk = await this.#deps.catalog.getChunk(record.chunkId);
    return Date.parse(chunk?.createdAt ?? '') || Date.parse(record.storedAt);
  }

  /** Compresses one replica; returns its new size, or undefined when the codec gained nothing. */
  async #compressOne(record: ReplicaRecord): Promise<number | undefined> {
    const { config, catalog, backends } = this.#deps;
    const { compression_codec: codec, compression_level: level } = config.chunkvault.maintenance;
    const backend = backends.byName(record.backend)!;
    const pieces: Buffer[] = [];
    await pipeline(await backend.get(record.path), encoder(codec, level, record.sizeBytes), new Writable({
      write(piece: Buffer, _encoding, done) {
        pieces.push(piece);
        done();
      },
    }));
    const compressed = Buffer.concat(pieces);
    if (compressed.byteLength >= record.sizeBytes) return undefined;

    // A file's compressed object goes beside it (<key>.zst); a packed replica's into a new
    // record of a pack in the same directory, the original record marked deleted at the end.
    const packed = parsePackedKey(record.path) !== undefined && backend.putPacked !== undefined;
    const options = { sizeBytes: compressed.byteLength, checksum: hash('sha256', compressed, 'hex'), algorithm: 'sha256' as const };
    let compressedKey = record.path + CODEC_SUFFIX[codec];
    if (packed) {
      // The new record's header is the replica's metadata (reindex reads it): the chunk's checksum and size go with the codec.
      const metadata = packedMetadataOf({ ...record, codec, createdAtMs: await this.#createdAtMsOf(record) });
      ({ key: compressedKey } = await backend.putPacked!(record.path, compressed, { ...options, chunkId: record.chunkId, replicaId: record.replicaId, metadata }));
    } else {
      await backend.put(compressedKey, compressed, options);
    }
    const check = await checksumOfStream(decoded(await backend.get(compressedKey), codec), record.algorithm);
    if (check.checksum !== record.checksum || check.sizeBytes !== record.sizeBytes) {
      await backend.delete(compressedKey);
      throw new Error(`compression of ${record.path} does not decode to the chunk (${check.checksum}, ${check.sizeBytes} bytes); left uncompressed`);
    }

    const member = [record.chunkId, record.replicaId, record.backend, compressedKey, ...(packed ? [record.path] : [])].join('\n');
    await catalog.beginCompression(member);
    if (config.storage.integrity.store_metadata) {
      await this.#deps.metadata.of(backend).record({ ...record, path: compressedKey, codec, storedBytes: compressed.byteLength, createdAtMs: await this.#createdAtMsOf(record) });
    }
    const outcome = await catalog.recordCompressed(record.chunkId, record.replicaId, record.path, compressedKey, codec, compressed.byteLength);
    if (outcome === 'skip') {
      await backend.delete(compressedKey); // the replica changed meanwhile (repaired, expired): leave it be
      // The metadata just recorded names the object removed: record what the catalog holds now.
      await this.#recordMetadataOf(backend, await catalog.getReplica(record.chunkId, record.replicaId));
    } else {
      await backend.delete(record.path);
    }
    await catalog.endCompression(member);
    return outcome === 'ok' ? compressed.byteLength : undefined;
  }
}

/** Compression as a maintenance task (maintenance-task.ts); runs by default when compress_old_data is on. */
export const COMPRESSION_TASK: MaintenanceTask<'compression', CompressionResult> = {
  name: 'compression',
  title: 'Compression',
  dryRun: 'plan',
  changesStoredData: true,
  runsByDefault: (config) => config.storage.cleanup.compress_old_data,
  create(deps) {
    const compression = new Compression(deps);
    return (pass) => compression.run(pass.now(), pass.dryRun);
  },
  forReport: (result, maxItems) => ({ ...result, items: result.items.slice(0, maxItems) }),
  brief: (result) => ({ ...result, items: result.items.length }),
  figures: (result) => ({
    replicas: [['compressed', result.replicasCompressed], ['skipped_no_gain', result.skippedNoGain], ['recovered', result.recovered]],
    bytes: [['before', result.bytesBefore], ['after', result.bytesAfter]],
  }),
  summary: (result, bytes) => [
    { text: `${result.replicasCompressed} replicas compressed (${bytes(result.bytesBefore)} to ${bytes(result.bytesAfter)}, ${result.codec})${result.more ? '; more left for the next pass' : ''}` },
  ],
  cli: {
    command: 'compress',
    description: 'run a compression pass now: re-encode replicas older than compression_age_days',
    runs: 'inline',
    dryRunHelp: 'print what a real pass would compress, and change nothing',
    jsonShape: '{dryRun, cutoff, codec, replicasCompressed, bytesBefore, bytesAfter, skippedNoGain, recovered, more, items: [{backend, path, chunkId, replicaId, sizeBytes, storedAt}]}',
    print: (result) =>
      itemLines(result.dryRun ? 'would compress' : 'compressed', result.items) +
      (result.dryRun
        ? `dry run: ${result.items.length} replica(s) stored before ${result.cutoff} would be compressed with ${result.codec}${result.more ? ' (more are due than one pass handles)' : ''}\n`
        : `${result.replicasCompressed} replica(s) compressed with ${result.codec}: ${result.bytesBefore} -> ${result.bytesAfter} bytes; ${result.skippedNoGain} left as they were (no gain); ${result.recovered} interrupted compression(s) finished\n`),
  },
};
