/**
 * What Prometheus and Grafana would get from a real deployment: a `chunkvault serve` process and
 * a `chunkvault worker` process (its metrics port on) after a small workload with retries,
 * failures, a corrupt read and its repair, and a maintenance pass. Both /metrics bodies pass
 * `promtool check metrics` with no finding, and every PromQL expression of the Grafana dashboard
 * and of the alert rules names only metrics, labels and label values those scrapes have.
 */
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { load } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import type { DistributionTask } from '../src/domain/types.js';
import { freeLoopbackPort } from '../src/redis/private-redis.js';
import { DASHBOARD_FILE } from '../scripts/grafana-dashboard.js';
import { mountFullDisk } from './support/full-disk.js';
import { namesIn } from './support/promql-names.js';
import { makeTestEnv, openVault, REPO_ROOT, spawnCli, startWorkerProcess, waitFor, type TestEnv } from './support/harness.js';

/** Labels Prometheus adds to every series it scrapes, and the series it makes of each scrape. */
const TARGET_LABELS = ['job', 'instance'];
const SCRAPE_SERIES = 'up';

let env: TestEnv;
let vault: Chunkvault;
const cleanups: Array<() => unknown> = [];
const bodies: Record<'serve' | 'worker', string> = { serve: '', worker: '' };

/** Chunk i: r0 on aws-node-1, r1 on gcp-node-1 (a full disk) for i = 0, else on aws-node-2. */
function tasks(count: number): DistributionTask[] {
  return Array.from({ length: count }, (_, i) => ({
    taskId: `t${i}`, chunkId: `c${i}`, chunkData: Buffer.alloc(8000 + i * 500, i + 1), status: 'completed',
    replicas: [
      { replicaId: `c${i}_r0`, chunkId: `c${i}`, targetNode: 'aws-node-1', cloudProvider: 'aws', status: 'completed' },
      { replicaId: `c${i}_r1`, chunkId: `c${i}`, targetNode: i === 0 ? 'gcp-node-1' : 'aws-node-2', cloudProvider: i === 0 ? 'gcp' : 'aws', status: 'completed' },
    ],
  }));
}

async function metricsOf(url: string): Promise<string> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  return response.text();
}

beforeAll(async () => {
  const workerPort = await freeLoopbackPort();
  const servePort = await freeLoopbackPort();
  env = await makeTestEnv({
    chunkvault: { retry: { attempts: 2, backoff_ms: 10 }, metrics: { worker_port: workerPort } },
    storage: { organization: { partition_by: 'node' }, backends: { local: { max_size_gb: 1 } } },
  });
  cleanups.push(() => env.cleanup());
  cleanups.push(await mountFullDisk(path.join(env.basePath, 'gcp-node-1')));
  vault = await openVault(env);
  cleanups.push(() => vault.close());
  for (const child of [await startWorkerProcess(env), spawnCli(['serve', '--port', String(servePort), '--config', env.configPath], { LOG_LEVEL: 'warn' })]) {
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await child.done;
    });
  }
  const serve = `http://127.0.0.1:${servePort}`;
  await waitFor('serve to listen', async () => (await fetch(`${serve}/readyz`).catch(() => undefined))?.status === 200, 30_000);

  const chunks = tasks(3);
  const results = await (await vault.producer.store(chunks)).results({ timeoutMs: 30_000 });
  expect(results.filter((r) => r.status === 'failed').map((r) => r.replicaId)).toEqual(['c0_r1']);
  // A flipped byte that serve's read finds: a checksum mismatch there, a repair by the worker.
  const victim = path.join(env.basePath, results.find((r) => r.replicaId === 'c1_r0')!.storagePath);
  const bytes = await readFile(victim);
  bytes[5]! ^= 0xff;
  await writeFile(victim, bytes);
  expect((await fetch(`${serve}/v1/chunks/c1`)).status).toBe(200);
  await waitFor('the repair', async () => (await vault.catalog.getReplica('c1', 'c1_r0'))?.status === 'stored');
  await vault.maintenance.runPass({ tasks: ['retention', 'compression', 'compaction', 'scrub'] });

  bodies.serve = await metricsOf(`${serve}/metrics`);
  bodies.worker = await metricsOf(`http://127.0.0.1:${workerPort}/metrics`);
}, 120_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Each metric name of the scrapes, with each of its label names and the values seen. */
function namesOfScrapes(): Map<string, Map<string, Set<string>>> {
  const names = new Map<string, Map<string, Set<string>>>();
  for (const body of Object.values(bodies)) {
    for (const [, name, labelText] of body.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/gm)) {
      const labels = names.get(name!) ?? new Map<string, Set<string>>();
      names.set(name!, labels);
      for (const [, label, value] of (labelText ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels.set(label!, (labels.get(label!) ?? new Set()).add(value!));
      }
    }
  }
  return names;
}

