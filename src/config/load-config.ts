/**
 * Loads the configuration once: YAML file, then the documented environment overrides,
 * then the zod schema (defaults, validation), then frozen. Nothing else reads process.env.
 *
 * Environment overrides (the whole list):
 *   CHUNKVAULT_CONFIG        path of the YAML file (the CLI's --config wins over it)
 *   REDIS_URL                chunkvault.redis.url
 *   CHUNKVAULT_REDIS_MODE    chunkvault.redis.mode
 *   CHUNKVAULT_REDIS_NODES   chunkvault.redis.nodes (comma-separated host:port)
 *   CHUNKVAULT_REDIS_SENTINEL_MASTER chunkvault.redis.sentinel_master
 *   CHUNKVAULT_REDIS_PREFIX  chunkvault.redis.prefix
 *   CHUNKVAULT_BASE_PATH     storage.backends.local.base_path
 *   CHUNKVAULT_STAGING_DIR   chunkvault.staging.dir
 *   CHUNKVAULT_STAGING_BACKEND chunkvault.staging.backend
 *   LOG_LEVEL                chunkvault.log_level
 *   LOG_FORMAT               chunkvault.log_format (the CLI's --pretty sets it to pretty)
 *
 * Redis credentials are read from the environment where the connection is made
 * (redis/redis-endpoint.ts), never through the configuration.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { CORE_SCHEMA, loadAll, mergeTag } from 'js-yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { configSchema, type Config } from './config.schema.js';
import { levelProblem } from '../integrity/codecs.js';
import { CLOUD_BACKEND_NAMES } from '../backends/cloud-backends.js';
import { RESERVED_KEY_PREFIX } from '../storage/storage-layout.js';

export const DEFAULT_CONFIG_PATH = 'config/storage_config.yml';

export interface LoadConfigOptions {
  /** Explicit path (CLI --config); wins over CHUNKVAULT_CONFIG. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Directory relative paths are resolved against; defaults to the process's cwd. */
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  /** The file that was read, or undefined when running on the embedded defaults. */
  source: string | undefined;
}

const ENV_OVERRIDES: ReadonlyArray<[variable: string, keyPath: readonly string[], parse?: (value: string) => unknown]> = [
  ['REDIS_URL', ['chunkvault', 'redis', 'url']],
  ['CHUNKVAULT_REDIS_MODE', ['chunkvault', 'redis', 'mode']],
  ['CHUNKVAULT_REDIS_NODES', ['chunkvault', 'redis', 'nodes'], (value) => value.split(',').map((node) => node.trim()).filter(Boolean)],
  ['CHUNKVAULT_REDIS_SENTINEL_MASTER', ['chunkvault', 'redis', 'sentinel_master']],
  ['CHUNKVAULT_REDIS_PREFIX', ['chunkvault', 'redis', 'prefix']],
  ['CHUNKVAULT_BASE_PATH', ['storage', 'backends', 'local', 'base_path']],
  ['CHUNKVAULT_STAGING_DIR', ['chunkvault', 'staging', 'dir']],
  ['CHUNKVAULT_STAGING_BACKEND', ['chunkvault', 'staging', 'backend']],
  ['LOG_LEVEL', ['chunkvault', 'log_level']],
  ['LOG_FORMAT', ['chunkvault', 'log_format']],
];

/** Reads, overrides, validates and freezes the configuration; throws ConfigError listing every problem. */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.configPath ?? nonEmpty(env.CHUNKVAULT_CONFIG);
  let source: string | undefined;
  let raw: unknown = {};

  if (explicit !== undefined) {
    source = path.resolve(cwd, explicit);
    if (!existsSync(source)) throw new ConfigError(`config file not found: ${source}`);
  } else if (existsSync(path.resolve(cwd, DEFAULT_CONFIG_PATH))) {
    source = path.resolve(cwd, DEFAULT_CONFIG_PATH);
  }
  if (source !== undefined) raw = readYaml(source);
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`config file ${source} must hold a YAML mapping at its top level`);
  }

  const fileUrl = (raw as { chunkvault?: { redis?: { url?: unknown } } }).chunkvault?.redis?.url;
  if (typeof fileUrl === 'string' && hasCredentials(fileUrl)) {
    // Secrets come from the environment only: a config file gets copied, committed and printed.
    throw new ConfigError(`invalid configuration in ${source}`, ['chunkvault.redis.url: must not hold a password; set REDIS_URL in the environment instead']);
  }
  const overridden = structuredClone(raw) as Record<string, unknown>;
  for (const [variable, keyPath, parse] of ENV_OVERRIDES) {
    const value = nonEmpty(env[variable]);
    if (value !== undefined) setPath(overridden, keyPath, parse ? parse(value) : value);
  }

  const parsed = configSchema.safeParse(overridden);
  if (!parsed.success) {
    throw new ConfigError(`invalid configuration${source ? ` in ${source}` : ''}`, formatIssues(parsed.error.issues));
  }
  const config = parsed.data;
  const problems = crossFieldProblems(config);
  if (problems.length) throw new ConfigError(`invalid configuration${source ? ` in ${source}` : ''}`, problems);

  config.storage.backends.local.base_path = path.resolve(cwd, config.storage.backends.local.base_path);
  config.chunkvault.staging.dir = path.resolve(cwd, config.chunkvault.staging.dir);
  const tls = config.chunkvault.redis.tls;
  for (const file of ['ca_file', 'cert_file', 'key_file'] as const) {
    const value = tls[file];
    if (value !== undefined) tls[file] = path.resolve(cwd, value);
  }
  return { config: deepFreeze(config), source };
}

