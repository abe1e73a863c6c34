/**
 * Configuration: the seed's file is accepted unchanged, defaults live in the schema, the
 * documented environment variables override the file, and a bad file lists every problem.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, unimplementedSettings } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';
import { REPO_ROOT } from './support/harness.js';

const SEED_FILE = path.join(REPO_ROOT, 'test/fixtures/seed_storage_config.yml');

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-config-'));
  dirs.push(dir);
  const file = path.join(dir, 'storage_config.yml');
  await writeFile(file, text);
  return file;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('accepts the seed design\'s file unchanged, with its values', () => {
    const { config, source } = loadConfig({ configPath: SEED_FILE, env: {}, cwd: '/srv' });
    expect(source).toBe(SEED_FILE);
    expect(config.storage.backends.local).toEqual({ enabled: true, base_path: '/srv/storage/data', max_size_gb: 100 });
    expect(config.storage.backends.cloud.aws_s3).toEqual({ bucket: 'ml-training-storage', region: 'us-east-1', force_path_style: false, key_prefix: '', max_size_gb: 0 });
    expect(config.storage.backends.cloud.gcp_gcs).toEqual({ bucket: 'ml-training-storage', region: 'us-central1', key_prefix: '', max_size_gb: 0 });
    expect(config.storage.organization).toEqual({ partition_by: 'date', create_checkpoints: true, checkpoint_interval_chunks: 1000 });
    expect(config.storage.integrity.checksum_algorithm).toBe('md5');
    expect(config.storage.performance.max_concurrent_writes).toBe(20);
    expect(config.use_local_storage).toBe(true);
  });

  it('ships a config/storage_config.yml whose values are the embedded defaults (bar the seed\'s cloud buckets)', () => {
    const shipped = loadConfig({ configPath: path.join(REPO_ROOT, 'config/storage_config.yml'), env: {}, cwd: '/srv' }).config;
    const embedded = loadConfig({ env: {}, cwd: '/srv' });
    expect(embedded.source).toBeUndefined();
    const { aws_s3: _aws, gcp_gcs: _gcp, ...cloudWithoutBuckets } = shipped.storage.backends.cloud;
    expect({ ...shipped, storage: { ...shipped.storage, backends: { ...shipped.storage.backends, cloud: cloudWithoutBuckets } } }).toEqual(embedded.config);
  });

  it('is frozen after loading', () => {
    const { config } = loadConfig({ configPath: SEED_FILE, env: {} });
    expect(Object.isFrozen(config.storage.backends.local)).toBe(true);
  });

  it('takes the documented environment overrides', async () => {
    const { config } = loadConfig({
      configPath: SEED_FILE,
      cwd: '/srv',
      env: { REDIS_URL: 'redis://127.0.0.1:6390', LOG_LEVEL: 'debug', CHUNKVAULT_REDIS_PREFIX: 'cv2', CHUNKVAULT_BASE_PATH: 'elsewhere', CHUNKVAULT_STAGING_DIR: '/stage' },
    });
    expect(config.chunkvault.redis).toMatchObject({ mode: 'standalone', url: 'redis://127.0.0.1:6390', prefix: 'cv2', nodes: [] });
    expect(config.chunkvault.log_level).toBe('debug');
    expect(config.storage.backends.local.base_path).toBe('/srv/elsewhere');
    expect(config.chunkvault.staging.dir).toBe('/stage');
    const sentinel = loadConfig({
      configPath: SEED_FILE,
      env: { CHUNKVAULT_REDIS_MODE: 'sentinel', CHUNKVAULT_REDIS_NODES: '10.0.0.1:26379, sentinel-2:26379,[::1]:26380', CHUNKVAULT_REDIS_SENTINEL_MASTER: 'cv' },
    }).config.chunkvault.redis;
    expect(sentinel).toMatchObject({ mode: 'sentinel', nodes: ['10.0.0.1:26379', 'sentinel-2:26379', '[::1]:26380'], sentinel_master: 'cv' });
  });

  it('reaches Redis standalone, through Sentinels or as a cluster, refusing settings that do not fit the mode', async () => {
    const load = async (redis: string) => {
      const configPath = await configFile(`chunkvault:\n  redis: ${redis}\n`);
      return () => loadConfig({ configPath, env: {} }).config.chunkvault.redis;
    };
    const problems = async (redis: string) => problemsOf(await load(redis));
    expect((await load('{}'))()).toMatchObject({ mode: 'standalone', nodes: [], tls: { enabled: false }, replica_ack_timeout_ms: 2000 });
    expect((await load('{}'))().min_replicas_acked).toBeUndefined();
    expect((await load('{ mode: cluster, nodes: ["127.0.0.1:7001"], min_replicas_acked: 2 }'))()).toMatchObject({ mode: 'cluster', min_replicas_acked: 2 });
    expect(await problems('{ mode: sentinel, nodes: ["127.0.0.1:26379"] }')).toEqual([expect.stringMatching(/^chunkvault\.redis\.sentinel_master: mode sentinel needs/)]);
    expect(await problems('{ mode: cluster }')).toEqual([expect.stringMatching(/^chunkvault\.redis\.nodes: mode cluster needs/)]);
    expect(await problems('{ nodes: ["127.0.0.1:7001"] }')).toEqual([expect.stringMatching(/^chunkvault\.redis\.nodes: only read in sentinel and cluster modes/)]);
    expect(await problems('{ mode: cluster, nodes: ["127.0.0.1"] }')).toEqual([expect.stringMatching(/^chunkvault\.redis\.nodes\.0: must be host:port/)]);
    expect(await problems('{ mode: ring }')).toEqual([expect.stringMatching(/^chunkvault\.redis\.mode: /)]);
    expect(await problems('{ tls: { enabled: true, cert_file: /c.pem } }')).toEqual([expect.stringMatching(/^chunkvault\.redis\.tls: cert_file and key_file go together/)]);
  });

  it('reads the file named by CHUNKVAULT_CONFIG, and an explicit path wins over it', async () => {
    const file = await configFile('storage:\n  performance:\n    max_concurrent_writes: 7\n');
    expect(loadConfig({ env: { CHUNKVAULT_CONFIG: file } }).config.storage.performance.max_concurrent_writes).toBe(7);
    expect(loadConfig({ env: { CHUNKVAULT_CONFIG: file }, configPath: SEED_FILE }).config.storage.performance.max_concurrent_writes).toBe(20);
  });

  it('lists every problem of a bad file by its path', async () => {
    const file = await configFile([
      'storage:',
      '  organization: { partition_by: weekly, checkpoint_interval_chunks: 0 }',
      '  integrity: { checksum_algorithm: crc32 }',
      '  performance: { max_concurrent_writes: "many" }',
      '  colour: blue',
      'chunkvault:',
      '  retry: { attempts: -1 }',
      '  redis: { url: "not a url" }',
    ].join('\n'));
    const problems = problemsOf(() => loadConfig({ configPath: file, env: {} }));
    expect(problems).toHaveLength(7);
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^storage\.organization\.partition_by: /),
      expect.stringMatching(/^storage\.organization\.checkpoint_interval_chunks: /),
      expect.stringMatching(/^storage\.integrity\.checksum_algorithm: /),
      expect.stringMatching(/^storage\.performance\.max_concurrent_writes: /),
      'storage: unknown key(s) "colour"',
      expect.stringMatching(/^chunkvault\.retry\.attempts: /),
      expect.stringMatching(/^chunkvault\.redis\.url: /),
    ]));
  });

  it('refuses a bad environment value by the path it overrides', () => {
    const problems = problemsOf(() => loadConfig({ configPath: SEED_FILE, env: { LOG_LEVEL: 'loud', REDIS_URL: 'nope' } }));
    expect(problems).toEqual([expect.stringMatching(/^chunkvault\.redis\.url: /), expect.stringMatching(/^chunkvault\.log_level: /)]);
  });

  it('refuses settings that would leave no backend, saying why', async () => {
    const cloud = await configFile('storage:\n  backends:\n    cloud:\n      enabled: true\n');
    expect(problemsOf(() => loadConfig({ configPath: cloud, env: {} }))).toEqual([expect.stringMatching(/^storage\.backends\.cloud\.enabled: true, but none of aws_s3, gcp_gcs, azure_blob/)]);
    const none = await configFile('use_local_storage: false\n');
    expect(problemsOf(() => loadConfig({ configPath: none, env: {} }))).toEqual([expect.stringMatching(/^use_local_storage: false leaves no backend/)]);
    const cloudOff = await configFile('use_local_storage: false\nstorage:\n  backends:\n    cloud:\n      enabled: false\n      aws_s3: { bucket: b }\n');
    expect(problemsOf(() => loadConfig({ configPath: cloudOff, env: {} }))).toEqual([expect.stringMatching(/^use_local_storage: false leaves no backend/)]);
  });

  it('accepts cloud-only and mixed setups, with the seed\'s cloud block extended by endpoint and key prefix', async () => {
    const mixed = await configFile([
      'storage:', '  backends:', '    cloud:', '      enabled: true',
      '      aws_s3: { bucket: b1, region: eu-west-1, endpoint: "http://127.0.0.1:7480", force_path_style: true, key_prefix: cv/ }',
      '      gcp_gcs: { bucket: b2, region: us-central1 }',
      '      azure_blob: { container: c1, endpoint: "http://127.0.0.1:10000/devstoreaccount1" }',
    ].join('\n'));
    const { config } = loadConfig({ configPath: mixed, env: {} });
    expect(config.storage.backends.cloud.aws_s3).toEqual({ bucket: 'b1', region: 'eu-west-1', endpoint: 'http://127.0.0.1:7480', force_path_style: true, key_prefix: 'cv/', max_size_gb: 0 });
    expect(config.storage.backends.cloud.azure_blob?.container).toBe('c1');
    const cloudOnly = await configFile('use_local_storage: false\nstorage:\n  backends:\n    cloud:\n      enabled: true\n      gcp_gcs: { bucket: b }\n');
    expect(loadConfig({ configPath: cloudOnly, env: {} }).config.use_local_storage).toBe(false);
  });

  it('stages in a configured bucket inside chunkvault\'s namespace, and refuses a bucket that is not configured or a prefix outside it', async () => {
    const bucket = await configFile('chunkvault:\n  staging:\n    backend: aws_s3\nstorage:\n  backends:\n    cloud:\n      aws_s3: { bucket: b1 }\n');
    const { config } = loadConfig({ configPath: bucket, env: {} });
    expect(config.chunkvault.staging).toMatchObject({ backend: 'aws_s3', key_prefix: '_chunkvault/staging/' });
    expect(loadConfig({ configPath: bucket, env: { CHUNKVAULT_STAGING_BACKEND: 'local' } }).config.chunkvault.staging.backend).toBe('local');
    const unconfigured = await configFile('chunkvault:\n  staging:\n    backend: gcp_gcs\n');
    expect(problemsOf(() => loadConfig({ configPath: unconfigured, env: {} }))).toEqual([
      expect.stringMatching(/^chunkvault\.staging\.backend: gcp_gcs names a bucket, but storage\.backends\.cloud\.gcp_gcs is not configured/),
    ]);
    const outside = await configFile('chunkvault:\n  staging:\n    backend: aws_s3\n    key_prefix: staging/\nstorage:\n  backends:\n    cloud:\n      aws_s3: { bucket: b1 }\n');
    expect(problemsOf(() => loadConfig({ configPath: outside, env: {} }))).toEqual([expect.stringMatching(/^chunkvault\.staging\.key_prefix: "staging\/" must be a folder whose name starts with "_chunkvault\/staging"/)]);
    // Where the checkpoint manifests are: the orphan sweep would take them for staged bytes.
    const manifests = await configFile('chunkvault:\n  staging:\n    backend: aws_s3\n    key_prefix: _chunkvault/checkpoints/\nstorage:\n  backends:\n    cloud:\n      aws_s3: { bucket: b1 }\n');
    expect(problemsOf(() => loadConfig({ configPath: manifests, env: {} }))).toEqual([expect.stringMatching(/^chunkvault\.staging\.key_prefix: "_chunkvault\/checkpoints\/" must be a folder/)]);
    const unknown = await configFile('chunkvault:\n  staging:\n    backend: dropbox\n');
    expect(problemsOf(() => loadConfig({ configPath: unknown, env: {} }))).toEqual([expect.stringMatching(/^chunkvault\.staging\.backend: /)]);
  });

  it('never takes cloud credentials from the YAML', async () => {
    const withKeys = await configFile('storage:\n  backends:\n    cloud:\n      aws_s3: { bucket: b, access_key_id: AKIA, secret_access_key: s }\n');
    expect(problemsOf(() => loadConfig({ configPath: withKeys, env: {} }))).toEqual([expect.stringMatching(/^storage\.backends\.cloud\.aws_s3: .*access_key_id/)]);
  });

  it('refuses a missing file, invalid YAML and a non-mapping with a clear message', async () => {
    expect(() => loadConfig({ configPath: '/nonexistent/c.yml', env: {} })).toThrow(/config file not found: \/nonexistent\/c.yml/);
    expect(() => loadConfig({ configPath: '/x.yml', env: { CHUNKVAULT_CONFIG: SEED_FILE } })).toThrow(/not found/);
    const broken = await configFile('storage: [unclosed\n');
    expect(() => loadConfig({ configPath: broken, env: {} })).toThrow(/is not valid YAML/);
    const list = await configFile('- a\n- b\n');
    expect(() => loadConfig({ configPath: list, env: {} })).toThrow(/must hold a YAML mapping/);
  });

  it('accepts hourly, daily, weekly and cron expressions for cleanup_schedule, and refuses anything else by its path', async () => {
    for (const schedule of ['hourly', 'daily', 'weekly', '*/10 * * * *', '0 4 * * 1-5']) {
      const file = await configFile(`storage:\n  cleanup:\n    cleanup_schedule: "${schedule}"\n`);
      expect(loadConfig({ configPath: file, env: {} }).config.storage.cleanup.cleanup_schedule).toBe(schedule);
    }
    const bad = await configFile('storage:\n  cleanup:\n    cleanup_schedule: "every tuesday"\n');
    expect(problemsOf(() => loadConfig({ configPath: bad, env: {} }))).toEqual([expect.stringMatching(/^storage\.cleanup\.cleanup_schedule: must be hourly, daily, weekly or a cron expression/)]);
    const range = await configFile('storage:\n  cleanup:\n    cleanup_schedule: "61 * * * *"\n');
    expect(problemsOf(() => loadConfig({ configPath: range, env: {} }))).toEqual([expect.stringMatching(/cleanup_schedule: .*expected range 0-59/)]);
  });

  it('takes a compression level within the codec\'s range, and refuses one outside it by its path', async () => {
    const load = async (codec: string, level: number) => loadConfig({ configPath: await configFile(`chunkvault:\n  maintenance:\n    compression_codec: ${codec}\n    compression_level: ${level}\n`), env: {} });
    expect((await load('zstd', 19)).config.chunkvault.maintenance).toMatchObject({ compression_codec: 'zstd', compression_level: 19 });
    expect((await load('brotli', 0)).config.chunkvault.maintenance.compression_level).toBe(0);
    expect((await load('gzip', 9)).config.chunkvault.maintenance.compression_level).toBe(9);
    for (const [codec, level, range] of [['zstd', 20, '1..19'], ['zstd', 0, '1..19'], ['gzip', 0, '1..9'], ['brotli', 12, '0..11']] as const) {
      const bad = await configFile(`chunkvault:\n  maintenance:\n    compression_codec: ${codec}\n    compression_level: ${level}\n`);
      expect(problemsOf(() => loadConfig({ configPath: bad, env: {} }))).toEqual([`chunkvault.maintenance.compression_level: ${level} is not a ${codec} level (${range})`]);
    }
    expect(loadConfig({ env: {}, cwd: '/srv' }).config.chunkvault.maintenance).toMatchObject({ compression_codec: 'zstd' });
  });

  it('reads an empty file as all defaults, and refuses a file of several YAML documents', async () => {
    expect(loadConfig({ configPath: await configFile('# nothing set here\n'), env: {}, cwd: '/srv' }).config).toEqual(loadConfig({ env: {}, cwd: '/srv' }).config);
    const two = await configFile('storage: {}\n---\nchunkvault: {}\n');
    expect(() => loadConfig({ configPath: two, env: {} })).toThrow(/holds 2 YAML documents; chunkvault reads one/);
  });

  it('refuses a Redis password in the file: secrets come from the environment', async () => {
    const file = await configFile('chunkvault:\n  redis:\n    url: "redis://:hunter2@127.0.0.1:6379"\n');
    const problems = problemsOf(() => loadConfig({ configPath: file, env: {} }));
    expect(problems).toEqual(['chunkvault.redis.url: must not hold a password; set REDIS_URL in the environment instead']);
    expect(problems.join()).not.toContain('hunter2');
    expect(loadConfig({ configPath: SEED_FILE, env: { REDIS_URL: 'redis://:hunter2@127.0.0.1:6379' } }).config.chunkvault.redis.url).toContain('hunter2');
  });

  it('names every configured setting this version does not act on', () => {
    const { config } = loadConfig({ configPath: SEED_FILE, env: {} });
    const notes = unimplementedSettings(config).join('\n');
    for (const setting of ['enable_write_cache', 'write_buffer_size_mb']) {
      expect(notes).toContain(setting);
    }
    expect(notes).not.toMatch(/create_checkpoints|verify_on_read|enable_auto_cleanup|retention_days|compress_old_data/); // implemented
  });
});
