/**
 * Every Redis key of the catalog and the checkpoint index, built in this one place: the
 * TypeScript side reads them, and the Lua scripts get them in KEYS from here (a script that
 * builds key names itself cannot be routed by a Redis Cluster client).
 *
 * All keys start with the catalog's prefix P, which holds the deployment's hash tag
 * ("{chunkvault}:catalog"), so all of them live in one Cluster slot. Where a script must
 * reach records whose ids it only learns inside Redis (the sibling replicas of a chunk, the
 * chunks of a restored checkpoint), it gets the records' key base (`replicaBase`,
 * `chunkBase`) in KEYS and appends the id: the same prefix, so the same slot.
 *
 *   P:r:<chunkId>:<replicaId>   hash    replica record
 *   P:c:<chunkId>               hash    chunk record
 *   P:c:<chunkId>:replicas      set     replica ids of the chunk
 *   P:chunks                    zset    live chunk ids by first-queued time (ms)
 *   P:stats                     hash    counters (Catalog.counters)
 *   P:reserved:<backend>        hash    bytes reserved by in-flight writes, by chunkId:replicaId
 *   P:verified                  zset    chunkId:replicaId of stored replicas by last verification (ms)
 *   P:compressing, P:deleting   set     compressions and retention deletions in flight
 *   P:staged:<segment>          set     chunk ids with bytes in a staging segment, not ended yet
 *   P:ledger:seq                string  chunks ever entered in the ledger
 *   P:ledger                    zset    chunk ids by ledger sequence, not yet in a checkpoint
 *   P:checkpoints               zset    checkpoint ids by sequence
 *   P:checkpoint:<id>           hash    checkpoint index entry
 *   P:checkpoint:head           hash    newest checkpoint: id, sequence, toLedgerSeq
 *   P:checkpoint:lock           string  token of the process sealing a checkpoint
 *   P:identity                  hash    marker each backend must hold, by backend name (storage-identity.ts)
 *   P:identity:lock:<backend>   string  token of the process creating or adopting that backend's marker
 *   P:replication:fence         string  written by a replication fence (redis/replication-barrier.ts)
 *   P:minute:<epochMinute>      hash    what happened in that minute (minute-series.ts), expires after the series' window
 */
export class CatalogKeys {
  readonly stats: string;
  readonly chunks: string;
  readonly verified: string;
  readonly compressing: string;
  readonly deleting: string;
  readonly ledgerSeq: string;
  readonly ledger: string;
  readonly checkpoints: string;
  readonly checkpointHead: string;
  readonly checkpointLock: string;
  readonly identity: string;
  readonly replicationFence: string;
  /** Key base of chunk records: `chunkBase + chunkId` is a chunk's record. */
  readonly chunkBase: string;

  /** `prefix` is the hash-tagged prefix of the catalog, e.g. "{chunkvault}:catalog". */
  constructor(readonly prefix: string) {
    this.stats = `${prefix}:stats`;
    this.chunks = `${prefix}:chunks`;
    this.verified = `${prefix}:verified`;
    this.compressing = `${prefix}:compressing`;
    this.deleting = `${prefix}:deleting`;
    this.ledgerSeq = `${prefix}:ledger:seq`;
    this.ledger = `${prefix}:ledger`;
    this.checkpoints = `${prefix}:checkpoints`;
    this.checkpointHead = `${prefix}:checkpoint:head`;
    this.checkpointLock = `${prefix}:checkpoint:lock`;
    this.identity = `${prefix}:identity`;
    this.replicationFence = `${prefix}:replication:fence`;
    this.chunkBase = `${prefix}:c:`;
  }

  chunk(chunkId: string): string {
    return this.chunkBase + chunkId;
  }

  chunkReplicas(chunkId: string): string {
    return `${this.chunkBase}${chunkId}:replicas`;
  }

  /** Key base of a chunk's replica records: `replicaBase(chunkId) + replicaId` is one. */
  replicaBase(chunkId: string): string {
    return `${this.prefix}:r:${chunkId}:`;
  }

  replica(chunkId: string, replicaId: string): string {
    return this.replicaBase(chunkId) + replicaId;
  }

  reserved(backend: string): string {
    return `${this.prefix}:reserved:${backend}`;
  }

  staged(segment: string): string {
    return `${this.prefix}:staged:${segment}`;
  }

  identityLock(backend: string): string {
    return `${this.prefix}:identity:lock:${backend}`;
  }

  checkpoint(id: string): string {
    return `${this.prefix}:checkpoint:${id}`;
  }

  /** The per-minute series' hash for minute `epochMinute` (minutes since the Unix epoch). */
  minute(epochMinute: number): string {
    return `${this.prefix}:minute:${epochMinute}`;
  }

  /** The keys every script that settles a chunk takes first (scripts/includes/chunk-keys.lua). */
  chunkScriptKeys(chunkId: string): string[] {
    return [this.chunk(chunkId), this.chunkReplicas(chunkId), this.replicaBase(chunkId), this.chunks, this.stats, this.ledgerSeq, this.ledger];
  }

  /** The chunk keys, then the replica's record: how the scripts that change one replica begin their KEYS. */
  replicaScriptKeys(chunkId: string, replicaId: string): string[] {
    return [...this.chunkScriptKeys(chunkId), this.replica(chunkId, replicaId)];
  }
}
