/**
 * A seeded workload for the fault-injection scenarios: N chunks of mixed sizes, each with 2-3
 * replicas on distinct nodes and clouds. Nothing but the seed is kept: a chunk's bytes are
 * regenerated from it whenever they are needed (to submit them, or to compare a read), so a
 * workload of thousands of chunks costs a few hundred bytes of memory per chunk.
 */
import { createHash } from 'node:crypto';
import type { ChecksumAlgorithm, DistributionTask, ReplicaPlacement, StoredChunk } from '../../../src/domain/types.js';
import { mulberry32 } from '../../support/random.js';

/** A seeded generator (mulberry32) with the draws a workload needs; `next()` is uniform in [0, 1). */
export class Rng {
  readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** A fresh 32-bit seed for a child generator. */
  seed(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
}

/** The seed a scenario runs with: FAULT_SEED when set (to reproduce a failure), else `fallback`. */
export function scenarioSeed(fallback: number): number {
  const fromEnv = process.env.FAULT_SEED;
  if (fromEnv === undefined || fromEnv === '') return fallback;
  const seed = Number(fromEnv);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`FAULT_SEED must be a non-negative integer, got ${JSON.stringify(fromEnv)}`);
  return seed;
}

export interface WorkloadOptions {
  seed: number;
  chunks: number;
  /** Chunk ids are `<prefix>-<seed>-<index>`; default "fc". */
  prefix?: string;
  /** Sizes are log-uniform between these bounds (bytes); default 1 KiB .. 1 MiB. */
  minBytes?: number;
  maxBytes?: number;
  /** Replicas per chunk, inclusive range; default [2, 3]. */
  replicas?: readonly [number, number];
  /** Cloud providers replicas are placed on (cloud storage off: all route to the local backend); default aws, gcp, azure. */
  providers?: readonly string[];
  /** Share of chunks whose bytes are text-like (compressible), the rest random; default 0.5. */
  compressibleShare?: number;
}

/** One chunk of a workload: everything but its bytes, which `Workload.bytesOf` regenerates. */
export interface ChunkSpec {
  index: number;
  chunkId: string;
  taskId: string;
  sizeBytes: number;
  compressible: boolean;
  byteSeed: number;
  replicas: ReplicaPlacement[];
}

const NODES = ['node-a', 'node-b', 'node-c', 'node-d'];
const WORDS = ['tensor', 'gradient', 'epoch', 'token', 'shard', 'batch', 'weight', 'sample', 'label', 'layer', 'loss', 'vector'];

export class Workload {
  readonly seed: number;
  readonly chunks: readonly ChunkSpec[];
  readonly #byId = new Map<string, ChunkSpec>();

  constructor(options: WorkloadOptions) {
    const { seed, chunks: count, prefix = 'fc', minBytes = 1024, maxBytes = 1024 * 1024, replicas = [2, 3] } = options;
    const providers = options.providers ?? ['aws', 'gcp', 'azure'];
    const compressibleShare = options.compressibleShare ?? 0.5;
    if (minBytes < 1 || maxBytes < minBytes) throw new Error(`bad size range ${minBytes}..${maxBytes}`);
    this.seed = seed;
    const rng = new Rng(seed);
    const specs: ChunkSpec[] = [];
    for (let index = 0; index < count; index++) {
      const chunkId = `${prefix}-${seed}-${index}`;
      const sizeBytes = Math.round(Math.exp(Math.log(minBytes) + rng.next() * (Math.log(maxBytes) - Math.log(minBytes))));
      const replicaCount = rng.int(replicas[0], replicas[1]);
      const firstNode = rng.int(0, NODES.length - 1);
      const firstProvider = rng.int(0, providers.length - 1);
      const placements: ReplicaPlacement[] = Array.from({ length: replicaCount }, (_, j) => ({
        replicaId: `${chunkId}-r${j}`,
        chunkId,
        targetNode: NODES[(firstNode + j) % NODES.length]!,
        cloudProvider: providers[(firstProvider + j) % providers.length]!,
        status: 'completed',
      }));
      const spec: ChunkSpec = { index, chunkId, taskId: `task-${seed}-${index}`, sizeBytes, compressible: rng.next() < compressibleShare, byteSeed: rng.seed(), replicas: placements };
      specs.push(spec);
      this.#byId.set(chunkId, spec);
    }
    this.chunks = specs;
  }

