/**
 * Test harness: every test gets its own Redis key prefix and its own temp directories, on
 * the real Redis (REDIS_URL, default 127.0.0.1:6379) and the real filesystem.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from 'js-yaml';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load-config.js';
import type { Config } from '../../src/config/config.schema.js';
import { openChunkvault, type Chunkvault } from '../../src/app.js';
import { createLogger } from '../../src/logging/logger.js';
import type { DistributionTask } from '../../src/domain/types.js';
import type { Backend } from '../../src/backends/backend.js';
import { BackendRegistry } from '../../src/backends/backend-registry.js';
import { BackendIoError } from '../../src/errors.js';
import { LocalBackend } from '../../src/backends/local.backend.js';
import { ReplicaMetadata } from '../../src/catalog/replica-metadata.js';
import type { Sidecar } from '../../src/catalog/sidecar.js';
import { RESERVED_KEY_PREFIX } from '../../src/storage/storage-layout.js';
import { filesUnder } from '../faults/support/object-checks.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

export interface TestEnv {
  dir: string;
  prefix: string;
  configPath: string;
  config: Config;
  basePath: string;
  stagingDir: string;
  /** Deletes every Redis key of this test and its directories. */
  cleanup(): Promise<void>;
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

/** A config file in a fresh temp dir with a unique Redis prefix; `overrides` merge into the YAML. */
export async function makeTestEnv(overrides: DeepPartial<Record<string, unknown>> = {}, redisUrl = REDIS_URL): Promise<TestEnv> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-test-'));
  const prefix = `cvtest-${randomBytes(5).toString('hex')}`;
  const base = {
    storage: { backends: { local: { base_path: path.join(dir, 'data') } } },
    chunkvault: {
      redis: { url: redisUrl, prefix },
      staging: { dir: path.join(dir, 'staging') },
      retry: { attempts: 3, backoff_ms: 50 },
      // A file per replica, as most tests look for them; the packed ones turn packing on.
      packing: { max_chunk_bytes: 0 },
      worker: { lock_duration_ms: 2000, stalled_interval_ms: 1000, shutdown_timeout_ms: 10_000 },
      log_level: 'warn',
    },
  };
  const merged = deepMerge(base, overrides);
  const configPath = path.join(dir, 'config.yml');
  await writeFile(configPath, dump(merged));
  const { config } = loadConfig({ configPath, env: {} });
  return {
    dir,
    prefix,
    configPath,
    config,
    basePath: config.storage.backends.local.base_path,
    stagingDir: config.chunkvault.staging.dir,
    async cleanup() {
      // `{prefix` and what follows: the demo keeps its keys under a prefix of its own that starts so.
      await deleteKeys(config.chunkvault.redis.url, `{${prefix}*`);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Opens chunkvault on a test env; logs are off unless TEST_LOG_LEVEL asks for them. */
export function openVault(env: TestEnv): Promise<Chunkvault> {
  const level = (process.env.TEST_LOG_LEVEL ?? 'silent') as Config['chunkvault']['log_level'];
  return openChunkvault(env.config, { logger: createLogger(level), announceUnimplemented: false });
}

/** Deletes keys matching `pattern`; does nothing when no Redis answers at `url` (tests of a missing Redis). */
export async function deleteKeys(url: string, pattern: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
  } catch {
    redis.disconnect();
    return;
  }
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** The seed's mock distribution tasks: n chunks of `test data i` x 500, `replicas` replicas on aws nodes. */
export function seedTasks(n = 10, replicas = 2, prefix = 'chunk'): DistributionTask[] {
  return Array.from({ length: n }, (_, i) => ({
    taskId: `dist_task_${i}`,
    chunkId: `${prefix}_${i}`,
    chunkData: Buffer.from(`test data ${i}`.repeat(500)),
    status: 'completed',
    replicas: Array.from({ length: replicas }, (_, j) => ({
      replicaId: `${prefix}_${i}_replica_${j}`,
      chunkId: `${prefix}_${i}`,
      targetNode: `aws-node-${j + 1}`,
      cloudProvider: 'aws',
      status: 'completed',
    })),
  }));
}

/** Polls `probe` until it returns a truthy value or `timeoutMs` passes (then throws `what`). */
export async function waitFor<T>(what: string, probe: () => Promise<T> | T, timeoutMs = 20_000, intervalMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// `--import tsx` keeps the CLI one process, so signals reach it (the tsx CLI wraps it in a child).
const CLI = ['--import', 'tsx', path.join(REPO_ROOT, 'src/cli/main.ts')];

/** Starts the chunkvault CLI from source as its own process. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => { stdout: string; stderr: string }; done: Promise<CliRun> } {
  const child = spawn(process.execPath, [...CLI, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliRun>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return Object.assign(child, { output: () => ({ stdout, stderr }), done });
}

/** Runs the CLI to its end. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return spawnCli(args, env).done;
}

/**
 * Starts `chunkvault worker` on a test env and resolves once its pool is taking jobs.
 * `processEnv` adds environment variables (e.g. cloud credentials, which come only from there).
 */
export async function startWorkerProcess(env: TestEnv, processEnv: NodeJS.ProcessEnv = {}): Promise<ReturnType<typeof spawnCli>> {
  const child = spawnCli(['worker', '--config', env.configPath], { LOG_LEVEL: 'info', ...processEnv });
  await waitFor('worker process to start', () => {
    if (child.exitCode !== null) throw new Error(`worker exited early (${child.exitCode}): ${child.output().stderr}`);
    return child.output().stderr.includes('worker pool started');
  }, 30_000);
  return child;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...target };
  for (const [key, value] of Object.entries(source)) {
    const existing = out[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && existing && typeof existing === 'object'
        ? deepMerge(existing as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

/**
 * The configured backends, except that `op` on keys matching `match` fails the way a flaky
 * disk or a crash would cut it short. Everything else goes to the real backend.
 */
export function failingBackends(config: Config, op: 'put' | 'delete' | 'head', match: RegExp, reason = 'simulated crash'): BackendRegistry {
  class Failing extends BackendRegistry {
    override byName(name: string): Backend | undefined {
      const real = super.byName(name);
      if (!real) return undefined;
      const failing = async (key: string, ...rest: unknown[]) => {
        if (match.test(key)) throw new BackendIoError(`${op} ${key}: ${reason}`);
        return (real[op] as (...a: unknown[]) => Promise<unknown>).call(real, key, ...rest);
      };
      return new Proxy(real, {
        get: (target, prop) => {
          if (prop === op) return failing;
          const value = target[prop as keyof Backend];
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    }
  }
  return new Failing(config);
}

/**
 * The current metadata of every replica in a local backend's journal (what `reindex` would
 * use), by `chunkId/replicaId`, read through a backend object of its own.
 */
export async function journalMetadata(basePath: string): Promise<Map<string, Sidecar>> {
  const out = new Map<string, Sidecar>();
  const metadata = new ReplicaMetadata({ staleAfterMs: 60 * 60_000 });
  try {
    for await (const entry of metadata.of(new LocalBackend({ basePath, staleTempAfterMs: 60 * 60_000 })).current([])) {
      if ('problem' in entry) throw new Error(`journal problem: ${entry.problem}`);
      out.set(`${entry.sidecar.chunkId}/${entry.sidecar.replicaId}`, entry.sidecar);
    }
  } finally {
    await metadata.close();
  }
  return out;
}

/** What is staged in a staging directory: its entries, less chunkvault's own `_chunkvault/` (the storage marker). */
export async function stagedEntries(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => `${name}/` !== RESERVED_KEY_PREFIX);
}

/** Every staged file under a staging directory (relative paths), less chunkvault's own `_chunkvault/`; none when it does not exist. */
export async function stagedFiles(dir: string): Promise<string[]> {
  return (await filesUnder(dir)).filter((file) => !`${file.split(path.sep).join('/')}`.startsWith(RESERVED_KEY_PREFIX));
}
