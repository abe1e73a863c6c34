/**
 * chunkvault's library entry point: open it with a configuration, hand distribution tasks
 * to `vault.producer.store(tasks)`, await `handle.results()`.
 *
 *   const { config } = loadConfig();
 *   const vault = await openChunkvault(config);
 *   const handle = await vault.producer.store(tasks);
 *   const results = await handle.results();
 *   await vault.close();
 */
export { openChunkvault, Chunkvault, type OpenOptions } from './app.js';
export { loadConfig, unimplementedSettings, type LoadConfigOptions, type LoadedConfig } from './config/load-config.js';
export { configSchema, type Config, type PartitionStrategy } from './config/config.schema.js';
export type { ChecksumAlgorithm } from './domain/types.js';
export { ChunkProducer } from './producer/chunk-producer.js';
export { StoreHandle, type WaitOptions, type ReplicaRef } from './producer/store-handle.js';
export type { Backend, PutOptions, ObjectInfo, BackendUsage } from './backends/backend.js';
export { LocalBackend } from './backends/local.backend.js';
export type { StorageStatistics } from './stats/statistics.js';
export type { ReindexReport } from './reindex/reindex.js';
export type { DistributionTask, ReplicaPlacement, StoredChunk, ReplicaRecord, ChunkRecord, ReplicaStatus, ChunkStatus } from './domain/types.js';
export * from './errors.js';