  /** Number of replicas over all chunks. */
  get replicaCount(): number {
    return this.chunks.reduce((sum, c) => sum + c.replicas.length, 0);
  }

  /** Total chunk bytes (one copy each). */
  get totalBytes(): number {
    return this.chunks.reduce((sum, c) => sum + c.sizeBytes, 0);
  }

  has(chunkId: string): boolean {
    return this.#byId.has(chunkId);
  }

  spec(chunkId: string): ChunkSpec {
    const spec = this.#byId.get(chunkId);
    if (!spec) throw new Error(`chunk ${chunkId} is not part of workload seed ${this.seed}`);
    return spec;
  }

  /** The chunk's bytes, the same every time for the same seed. */
  bytesOf(chunkId: string): Buffer {
    const spec = this.spec(chunkId);
    return spec.compressible ? textBytes(spec.byteSeed, spec.sizeBytes) : randomBytesOf(spec.byteSeed, spec.sizeBytes);
  }

  checksumOf(chunkId: string, algorithm: ChecksumAlgorithm = 'md5'): string {
    return createHash(algorithm).update(this.bytesOf(chunkId)).digest('hex');
  }

  /** The distribution task of one chunk, its bytes generated now. */
  task(spec: ChunkSpec): DistributionTask {
    return { taskId: spec.taskId, chunkId: spec.chunkId, chunkData: this.bytesOf(spec.chunkId), status: 'completed', replicas: spec.replicas.map((r) => ({ ...r })) };
  }

  /** Tasks in batches of at most `size` chunks, or at most `maxBytes` chunk bytes, whichever comes first. */
  *batches(size: number, maxBytes = 64 * 1024 * 1024, from = 0, to = this.chunks.length): Generator<DistributionTask[]> {
    let batch: DistributionTask[] = [];
    let bytes = 0;
    for (let i = from; i < to; i++) {
      const spec = this.chunks[i]!;
      if (batch.length > 0 && (batch.length >= size || bytes + spec.sizeBytes > maxBytes)) {
        yield batch;
        batch = [];
        bytes = 0;
      }
      batch.push(this.task(spec));
      bytes += spec.sizeBytes;
    }
    if (batch.length) yield batch;
  }
}

/** What a producer was told and handed over; the invariant checker's view of one run. */
export class Acknowledgements {
  /** Replicas handed to the producer and tracked by it (`handle.tracked`). */
  readonly submitted: Array<{ chunkId: string; replicaId: string }> = [];
  /** Chunks with at least one replica that `handle.results()` said was stored. */
  readonly acknowledgedChunks = new Set<string>();
  /** Replicas `handle.results()` said were stored. */
  acknowledgedReplicas = 0;
  /** Replicas `handle.results()` said failed (with their reasons). */
  readonly failed: StoredChunk[] = [];

  track(handle: { tracked: ReadonlyArray<{ chunkId: string; replicaId: string }> }): void {
    for (const ref of handle.tracked) this.submitted.push({ chunkId: ref.chunkId, replicaId: ref.replicaId });
  }

  acknowledge(results: readonly StoredChunk[]): void {
    for (const result of results) {
      if (result.status === 'stored') {
        this.acknowledgedChunks.add(result.chunkId);
        this.acknowledgedReplicas += 1;
      } else {
        this.failed.push(result);
      }
    }
  }
}

function randomBytesOf(seed: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  const rng = new Rng(seed);
  let i = 0;
  for (; i + 4 <= size; i += 4) out.writeUInt32LE(Math.floor(rng.next() * 4294967296) >>> 0, i);
  for (; i < size; i++) out[i] = Math.floor(rng.next() * 256);
  return out;
}

/** Text-like bytes (words from a small vocabulary, seeded), which every codec shrinks. */
function textBytes(seed: number, size: number): Buffer {
  const rng = new Rng(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < size) {
    const word = `${rng.pick(WORDS)}${rng.int(0, 99)} `;
    parts.push(word);
    length += word.length;
  }
  return Buffer.from(parts.join('').slice(0, size), 'latin1');
}
