/**
 * The charts of /admin after a real workload. A worker process writes the replicas and
 * repairs the corrupt one, this process produces the chunks and finds the corruption, and a
 * server on another vault, which did none of it, shows every figure: in its API and in a real
 * browser (Debian's chromium) that may reach nothing but the server.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask } from '../src/domain/types.js';
import { buildHttpServer } from '../src/http/server.js';
import { launchChromium } from './support/browser.js';
import { makeTestEnv, openVault, startWorkerProcess, waitFor, type TestEnv } from './support/harness.js';

const CHUNK_BYTES = 4000;

let env: TestEnv | undefined;
let browser: Browser | undefined;
const vaults: Chunkvault[] = [];
const servers: FastifyInstance[] = [];
const workers: Array<Awaited<ReturnType<typeof startWorkerProcess>>> = [];

afterEach(async () => {
  await browser?.close();
  browser = undefined;
  for (const worker of workers.splice(0)) {
    if (worker.exitCode === null) worker.kill('SIGTERM');
    await worker.done;
  }
  for (const server of servers.splice(0)) await server.close();
  for (const vault of vaults.splice(0)) await vault.close();
  await env?.cleanup();
  env = undefined;
});

/** Four chunks of two replicas, and one chunk too big for the backend's whole quota. */
function workload(): DistributionTask[] {
  const replica = (chunkId: string, i: number) => ({ replicaId: `${chunkId}_r${i}`, chunkId, targetNode: `aws-node-${i + 1}`, cloudProvider: 'aws', status: 'completed' as const });
  const chunks: DistributionTask[] = Array.from({ length: 4 }, (_, c) => ({
    taskId: `t${c}`, chunkId: `c${c}`, chunkData: randomBytes(CHUNK_BYTES), status: 'completed', replicas: [replica(`c${c}`, 0), replica(`c${c}`, 1)],
  }));
  return [...chunks, { taskId: 'tb', chunkId: 'big', chunkData: randomBytes(60_000), status: 'completed', replicas: [replica('big', 0)] }];
}

async function serve(vault: Chunkvault): Promise<string> {
  const app = await buildHttpServer(vault, { auth: undefined });
  servers.push(app);
  return app.listen({ host: '127.0.0.1', port: 0 });
}

/** Sum of the data-value of the bars of `field` in chart `chart`. */
function barTotal(page: import('playwright-core').Page, chart: string, field: string): Promise<number> {
  return page
    .locator(`figure[data-chart="${chart}"] rect.bar[data-field="${field}"]`)
    .evaluateAll((bars) => bars.reduce((sum, bar) => sum + Number(bar.getAttribute('data-value')), 0));
}

describe('/admin charts', () => {
  it('show what every process did, per minute, on any server, with nothing loaded from elsewhere', async () => {
    // A quota of about 53 kB: the 8 small replicas and the repair fit, the 60 kB chunk never does.
    env = await makeTestEnv({ storage: { backends: { local: { max_size_gb: 0.00005 } } }, chunkvault: { retry: { attempts: 1, backoff_ms: 10 } } });
    const producer = await openVault(env);
    vaults.push(producer);
    workers.push(await startWorkerProcess(env));

    const tasks = workload();
    const results = await (await producer.producer.store(tasks)).results({ timeoutMs: 60_000 });
    expect(results.filter((r) => r.status === 'stored')).toHaveLength(8);
    expect(results.filter((r) => r.status === 'failed').map((r) => r.replicaId)).toEqual(['big_r0']);

    // Rot one replica on disk; this process's read finds it, the worker process repairs it.
    const victim = results.find((r) => r.replicaId === 'c0_r0')!;
    const file = path.join(env.basePath, victim.storagePath);
    const bytes = await readFile(file);
    bytes[7] = bytes[7]! ^ 0xff;
    await writeFile(file, bytes);
    expect((await producer.getChunk('c0')).equals(tasks[0]!.chunkData as Buffer)).toBe(true);
    await waitFor('the repair', async () => (await producer.catalog.getReplica('c0', 'c0_r0'))?.status === 'stored', 30_000);

    // Another vault, which stored nothing itself, serves the same series.
    const onlooker = await openVault(env);
    vaults.push(onlooker);
    const [producerBase, onlookerBase] = [await serve(producer), await serve(onlooker)];
    const seriesAt = async (base: string) => (await fetch(`${base}/v1/stats/series`)).json() as Promise<{ series: Record<string, number[]> }>;
    const [fromProducer, fromOnlooker] = await Promise.all([seriesAt(producerBase), seriesAt(onlookerBase)]);
    expect(fromOnlooker).toEqual(fromProducer);
    const total = (field: string) => fromOnlooker.series[field]!.reduce((sum, n) => sum + n, 0);
    expect({
      replicas_stored: total('replicas_stored'), bytes_stored: total('bytes_stored'), replicas_failed: total('replicas_failed'),
      corruptions_found: total('corruptions_found'), repairs_done: total('repairs_done'),
    }).toEqual({ replicas_stored: 9, bytes_stored: 9 * CHUNK_BYTES, replicas_failed: 1, corruptions_found: 1, repairs_done: 1 });
    // Everything happened within the last few minutes, which are the series' last values.
    expect(fromOnlooker.series.replicas_stored!.slice(0, -5).every((n) => n === 0)).toBe(true);

    browser = await launchChromium();
    const context = await browser.newContext();
    const requested: string[] = [];
    context.on('request', (request) => requested.push(request.url()));
    await context.route((url) => url.origin !== onlookerBase, (route) => route.abort());
    const page = await context.newPage();
    expect((await page.goto(`${onlookerBase}/admin?refresh=0&hours=1`))?.status()).toBe(200);

    const charts = page.locator('#charts figure');
    expect(await charts.evaluateAll((figures) => figures.map((f) => f.getAttribute('data-chart')))).toEqual(['stored', 'bytes', 'failed', 'corruptions']);
    expect(await page.locator('figure[data-chart="stored"]').getAttribute('data-total')).toBe('9');
    expect(await barTotal(page, 'stored', 'replicas_stored')).toBe(9);
    expect(await barTotal(page, 'bytes', 'bytes_stored')).toBe(9 * CHUNK_BYTES);
    expect(await barTotal(page, 'failed', 'replicas_failed')).toBe(1);
    expect(await barTotal(page, 'corruptions', 'corruptions_found')).toBe(1);
    expect(await barTotal(page, 'corruptions', 'repairs_done')).toBe(1);
    // The browser drew them: each chart is page-wide enough to read, and its bars have height.
    for (const chart of ['stored', 'bytes', 'failed', 'corruptions']) {
      const svg = await page.locator(`figure[data-chart="${chart}"] svg`).boundingBox();
      expect(svg!.width, chart).toBeGreaterThan(300);
      const bar = await page.locator(`figure[data-chart="${chart}"] rect.bar`).first().boundingBox();
      expect(bar!.height, chart).toBeGreaterThan(1);
    }
    expect(await page.locator('figure[data-chart="failed"] text').allTextContents()).not.toContain('nothing in this window');
    // An hour of minutes, with a time label every 10 minutes.
    expect(await page.locator('#charts h2').innerText()).toContain('The last 1 h');
    const labels = (await page.locator('figure[data-chart="stored"] text').allTextContents()).filter((text) => /^\d\d:\d\d$/.test(text));
    expect(labels).toHaveLength(6);

    // Offline: the page is all there is, no script, no request to anything but itself.
    expect(await page.locator('script').count()).toBe(0);
    expect(requested).toEqual([`${onlookerBase}/admin?refresh=0&hours=1`]);
    await context.close();
  }, 120_000);
});
