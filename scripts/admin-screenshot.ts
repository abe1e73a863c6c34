/**
 * `node --import tsx scripts/admin-screenshot.ts [minutes]`: renders docs/admin-charts.png,
 * the /admin page with its charts, for docs/OPERATIONS.md. A real vault on the local Redis
 * (a prefix of its own, deleted afterwards) runs a real workload for `minutes` (default 6):
 * a batch of chunks every 15 seconds, now and then one too big for the backend's quota (failed
 * for good) and a replica rotted on disk that a read finds and a repair rewrites. Debian's
 * chromium (as test/dashboard.test.ts drives it) then takes the picture.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DistributionTask } from '../src/domain/types.js';
import { buildHttpServer } from '../src/http/server.js';
import { launchChromium } from '../test/support/browser.js';
import { REPO_ROOT, makeTestEnv, openVault } from '../test/support/harness.js';

const OUTPUT = path.join(REPO_ROOT, 'docs/admin-charts.png');
const BATCH_EVERY_MS = 15_000;
const minutes = Number(process.argv[2] ?? 6);

function chunk(id: string, bytes: number): DistributionTask {
  return {
    taskId: `task-${id}`, chunkId: id, chunkData: randomBytes(bytes), status: 'completed',
    replicas: [0, 1].map((i) => ({ replicaId: `${id}_r${i}`, chunkId: id, targetNode: `aws-node-${i + 1}`, cloudProvider: 'aws', status: 'completed' as const })),
  };
}

// A quota of 8 MiB: the small chunks fit, a 9 MiB one never does.
const env = await makeTestEnv({ storage: { backends: { local: { max_size_gb: 8 / 1024 } } }, chunkvault: { retry: { attempts: 1, backoff_ms: 10 } } });
const vault = await openVault(env);
try {
  await vault.startWorkers();
  const batches = Math.max(1, Math.round((minutes * 60_000) / BATCH_EVERY_MS));
  for (let batch = 0; batch < batches; batch += 1) {
    const started = Date.now();
    // A rate that rises and falls, so the charts have a shape.
    const count = 3 + Math.round(3 * Math.sin(batch / 3)) + (batch % 4);
    const tasks = Array.from({ length: count }, (_, i) => chunk(`b${batch}-c${i}`, 4096 * (1 + ((batch + i) % 8))));
    if (batch % 5 === 2) tasks.push(chunk(`b${batch}-huge`, 9 * 1024 * 1024));
    const results = await (await vault.producer.store(tasks)).results({ timeoutMs: 60_000 });
    if (batch % 4 === 1) {
      const victim = results.find((r) => r.status === 'stored')!;
      const file = path.join(env.basePath, victim.storagePath);
      const bytes = await readFile(file);
      bytes[0] = bytes[0]! ^ 0xff;
      await writeFile(file, bytes);
      await vault.getChunk(victim.chunkId); // finds the rot, answers from the other replica, queues the repair
    }
    process.stdout.write(`batch ${batch + 1}/${batches}: ${tasks.length} chunks\n`);
    await sleep(Math.max(0, BATCH_EVERY_MS - (Date.now() - started)));
  }
  const app = await buildHttpServer(vault, { auth: undefined });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${base}/admin?refresh=0&hours=1`);
    await page.screenshot({ path: OUTPUT, fullPage: true });
    process.stdout.write(`wrote ${path.relative(REPO_ROOT, OUTPUT)}\n`);
  } finally {
    await browser.close();
    await app.close();
  }
} finally {
  await vault.close();
  await env.cleanup();
}
