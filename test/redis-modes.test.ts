/**
 * chunkvault on each way of reaching Redis: through Sentinels, on a Redis Cluster (both with a
 * password from the environment) and over TLS. Every part uses the configured endpoint: the
 * producer and the catalog in this process, a worker process and its metrics, `serve` (reads,
 * metrics), the CLI and the demo. Real topologies on loopback (test/support/redis-topologies.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import type { Chunkvault } from '../src/app.js';
import { freeLoopbackPort } from '../src/redis/private-redis.js';
import { mastersOf } from '../src/redis/redis-endpoint.js';
import { makeTestEnv, openVault, runCli, seedTasks, spawnCli, startWorkerProcess, waitFor, type TestEnv } from './support/harness.js';
import { startClusterTopology, startSentinelTopology, startTlsRedis } from './support/redis-topologies.js';

const PASSWORD = 'cv-test-secret';

/** Keys matching `pattern` on each master of the cluster, by `host:port`. */
async function keyCountsByMaster(nodes: readonly string[], pattern: string): Promise<Record<string, number>> {
  const cluster = new Cluster(nodes.map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) })), { redisOptions: { password: PASSWORD } });
  try {
    const counts: Record<string, number> = {};
    for (const master of await mastersOf(cluster)) {
      let count = 0;
      let cursor = '0';
      do {
        const [next, keys] = await master.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        count += keys.length;
      } while (cursor !== '0');
      counts[`${master.options.host}:${master.options.port}`] = count;
    }
    return counts;
  } finally {
    cluster.disconnect();
  }
}
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The in-process parts read credentials from the environment too, as a deployment would. */
function withEnvironment(variables: Record<string, string>): void {
  const previous = Object.fromEntries(Object.keys(variables).map((name) => [name, process.env[name]]));
  Object.assign(process.env, variables);
  cleanups.push(() => {
    for (const [name, value] of Object.entries(previous)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
}

/** Stores 10 chunks through `vault` with a worker process on `env`, and checks every part reads them back. */
async function everyPartWorks(env: TestEnv, vault: Chunkvault, processEnv: Record<string, string>): Promise<void> {
  const metricsPort = await freeLoopbackPort();
  const worker = await startWorkerProcess(env, { ...processEnv, LOG_LEVEL: 'info' });
  cleanups.push(async () => {
    if (worker.exitCode === null) worker.kill('SIGTERM');
    await worker.done;
  });
  const tasks = seedTasks(10, 2, 'modes');
  const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 30_000 });
  expect(results.filter((r) => r.status !== 'stored')).toEqual([]);

  const stats = await runCli(['stats', '--json', '--config', env.configPath], processEnv);
  expect(stats.code, stats.stderr).toBe(0);
  expect(JSON.parse(stats.stdout)).toMatchObject({ successful_stores: 20 });

  const serve = spawnCli(['serve', '--port', String(metricsPort), '--config', env.configPath], { ...processEnv, LOG_LEVEL: 'warn' });
  cleanups.push(async () => {
    if (serve.exitCode === null) serve.kill('SIGTERM');
    await serve.done;
  });
  await waitFor('serve to listen', () => serve.output().stdout.includes('chunkvault serving on'), 30_000);
  const read = await fetch(`http://127.0.0.1:${metricsPort}/v1/chunks/${tasks[3]!.chunkId}`);
  expect(read.status).toBe(200);
  expect(Buffer.from(await read.arrayBuffer()).equals(tasks[3]!.chunkData as Buffer)).toBe(true);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/^chunkvault_replicas_stored\{backend="local"\} 20$/m);
  expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);
  // The per-minute series the worker process counted into, read back in one pipeline by serve.
  const { series } = (await (await fetch(`http://127.0.0.1:${metricsPort}/v1/stats/series`)).json()) as { series: { replicas_stored: number[] } };
  expect(series.replicas_stored.reduce((sum, n) => sum + n, 0)).toBe(20);

  const demo = await runCli(['demo', '--chunks', '20', '--size', '4096', '--json', '--config', env.configPath], processEnv);
  expect(demo.code, demo.stderr).toBe(0);
  expect(JSON.parse(demo.stdout)).toMatchObject({ replicas_stored: 40, replicas_failed: 0 });
}

