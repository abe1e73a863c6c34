/**
 * The YAML config with hostile values and documents: loadConfig either returns a frozen,
 * sane configuration or throws a ConfigError listing the problems, never anything else
 * (no TypeError, no RangeError, no hang). Hostile documents: wrong types at every key,
 * unknown and prototype keys, alias bombs ("billion laughs"), cycles, deep nesting, huge
 * numbers, js-yaml tags, several documents, NUL bytes; hostile environment overrides too.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { dump } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../src/config/load-config.js';
import { ConfigError } from '../../src/errors.js';
import { builtinsFingerprint, fuzzParameters, hostileString, hostileValue, show, timeoutFor } from './support/hostile.js';

/** Every key path of the config file with a value of the right type. */
const VALID_LEAVES: Record<string, unknown> = {
  'storage.backends.local.enabled': true,
  'storage.backends.local.base_path': './data',
  'storage.backends.local.max_size_gb': 10,
  'storage.backends.cloud.enabled': false,
  'storage.backends.cloud.aws_s3.bucket': 'b',
  'storage.backends.cloud.aws_s3.endpoint': 'http://127.0.0.1:7480',
  'storage.backends.cloud.aws_s3.key_prefix': 'cv/',
  'storage.backends.cloud.gcp_gcs.bucket': 'b',
  'storage.backends.cloud.azure_blob.container': 'c',
  'storage.organization.partition_by': 'date',
  'storage.organization.checkpoint_interval_chunks': 100,
  'storage.integrity.checksum_algorithm': 'md5',
  'storage.integrity.verify_on_write': true,
  'storage.cleanup.retention_days': 30,
  'storage.cleanup.cleanup_schedule': 'daily',
  'storage.cleanup.compression_age_days': 7,
  'storage.performance.max_concurrent_writes': 4,
  'storage.performance.write_buffer_size_mb': 10,
  'use_local_storage': true,
  'chunkvault.redis.url': 'redis://127.0.0.1:6379',
  'chunkvault.redis.prefix': 'cv',
  'chunkvault.retry.attempts': 3,
  'chunkvault.retry.backoff_ms': 100,
  'chunkvault.staging.dir': './staging',
  'chunkvault.worker.lock_duration_ms': 30000,
  'chunkvault.jobs.keep_completed_seconds': 60,
  'chunkvault.maintenance.compression_codec': 'gzip',
  'chunkvault.maintenance.scrub_bytes_per_second': 1000,
  'chunkvault.http.host': '127.0.0.1',
  'chunkvault.http.port': 8080,
  'chunkvault.http.max_body_mb': 1,
  'chunkvault.metrics.worker_port': 0,
  'chunkvault.log_level': 'info',
  'chunkvault.log_format': 'json',
};

const ENV_VARIABLES = ['REDIS_URL', 'CHUNKVAULT_REDIS_PREFIX', 'CHUNKVAULT_BASE_PATH', 'CHUNKVAULT_STAGING_DIR', 'LOG_LEVEL', 'LOG_FORMAT'] as const;

function setPath(target: Record<string, unknown>, keyPath: string, value: unknown): void {
  const keys = keyPath.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (!Object.hasOwn(node, key) || typeof node[key] !== 'object' || node[key] === null) Object.defineProperty(node, key, { value: {}, enumerable: true, writable: true, configurable: true });
    node = node[key] as Record<string, unknown>;
  }
  Object.defineProperty(node, keys[keys.length - 1]!, { value, enumerable: true, writable: true, configurable: true });
}

/** A config object: some valid leaves, some hostile ones, some unknown or prototype keys. */
const configObject = fc
  .record({
    valid: fc.subarray(Object.keys(VALID_LEAVES), { maxLength: 8 }),
    hostile: fc.array(fc.tuple(fc.constantFrom(...Object.keys(VALID_LEAVES)), hostileValue({ jsonOnly: true })), { minLength: 1, maxLength: 4 }),
    unknown: fc.array(fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'storage.__proto__', 'chunkvault.constructor.prototype', 'storage.backends.local.__proto__'), hostileString().map((s) => `storage.${s.slice(0, 40)}`)), hostileValue({ jsonOnly: true })), { maxLength: 2 }),
  })
  .map(({ valid, hostile, unknown }) => {
    const out: Record<string, unknown> = {};
    for (const key of valid) setPath(out, key, VALID_LEAVES[key]);
    for (const [key, value] of [...hostile, ...unknown]) setPath(out, key, value);
    return out;
  });