/** What `expr` names that no scrape has: unknown metrics, labels, and values of = and =~ a|b matchers. */
function unknownNamesIn(expr: string, names: Map<string, Map<string, Set<string>>>): string[] {
  const problems: string[] = [];
  const { selectors, groupingLabels } = namesIn(expr);
  const labelsOf = (metric: string) => names.get(metric) ?? new Map<string, Set<string>>();
  for (const { metric, matchers } of selectors) {
    if (metric !== SCRAPE_SERIES && !names.has(metric)) problems.push(`metric ${metric}`);
    for (const { label, op, value } of matchers) {
      if (TARGET_LABELS.includes(label)) continue;
      const values = labelsOf(metric).get(label);
      if (!values) problems.push(`label ${label} of ${metric}`);
      else if (op === '=' || (op === '=~' && /^\w+(\|\w+)*$/.test(value))) {
        for (const wanted of value.split('|')) if (!values.has(wanted)) problems.push(`${metric}{${label}="${wanted}"}`);
      }
    }
  }
  for (const label of groupingLabels) {
    if (!TARGET_LABELS.includes(label) && !selectors.some(({ metric }) => labelsOf(metric).has(label))) problems.push(`label ${label} in by/on/without`);
  }
  return problems;
}

/** The queries of the committed dashboard, as Grafana loads it. */
async function dashboardExpressions(): Promise<string[]> {
  const dashboard = JSON.parse(await readFile(path.join(REPO_ROOT, DASHBOARD_FILE), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  return dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((t) => t.expr));
}

async function alertExpressions(): Promise<string[]> {
  const rules = load(await readFile(path.join(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ expr: string }> }> };
  return rules.groups.flatMap((g) => g.rules.map((r) => r.expr));
}

describe('/metrics of a real serve and worker', () => {
  it.each(['serve', 'worker'] as const)('of %s passes promtool check metrics with no finding', (which) => {
    expect(bodies[which]).toContain('chunkvault_');
    const check = spawnSync('promtool', ['check', 'metrics'], { input: bodies[which], encoding: 'utf8' });
    expect({ code: check.status, findings: `${check.stdout}${check.stderr}` }).toEqual({ code: 0, findings: '' });
  });

  it('serve has the cluster figures and the worker its own, both with the Node.js process figures', () => {
    expect(bodies.serve).toMatch(/^chunkvault_replicas_failed 1$/m);
    expect(bodies.serve).toMatch(/^chunkvault_checksum_mismatches_total\{backend="local",trigger="read"\} 1$/m);
    expect(bodies.worker).toMatch(/^chunkvault_replica_repairs_total\{backend="local",outcome="repaired"\} 1$/m);
    expect(bodies.worker).not.toContain('chunkvault_replicas_failed');
    for (const body of Object.values(bodies)) expect(body).toMatch(/^process_cpu_user_seconds_total /m);
  });
});

describe('queries of deploy/grafana and deploy/prometheus', () => {
  it('name only metrics, labels and label values the scrapes have', async () => {
    const names = namesOfScrapes();
    const expressions = [...(await dashboardExpressions()), ...(await alertExpressions())];
    expect(expressions.length).toBeGreaterThan(30);
    const problems = expressions.map((expr) => ({ expr, unknown: unknownNamesIn(expr, names) })).filter((e) => e.unknown.length > 0);
    expect(problems).toEqual([]);
  });

  it('would catch a query of a metric, a label or a value that is not there', () => {
    const names = namesOfScrapes();
    expect(unknownNamesIn('sum by (backend) (rate(chunkvault_bytes_written_total[5m]))', names)).toEqual([]);
    expect(unknownNamesIn('sum by (disk) (rate(chunkvault_bytes_writen_total{tier="hot"}[5m]))', names)).toEqual([
      'metric chunkvault_bytes_writen_total', 'label tier of chunkvault_bytes_writen_total', 'label disk in by/on/without',
    ]);
    expect(unknownNamesIn('max(chunkvault_queue_jobs{state="stuck"})', names)).toEqual(['chunkvault_queue_jobs{state="stuck"}']);
    expect(unknownNamesIn('histogram_quantile(0.9, sum by (le) (rate(chunkvault_replica_write_duration_seconds_bucket[5m])))', names)).toEqual([]);
  });
});