describe('chunkvault.redis.mode: sentinel', () => {
  let topology: Awaited<ReturnType<typeof startSentinelTopology>>;
  beforeAll(async () => {
    topology = await startSentinelTopology({ password: PASSWORD });
  });
  afterAll(async () => topology.stop());

  it('runs every part through the Sentinels, with the password from REDIS_PASSWORD', async () => {
    const env = await makeTestEnv({ chunkvault: { redis: topology.config } });
    cleanups.push(() => env.cleanup());
    withEnvironment({ REDIS_PASSWORD: PASSWORD });
    const vault = await openVault(env);
    cleanups.push(() => vault.close());
    await everyPartWorks(env, vault, { REDIS_PASSWORD: PASSWORD });
  });

  it('says what is wrong when the password is missing or no Sentinel answers', async () => {
    const env = await makeTestEnv({ chunkvault: { redis: topology.config } });
    cleanups.push(() => env.cleanup());
    const noPassword = await runCli(['stats', '--json', '--config', env.configPath], { REDIS_PASSWORD: '' });
    expect(noPassword.code).not.toBe(0);
    expect(noPassword.stderr).toMatch(/no Redis answers at master "cvmaster" of the Sentinels 127\.0\.0\.1:\d+/);
    expect(noPassword.stderr).toMatch(/NOAUTH|Authentication required/i);
    const port = await freeLoopbackPort();
    const nobody = await runCli(['stats', '--json', '--config', env.configPath], { REDIS_PASSWORD: PASSWORD, CHUNKVAULT_REDIS_NODES: `127.0.0.1:${port}` });
    expect(nobody.code).not.toBe(0);
    expect(nobody.stderr).toContain(`no Redis answers at master "cvmaster" of the Sentinels 127.0.0.1:${port}`);
    expect(nobody.stderr).toContain('Check chunkvault.redis.nodes (the Sentinels)');
  });
});

describe('chunkvault.redis.mode: cluster', () => {
  it('runs every part on a Redis Cluster, all keys in one slot, with the password from REDIS_PASSWORD', async () => {
    const topology = await startClusterTopology({ password: PASSWORD });
    cleanups.push(() => topology.stop());
    // One seed node is enough: the client learns the others from it.
    const env = await makeTestEnv({ chunkvault: { redis: { ...topology.config, nodes: topology.config.nodes.slice(0, 1) } } });
    cleanups.push(() => env.cleanup());
    withEnvironment({ REDIS_PASSWORD: PASSWORD });
    const vault = await openVault(env);
    cleanups.push(() => vault.close());
    await everyPartWorks(env, vault, { REDIS_PASSWORD: PASSWORD });
    // Everything chunkvault wrote is on the master of its hash tag's slot, nowhere else.
    const owner = await topology.masterOfKey(`{${env.prefix}}`);
    const keysByMaster = await keyCountsByMaster(topology.config.nodes, `{${env.prefix}}*`);
    expect(Object.entries(keysByMaster).filter(([, count]) => count > 0).map(([node]) => node)).toEqual([`${owner.host}:${owner.port}`]);
  });
});

describe('TLS', () => {
  it('reaches a Redis over TLS (rediss://, the CA from chunkvault.redis.tls.ca_file)', async () => {
    const tls = await startTlsRedis();
    cleanups.push(() => tls.stop());
    const env = await makeTestEnv({ chunkvault: { redis: { url: tls.url, tls: { ca_file: tls.caFile } } } }, tls.url);
    cleanups.push(() => env.cleanup());
    const vault = await openVault(env);
    cleanups.push(() => vault.close());
    await vault.startWorkers();
    const results = await (await vault.producer.store(seedTasks(5, 2, 'tls'))).results({ timeoutMs: 30_000 });
    expect(results.filter((r) => r.status !== 'stored')).toEqual([]);
    const stats = await runCli(['stats', '--json', '--config', env.configPath]);
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({ successful_stores: 10 });
    // Without the CA the server's certificate is not trusted: refused, saying why.
    const untrusted = await makeTestEnv({ chunkvault: { redis: { url: tls.url } } }, tls.url);
    cleanups.push(() => untrusted.cleanup());
    const refused = await runCli(['stats', '--json', '--config', untrusted.configPath]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/no Redis answers at rediss:\/\/127\.0\.0\.1:\d+.*certificate/);
  });
});