/** Hand-written hostile documents. */
const HOSTILE_DOCUMENTS: Record<string, string> = {
  billionLaughs: [
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`),
    'storage: *j',
    'chunkvault: { redis: *j, log_level: *j }',
  ].join('\n'),
  laughsAsMappings: [
    'x0: &x0 { a: 1, b: 2 }',
    ...Array.from({ length: 12 }, (_, i) => `x${i + 1}: &x${i + 1} { a: *x${i}, b: *x${i}, c: *x${i} }`),
    'storage: { backends: { local: *x12 } }',
  ].join('\n'),
  cycle: 'storage: &s { backends: { local: { base_path: *s } } }\nchunkvault: &c { redis: *c }\n',
  deepSequence: `storage: ${'['.repeat(5000)}${']'.repeat(5000)}\n`,
  deepMapping: `storage:\n${Array.from({ length: 300 }, (_, i) => `${' '.repeat(i + 1)}k${i}:`).join('\n')} 1\n`,
  hugeNumbers: 'storage:\n  backends:\n    local:\n      max_size_gb: 1e400\n  cleanup:\n    retention_days: 99999999999999999999999\n  performance:\n    max_concurrent_writes: .inf\nchunkvault:\n  http:\n    port: -.inf\n    max_body_mb: .nan\n',
  jsFunction: 'chunkvault:\n  log_level: !!js/function "function () { return 1 }"\n',
  jsRegexp: 'chunkvault:\n  log_level: !!js/regexp /x/\n',
  jsUndefined: 'chunkvault:\n  log_level: !!js/undefined\n',
  customTag: 'storage: !evil { backends: {} }\n',
  binary: 'storage:\n  backends:\n    local:\n      base_path: !!binary aGVsbG8=\n',
  timestamp: 'storage:\n  cleanup:\n    retention_days: 2026-01-01\n',
  set: 'chunkvault:\n  log_level: !!set { a, b }\n',
  twoDocuments: 'storage: {}\n---\nstorage: {}\n',
  topLevelScalar: '42\n',
  topLevelList: '- storage\n- chunkvault\n',
  duplicateKeys: 'storage: {}\nstorage: {}\n',
  nulByte: 'storage:\n  backends:\n    local:\n      base_path: "a\\0b"\n',
  rawNul: 'chunkvault:\n  log_level: info\u0000\n',
  invalidUtf8: 'chunkvault:\n  log_level: \udc80\n',
  bom: '\ufeffchunkvault:\n  log_level: info\n',
  tabs: 'storage:\n\tbackends: {}\n',
  protoKey: '__proto__: { polluted: yes }\nstorage: { __proto__: { polluted: yes } }\n',
  mergeProto: 'storage: &b { __proto__: { log_level: debug } }\nchunkvault:\n  <<: *b\n',
  mergeProtoInline: 'chunkvault:\n  <<: { __proto__: { redis: { url: "redis://:secret@127.0.0.1:6379" } } }\n',
  passwordInUrl: 'chunkvault:\n  redis:\n    url: "redis://:hunter2@127.0.0.1:6379"\n',
  longString: `chunkvault:\n  log_level: ${'a'.repeat(1_000_000)}\n`,
  manyKeys: `storage:\n${Array.from({ length: 20_000 }, (_, i) => `  k${i}: ${i}`).join('\n')}\n`,
  empty: '',
  onlyComments: '# nothing\n',
  nullDocument: '~\n',
};

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-config-fuzz-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCount = 0;
async function load(text: string, env: NodeJS.ProcessEnv = {}): Promise<LoadedConfig | ConfigError> {
  const file = path.join(dir, `config-${fileCount++}.yml`);
  await writeFile(file, text);
  try {
    return loadConfig({ configPath: file, env, cwd: dir });
  } catch (error) {
    expect(error, `not a ConfigError: ${(error as Error)?.stack}`).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  } finally {
    await rm(file, { force: true });
  }
}

/** An accepted configuration is frozen, complete and sane. */
function expectSane(loaded: LoadedConfig, context: string): void {
  const { config } = loaded;
  expect(Object.isFrozen(config), context).toBe(true);
  for (const p of [config.storage.backends.local.base_path, config.chunkvault.staging.dir]) {
    expect(path.isAbsolute(p), `${context}: ${p}`).toBe(true);
    expect(p.includes('\u0000'), `${context}: NUL in ${JSON.stringify(p)}`).toBe(false);
  }
  const numbers = [
    config.storage.backends.local.max_size_gb, config.storage.organization.checkpoint_interval_chunks, config.storage.cleanup.retention_days,
    config.storage.performance.max_concurrent_writes, config.chunkvault.retry.attempts, config.chunkvault.retry.backoff_ms,
    config.chunkvault.http.port, config.chunkvault.http.max_body_mb, config.chunkvault.worker.lock_duration_ms,
  ];
  for (const n of numbers) expect(Number.isFinite(n) && n >= 0, `${context}: ${n}`).toBe(true);
  // Nothing inherited: every section is a plain object with only its own keys.
  for (const section of [config, config.storage, config.storage.backends, config.storage.backends.local, config.chunkvault, config.chunkvault.redis]) {
    expect(Object.getPrototypeOf(section), context).toBe(Object.prototype);
  }
}

describe('loadConfig with hostile input (property)', () => {
  it('hostile values at every key: a sane config or a ConfigError listing problems', async () => {
    const fingerprint = builtinsFingerprint();
    const counts = { refused: 0, accepted: 0 };
    await fc.assert(
      fc.asyncProperty(configObject, async (object) => {
        const text = dump(object, { skipInvalid: true, noRefs: true });
        const outcome = await load(text);
        if (outcome instanceof ConfigError) {
          expect(outcome.problems.length + (outcome.message.length > 0 ? 1 : 0), show(object)).toBeGreaterThan(0);
          expect(outcome.message).toMatch(/config|YAML/);
          counts.refused += 1;
        } else {
          expectSane(outcome, show(object));
          counts.accepted += 1;
        }
      }),
      fuzzParameters(300, 0.05),
    );
    expect(builtinsFingerprint()).toBe(fingerprint);
    console.info(`config fuzz: ${JSON.stringify(counts)}`);
  }, timeoutFor(fuzzParameters(300, 0.05).numRuns!, 20));

  it('hostile environment overrides: a sane config or a ConfigError', async () => {
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom(...ENV_VARIABLES, 'CHUNKVAULT_CONFIG'), hostileString().map((s) => s.replaceAll('\u0000', '')), { minKeys: 1 }), async (env) => {
        const outcome = await load('chunkvault:\n  log_level: warn\n', env);
        if (!(outcome instanceof ConfigError)) expectSane(outcome, show(env));
      }),
      fuzzParameters(200, 0.02),
    );
  });

  for (const [name, text] of Object.entries(HOSTILE_DOCUMENTS)) {
    it(`hostile document "${name}": a sane config or a ConfigError`, async () => {
      const fingerprint = builtinsFingerprint();
      const outcome = await load(text);
      if (!(outcome instanceof ConfigError)) expectSane(outcome, name);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(builtinsFingerprint()).toBe(fingerprint);
    });
  }

  it('regression: refuses NUL bytes in paths (they can never be opened)', async () => {
    const outcome = await load(HOSTILE_DOCUMENTS.nulByte!);
    expect(outcome).toBeInstanceOf(ConfigError);
    expect((outcome as ConfigError).problems.join('\n')).toMatch(/storage\.backends\.local\.base_path: must not contain a NUL byte/);
    const fromEnv = await load('', { CHUNKVAULT_STAGING_DIR: '/tmp/a\u0000b' });
    expect((fromEnv as ConfigError).problems.join('\n')).toMatch(/chunkvault\.staging\.dir: must not contain a NUL byte/);
  });

  it('regression: a key named __proto__ is an unknown key, also when merged in with <<', async () => {
    for (const name of ['protoKey', 'mergeProto', 'mergeProtoInline'] as const) {
      const outcome = await load(HOSTILE_DOCUMENTS[name]!);
      expect(outcome, name).toBeInstanceOf(ConfigError);
      expect((outcome as ConfigError).problems.join('\n'), name).toMatch(/unknown key\(s\) "__proto__"/);
    }
  });
});