/**
 * Settings that are valid but not acted on by this version, as sentences for the start-up
 * log: an operator must never believe a configured behaviour is running when it is not.
 */
export function unimplementedSettings(config: Config): string[] {
  const notes: string[] = [];
  const s = config.storage;
  if (s.performance.enable_write_cache) {
    notes.push('storage.performance.enable_write_cache / cache_size_mb: no write cache is implemented; every write goes straight to the backend');
  }
  notes.push('storage.performance.write_buffer_size_mb: not used; writes stream in 1 MiB slices');
  return notes;
}

function crossFieldProblems(config: Config): string[] {
  const problems: string[] = [...redisProblems(config.chunkvault.redis)];
  const { compression_codec: codec, compression_level: level } = config.chunkvault.maintenance;
  const badLevel = level === undefined ? undefined : levelProblem(codec, level);
  if (badLevel) problems.push(`chunkvault.maintenance.compression_level: ${badLevel}`);
  const cloud = config.storage.backends.cloud;
  const cloudBlocks = CLOUD_BACKEND_NAMES.filter((name) => cloud[name] !== undefined);
  if (cloud.enabled && cloudBlocks.length === 0) {
    problems.push(`storage.backends.cloud.enabled: true, but none of ${CLOUD_BACKEND_NAMES.join(', ')} is configured`);
  }
  const cloudInUse = cloud.enabled && cloudBlocks.length > 0;
  if (!config.use_local_storage && !cloudInUse) {
    problems.push(`use_local_storage: false leaves no backend (enable storage.backends.cloud with at least one of ${CLOUD_BACKEND_NAMES.join(', ')})`);
  } else if (config.use_local_storage && !config.storage.backends.local.enabled) {
    problems.push('storage.backends.local.enabled: false contradicts use_local_storage: true (set use_local_storage: false to use cloud backends only)');
  }
  const staging = config.chunkvault.staging;
  if (staging.backend !== 'local' && cloud[staging.backend] === undefined) {
    problems.push(`chunkvault.staging.backend: ${staging.backend} names a bucket, but storage.backends.cloud.${staging.backend} is not configured`);
  }
  const { key_prefix: stagingPrefix } = staging;
  // Inside the reserved namespace (replica listings take what is outside it for data) and apart
  // from chunkvault's other objects there (the orphan sweep deletes what it lists).
  const ownFolder = stagingPrefix.startsWith(`${RESERVED_KEY_PREFIX}staging`) && stagingPrefix.endsWith('/') && !stagingPrefix.includes('//');
  if (staging.backend !== 'local' && !ownFolder) {
    problems.push(`chunkvault.staging.key_prefix: ${JSON.stringify(staging.key_prefix)} must be a folder whose name starts with "${RESERVED_KEY_PREFIX}staging", like "${RESERVED_KEY_PREFIX}staging/"`);
  }
  return problems;
}

function redisProblems(redis: Config['chunkvault']['redis']): string[] {
  const problems: string[] = [];
  if (redis.mode !== 'standalone' && redis.nodes.length === 0) {
    problems.push(`chunkvault.redis.nodes: mode ${redis.mode} needs the ${redis.mode === 'sentinel' ? "Sentinels'" : "cluster nodes'"} host:port (at least one)`);
  }
  if (redis.mode === 'standalone' && redis.nodes.length > 0) {
    problems.push('chunkvault.redis.nodes: only read in sentinel and cluster modes (standalone connects to chunkvault.redis.url); set chunkvault.redis.mode');
  }
  if (redis.mode === 'sentinel' && redis.sentinel_master === undefined) {
    problems.push('chunkvault.redis.sentinel_master: mode sentinel needs the name the Sentinels monitor the master under');
  }
  if ((redis.tls.cert_file === undefined) !== (redis.tls.key_file === undefined)) {
    problems.push('chunkvault.redis.tls: cert_file and key_file go together (a client certificate and its key)');
  }
  return problems;
}

const YAML_SCHEMA = CORE_SCHEMA.withTags(mergeTag);

function readYaml(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`, [], { cause: error });
  }
  let documents: unknown[];
  try {
    // loadAll, not load: an empty file (or one of comments only) is no document, which load
    // refuses; chunkvault treats it as "all defaults". Merge keys (`<<: *defaults`) keep
    // working as they did before js-yaml 5 left them out of its default schema.
    documents = loadAll(text, { filename: file, schema: YAML_SCHEMA });
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(error as Error).message}`, [], { cause: error });
  }
  if (documents.length > 1) {
    throw new ConfigError(`config file ${file} holds ${documents.length} YAML documents; chunkvault reads one`);
  }
  return documents[0];
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    if (issue.code === 'unrecognized_keys') return `${where}: unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${where}: ${issue.message}`;
  });
}

function setPath(target: Record<string, unknown>, keyPath: readonly string[], value: unknown): void {
  let node = target;
  for (const key of keyPath.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keyPath[keyPath.length - 1]!] = value;
}

function hasCredentials(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
