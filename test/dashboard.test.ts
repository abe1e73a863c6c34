/**
 * The dashboard (`chunkvault dashboard` / `serve`): Bull Board for every queue under
 * /admin/queues and the statistics page at /admin, on a real vault with workers, a real
 * Redis reached with a password in its URL, over real HTTP, in a real browser (Debian's
 * chromium). Also what keeps it safe: credentials, read-only mode refused by the API itself,
 * cross-site changes refused, no Redis password on any page or API response.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { appRoutes } from '@bull-board/api/dist/routes.js';
import { openChunkvault, type Chunkvault } from '../src/app.js';
import type { Config } from '../src/config/config.schema.js';
import { loadConfig } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';
import { buildHttpServer, type HttpAuth } from '../src/http/server.js';
import { QUEUE_NAMES, replicaJobId } from '../src/jobs/job-table.js';
import { createLogger } from '../src/logging/logger.js';
import { launchChromium } from './support/browser.js';
import { REDIS_URL, makeTestEnv, runCli, spawnCli, waitFor, type TestEnv } from './support/harness.js';

const QUEUES = Object.values(QUEUE_NAMES);
/** The replica that fails for good: bigger than the local backend's whole quota. */
const FAILED_JOB_ID = replicaJobId('big', 'big_r0', 0);
const FULL_MESSAGE = 'backend local is full';
/** A backend location that would be markup if the page did not escape it. */
const HOSTILE_DIR = 'data<img src=x onerror=alert(1)>';

let env: TestEnv | undefined;
let vault: Chunkvault | undefined;
let browser: Browser | undefined;
const servers: FastifyInstance[] = [];

afterEach(async () => {
  await browser?.close();
  browser = undefined;
  for (const server of servers.splice(0)) await server.close();
  await vault?.close();
  vault = undefined;
  await env?.cleanup();
  env = undefined;
});

interface Scenario {
  vault: Chunkvault;
  /** The password in the Redis URL the vault connects with. */
  redisPassword: string;
}

/**
 * A vault whose Redis URL holds a password, with one chunk stored (and checkpointed, and
 * verified by a maintenance pass) and one replica failed for good: its 20 kB do not fit in
 * the local backend's 10.7 kB quota.
 */
async function startScenario(options: { basePathDir?: string; keepWorkers?: boolean } = {}): Promise<Scenario> {
  env = await makeTestEnv({
    storage: { backends: { local: { max_size_gb: 0.00001 } }, organization: { checkpoint_interval_chunks: 1 } },
    chunkvault: { retry: { attempts: 1, backoff_ms: 10 } },
  });
  // The local Redis has no password; Redis 6+ accepts AUTH with a user name (`default`) and any
  // password then, so the vault really runs on a URL that carries one.
  const url = new URL(REDIS_URL);
  if (!url.password) {
    url.username ||= 'default';
    url.password = `redis-pw-${randomBytes(8).toString('hex')}`;
  }
  const overrides: NodeJS.ProcessEnv = { REDIS_URL: url.toString() };
  if (options.basePathDir) overrides.CHUNKVAULT_BASE_PATH = path.join(env.dir, options.basePathDir);
  const { config } = loadConfig({ configPath: env.configPath, env: overrides });
  vault = await openChunkvault(config, { logger: createLogger((process.env.TEST_LOG_LEVEL ?? 'silent') as Config['chunkvault']['log_level']), announceUnimplemented: false });
  const pool = await vault.startWorkers();
  const handle = await vault.producer.store([
    { taskId: 't0', chunkId: 'small', chunkData: Buffer.alloc(3000, 1), status: 'completed', replicas: [{ replicaId: 'small_r0', chunkId: 'small', targetNode: 'aws-node-1', cloudProvider: 'aws', status: 'completed' }] },
    { taskId: 't1', chunkId: 'big', chunkData: Buffer.alloc(20_000, 2), status: 'completed', replicas: [{ replicaId: 'big_r0', chunkId: 'big', targetNode: 'gcp-node-1', cloudProvider: 'gcp', status: 'completed' }] },
  ]);
  const results = await handle.results({ timeoutMs: 30_000 });
  expect(results.map((r) => [r.replicaId, r.status])).toEqual([['small_r0', 'stored'], ['big_r0', 'failed']]);
  const v = vault;
  await waitFor('the stored chunk to be checkpointed', async () => (await v.checkpoints.count()) === 1);
  await waitFor('chunk completion to settle', async () => {
    const { chunks } = (await v.getStatistics()).queues;
    return chunks !== undefined && chunks.active + chunks.waiting + chunks.waiting_children === 0;
  });
  const pass = await vault.maintenance.runPass();
  expect(pass.error).toBeUndefined();
  // Without workers a retried job stays visible as waiting instead of failing again at once.
  if (!options.keepWorkers) await pool.close(10_000);
  return { vault, redisPassword: decodeURIComponent(url.password) };
}

async function listen(app: FastifyInstance): Promise<string> {
  servers.push(app);
  return app.listen({ host: '127.0.0.1', port: 0 });
}

function basicAuth(): Extract<HttpAuth, { kind: 'basic' }> {
  return { kind: 'basic', user: 'ops', password: `http-pw-${randomBytes(8).toString('hex')}` };
}

/** Collects the body of every response the context receives. */
function recordBodies(context: BrowserContext): () => Promise<string[]> {
  const bodies: Array<Promise<string>> = [];
  context.on('response', (response) => bodies.push(response.text().catch(() => '')));
  return () => Promise.all(bodies);
}

describe('dashboard in a real browser', () => {
  it('shows every queue, a failed job with its error, the statistics; a wrong password gets 401 and no page', async () => {
    browser = await launchChromium();
    const { vault: v, redisPassword } = await startScenario({ basePathDir: HOSTILE_DIR });
    const auth = basicAuth();
    const base = await listen(await buildHttpServer(v, { auth }));
    const readOnlyBase = await listen(await buildHttpServer(v, { auth, readOnly: true }));

    const context = await browser.newContext({ httpCredentials: { username: auth.user, password: auth.password } });
    // Nothing leaves the machine (Bull Board's page links a web font).
    await context.route((url) => url.hostname !== '127.0.0.1', (route) => route.abort());
    const bodies = recordBodies(context);
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });

    // Bull Board lists all three queues.
    const board = await page.goto(`${base}/admin/queues`);
    expect(board?.status()).toBe(200);
    for (const name of QUEUES) await page.getByRole('link', { name, exact: true }).first().waitFor();

    // The statistics page.
    const stats = await v.getStatistics();
    const [checkpoint] = await v.checkpoints.list();
    expect((await page.goto(`${base}/admin`))?.status()).toBe(200);
    const stat = (name: string) => page.locator(`[data-stat="${name}"]`).innerText();
    expect(await stat('total_chunks')).toBe('1');
    expect(await stat('total_replicas')).toBe('1');
    expect(await stat('failed_stores')).toBe('1');
    expect(await stat('chunks_failed')).toBe('1');
    expect(await stat('degraded_chunks')).toBe('0');
    expect(await stat('corrupt_replicas')).toBe('0');
    expect(await stat('repairs_done')).toBe('0');
    expect(await page.locator('[data-stat="total_size_bytes"]').getAttribute('data-value')).toBe('3000');
    expect(await page.locator('#by-cloud tr[data-key="aws"]').innerText()).toMatch(/aws\s+1\s+2\.9 KiB/);
    expect(await page.locator('#by-cloud tr[data-key="gcp"]').count()).toBe(0);
    expect(await page.locator('#by-node tr[data-key="aws-node-1"] [data-value]').getAttribute('data-value')).toBe('3000');
    expect(await stat('last_checkpoint')).toBe(checkpoint!.id);
    expect(await stat('last_checkpoint_chunks')).toBe('1');
    expect(await stat('last_maintenance_result')).toBe('ok');
    expect(await stat('last_scrub')).toMatch(/replicas checked/);
    expect(stats.oldest_verification).not.toBeNull();
    expect(await page.locator('[data-stat="oldest_verification"] time').getAttribute('datetime')).toBe(stats.oldest_verification);
    expect(await page.locator('#queues-link').getAttribute('href')).toBe('/admin/queues');
    // The hostile backend location is shown as text, never parsed as markup.
    expect(await page.locator('#backends tr[data-key="local"]').innerText()).toContain(HOSTILE_DIR);
    expect(await page.locator('#backends img, body img').count()).toBe(0);
    expect(await page.locator('[data-stat="read_only"]').count()).toBe(0);

    // From the failed count to Bull Board's failed list, then into the failed job: its error is shown.
    await page.locator('#queues tr[data-key="replicas"] a.bad').click();
    await page.waitForURL(/\/admin\/queues\/queue\/replicas\?status=failed/);
    await page.getByRole('link', { name: FAILED_JOB_ID, exact: true }).click();
    await page.waitForURL((url) => url.pathname === `/admin/queues/queue/replicas/${encodeURIComponent(FAILED_JOB_ID)}`);
    await page.getByText(FULL_MESSAGE).first().waitFor();
    expect(await page.locator('body').innerText()).toContain(`${FULL_MESSAGE}: 20000 more bytes for replica big_r0 of chunk big`);

    // Read-write board: the failed list offers "Retry all"; the read-only board does not.
    await page.goto(`${base}/admin/queues/queue/replicas?status=failed`);
    await page.getByRole('link', { name: FAILED_JOB_ID, exact: true }).waitFor();
    expect(await page.getByRole('button', { name: 'Retry all' }).count()).toBe(1);
    await page.goto(`${readOnlyBase}/admin/queues/queue/replicas?status=failed`);
    await page.getByRole('link', { name: FAILED_JOB_ID, exact: true }).waitFor();
    expect(await page.getByRole('button', { name: 'Retry all' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Clean all' }).count()).toBe(0);
    await page.goto(`${readOnlyBase}/admin`);
    expect(await stat('read_only')).toBe('read-only');

    // Wrong password, or none: 401 and nothing of the dashboard.
    for (const credentials of [{ username: auth.user, password: `${auth.password}x` }, undefined]) {
      const intruder = await browser.newContext(credentials ? { httpCredentials: credentials } : {});
      const intruderBodies = recordBodies(intruder);
      const statuses: Array<[string, number]> = [];
      intruder.on('response', (response) => statuses.push([new URL(response.url()).pathname, response.status()]));
      const intruderPage = await intruder.newPage();
      for (const target of ['/admin/queues', '/admin', '/admin/queues/api/queues']) {
        // With wrong credentials Chromium shows the 401; with none to offer (headless, no prompt)
        // it gives the navigation up with ERR_INVALID_AUTH_CREDENTIALS after the server's 401.
        const outcome = await intruderPage.goto(`${base}${target}`).catch((error: Error) => error);
        if (outcome instanceof Error) {
          expect(outcome.message).toContain('ERR_INVALID_AUTH_CREDENTIALS');
          continue;
        }
        expect(outcome?.status(), target).toBe(401);
        const content = await intruderPage.content();
        expect(content).not.toContain('chunkvault queues');
        expect(content).not.toContain('Chunks');
        expect(content).not.toContain('replicas');
      }
      // Every answer the server gave this context was a 401, for each page asked.
      expect(new Set(statuses.map(([, status]) => status))).toEqual(new Set([401]));
      expect(new Set(statuses.map(([pathname]) => pathname))).toEqual(new Set(['/admin/queues', '/admin', '/admin/queues/api/queues']));
      for (const body of await intruderBodies()) expect(body).not.toMatch(/replicas|chunkvault queues|__UI_CONFIG__/);
      await intruder.close();
    }

    // Nothing the browser received carries a password, and it did receive the interesting parts.
    const received = await bodies();
    expect(received.some((body) => body.includes(FULL_MESSAGE))).toBe(true);
    expect(received.some((body) => body.includes('"readOnlyMode":true'))).toBe(true);
    for (const body of received) {
      expect(body).not.toContain(redisPassword);
      expect(body).not.toContain(auth.password);
    }
    expect(dialogs).toEqual([]);
    await context.close();
  }, 120_000);
});

describe('dashboard safety over HTTP', () => {
  const retryUrl = `/admin/queues/api/queues/replicas/${encodeURIComponent(FAILED_JOB_ID)}/retry`;

  it('read-only: Bull Board refuses retry, clean, promote, pause and add, and the job stays failed', async () => {
    const { vault: v } = await startScenario();
    const app = await buildHttpServer(v, { readOnly: true, auth: undefined });
    servers.push(app);
    const queue = v.queue(QUEUE_NAMES.replicas);
    const before = await queue.getJobCounts();
    const job = encodeURIComponent(FAILED_JOB_ID);
    const writes: Array<[method: 'PUT' | 'POST' | 'PATCH', url: string, body?: object]> = [
      ['PUT', retryUrl],
      ['PUT', '/admin/queues/api/queues/replicas/retry/failed'],
      ['PUT', `/admin/queues/api/queues/replicas/${job}/clean`],
      ['PUT', '/admin/queues/api/queues/replicas/clean/failed'],
      ['PUT', `/admin/queues/api/queues/replicas/${job}/promote`],
      ['PUT', '/admin/queues/api/queues/maintenance/promote'],
      ['PUT', '/admin/queues/api/queues/replicas/pause'],
      ['PUT', '/admin/queues/api/queues/pause'],
      ['PUT', '/admin/queues/api/queues/replicas/empty'],
      ['PUT', '/admin/queues/api/queues/replicas/obliterate', {}],
      ['POST', '/admin/queues/api/queues/replicas/add', { name: 'replica.write', data: {} }],
      ['PATCH', `/admin/queues/api/queues/replicas/${job}/update-data`, { jobData: {} }],
    ];
    for (const [method, url, body] of writes) {
      const response = await app.inject({ method, url, ...(body ? { payload: body } : {}) });
      expect(response.statusCode, `${method} ${url}`).toBe(405);
    }
    expect(await (await queue.getJob(FAILED_JOB_ID))!.getState()).toBe('failed');
    expect(await queue.getJobCounts()).toEqual(before);
    expect(await queue.isPaused()).toBe(false);

    // Reads still work, and Bull Board itself knows every queue is read-only (it hides the buttons).
    const listing = await app.inject({ url: '/admin/queues/api/queues?activeQueue=replicas&status=failed' });
    expect(listing.statusCode).toBe(200);
    const { queues } = listing.json() as { queues: Array<{ name: string; readOnlyMode: boolean; jobs: Array<{ id: string; failedReason: string }> }> };
    expect(queues.map((q) => [q.name, q.readOnlyMode]).sort()).toEqual(QUEUES.map((name) => [name, true]).sort());
    expect(queues.find((q) => q.name === 'replicas')!.jobs.map((j) => j.id)).toEqual([FAILED_JOB_ID]);
  });

  it('read-write: a retry from the dashboard works, but not when another site asks for it', async () => {
    const { vault: v } = await startScenario();
    const app = await buildHttpServer(v, { auth: undefined });
    servers.push(app);
    const queue = v.queue(QUEUE_NAMES.replicas);
    const host = '127.0.0.1:8080';
    for (const headers of [{ host, origin: 'https://evil.example' }, { host, 'sec-fetch-site': 'cross-site' }, { host, origin: 'null' }]) {
      const refused = await app.inject({ method: 'PUT', url: retryUrl, headers });
      expect(refused.statusCode, JSON.stringify(headers)).toBe(403);
    }
    const add = await app.inject({ method: 'POST', url: '/admin/queues/api/queues/replicas/add', headers: { host, origin: 'https://evil.example' }, payload: { name: 'replica.write', data: {} } });
    expect(add.statusCode).toBe(403);
    expect(await (await queue.getJob(FAILED_JOB_ID))!.getState()).toBe('failed');

    const retried = await app.inject({ method: 'PUT', url: retryUrl, headers: { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' } });
    expect(retried.statusCode).toBeLessThan(300);
    expect(await (await queue.getJob(FAILED_JOB_ID))!.getState()).toBe('waiting');
  });

  it('no page and no Bull Board API response carries the Redis password', async () => {
    const { vault: v, redisPassword } = await startScenario();
    const app = await buildHttpServer(v, { auth: undefined });
    servers.push(app);
    const urls = ['/admin', '/admin/queues', '/admin/queues/queue/replicas', '/admin/queues/api/queues?activeQueue=replicas&status=failed'];
    for (const route of appRoutes.api) {
      if (route.method !== 'get') continue;
      for (const pattern of [route.route].flat()) {
        for (const queueName of pattern.includes(':queueName') ? QUEUES : ['']) {
          urls.push(`/admin/queues${pattern.replace(':queueName', queueName).replace(':jobId', encodeURIComponent(FAILED_JOB_ID))}`);
        }
      }
    }
    const answered: Record<string, number> = {};
    for (const url of urls) {
      const response = await app.inject({ url });
      answered[url] = response.statusCode;
      expect(response.body, url).not.toContain(redisPassword);
      expect(response.body, url).not.toMatch(/rediss?:\/\//);
    }
    // The routes that could show a connection did answer (the check above is not vacuous).
    for (const url of ['/admin', '/admin/queues', '/admin/queues/api/redis/stats', '/admin/queues/api/queues/replicas/workers', `/admin/queues/api/queues/replicas/${encodeURIComponent(FAILED_JOB_ID)}`]) {
      expect(answered[url], url).toBe(200);
    }
    // What Bull Board shows of Redis: server facts, no address or credentials.
    const redisStats = (await app.inject({ url: '/admin/queues/api/redis/stats' })).json() as Record<string, unknown>;
    expect(Object.keys(redisStats).sort()).toEqual(['backend', 'clients', 'memory', 'mode', 'os', 'port', 'uptime', 'version']);
  });

  it('buildHttpServer refuses a non-loopback address without credentials, naming the variables to set', async () => {
    env = await makeTestEnv();
    const { config } = loadConfig({ configPath: env.configPath, env: {} });
    vault = await openChunkvault(config, { logger: createLogger('silent'), announceUnimplemented: false });
    const refusal = buildHttpServer(vault, { host: '0.0.0.0', auth: undefined });
    await expect(refusal).rejects.toBeInstanceOf(ConfigError);
    await expect(refusal).rejects.toThrow(/refusing to serve on 0\.0\.0\.0 without credentials[\s\S]*CHUNKVAULT_HTTP_TOKEN[\s\S]*CHUNKVAULT_HTTP_USER[\s\S]*CHUNKVAULT_HTTP_PASSWORD/);
    // With credentials the same address is accepted (built, not listened on).
    servers.push(await buildHttpServer(vault, { host: '0.0.0.0', auth: basicAuth() }));
  });

  it('without credentials answers only requests addressed to loopback (no DNS rebinding)', async () => {
    env = await makeTestEnv();
    const { config } = loadConfig({ configPath: env.configPath, env: {} });
    vault = await openChunkvault(config, { logger: createLogger('silent'), announceUnimplemented: false });
    const app = await buildHttpServer(vault, { auth: undefined });
    servers.push(app);
    for (const host of ['127.0.0.1:8080', 'localhost:8080', '[::1]:8080', '127.0.0.1']) {
      expect((await app.inject({ url: '/admin', headers: { host } })).statusCode, host).toBe(200);
    }
    for (const host of ['evil.example:8080', 'evil.example', '10.0.0.5:8080', '127.0.0.1.evil.example']) {
      const refused = await app.inject({ url: '/admin/queues/api/queues', headers: { host } });
      expect(refused.statusCode, host).toBe(421);
      expect(refused.json()).toMatchObject({ error: 'misdirected_request' });
    }
    // With credentials any Host is answered (a proxy or a real DNS name in front).
    const auth = basicAuth();
    const withAuth = await buildHttpServer(vault, { auth });
    servers.push(withAuth);
    const { user, password } = auth;
    const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    expect((await withAuth.inject({ url: '/admin', headers: { host: 'chunkvault.internal:8080', authorization } })).statusCode).toBe(200);
  });

  it('`chunkvault serve --host 0.0.0.0` without credentials exits 2 with that message', async () => {
    env = await makeTestEnv();
    const run = await runCli(['serve', '--host', '0.0.0.0', '--port', '0', '--config', env.configPath]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/refusing to serve on 0\.0\.0\.0 without credentials/);
    expect(run.stderr).toMatch(/CHUNKVAULT_HTTP_USER and CHUNKVAULT_HTTP_PASSWORD/);
    expect(run.stdout).not.toContain('chunkvault serving');
  });

  it('`chunkvault dashboard` serves /admin and Bull Board behind the credentials from the environment', async () => {
    env = await makeTestEnv();
    const password = `cli-pw-${randomBytes(6).toString('hex')}`;
    const child = spawnCli(['dashboard', '--port', '0', '--config', env.configPath], { CHUNKVAULT_HTTP_USER: 'ops', CHUNKVAULT_HTTP_PASSWORD: password });
    try {
      const line = await waitFor('the dashboard to listen', () => {
        if (child.exitCode !== null) throw new Error(`dashboard exited early (${child.exitCode}): ${child.output().stderr}`);
        return /chunkvault serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.output().stdout);
      }, 30_000);
      const base = line[1]!;
      const authorization = `Basic ${Buffer.from(`ops:${password}`).toString('base64')}`;
      const page = await fetch(`${base}/admin`, { headers: { authorization } });
      expect(page.status).toBe(200);
      expect(page.headers.get('x-frame-options')).toBe('DENY');
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      const markup = await page.text();
      expect(markup).toContain('href="/admin/queues"');
      expect(markup).toContain('<meta http-equiv="refresh" content="30">');
      expect(await (await fetch(`${base}/admin?refresh=0`, { headers: { authorization } })).text()).not.toContain('http-equiv="refresh"');
      const board = await fetch(`${base}/admin/queues/api/queues`, { headers: { authorization } });
      expect(((await board.json()) as { queues: Array<{ name: string }> }).queues.map((q) => q.name).sort()).toEqual([...QUEUES].sort());
      expect((await fetch(`${base}/admin`)).status).toBe(401);
      expect((await fetch(`${base}/admin`, { headers: { authorization: `Basic ${Buffer.from('ops:wrong').toString('base64')}` } })).status).toBe(401);
    } finally {
      child.kill('SIGTERM');
    }
    expect((await child.done).code).toBe(0);
  });
});
