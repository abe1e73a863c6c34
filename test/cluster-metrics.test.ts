/**
 * The bounds the alert rules compare with (deploy/prometheus/alerts.yml), as `chunkvault serve`
 * exports them from its configuration: the scrub age bound and when the next maintenance pass
 * is due, so a rule never hard-codes what the config already says.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Chunkvault } from '../src/app.js';
import { buildHttpServer } from '../src/http/server.js';
import { makeTestEnv, openVault, type TestEnv } from './support/harness.js';

let env: TestEnv | undefined;
let vault: Chunkvault | undefined;
let close: (() => Promise<unknown>) | undefined;

afterEach(async () => {
  await close?.();
  await vault?.close();
  await env?.cleanup();
  env = vault = close = undefined;
});

/** The value of each series (name and labels as written) of a scrape of a fresh `serve` of `overrides`, after `work`. */
async function scrapeAfter(overrides: Record<string, unknown>, work: (vault: Chunkvault) => Promise<unknown>): Promise<Map<string, number>> {
  env = await makeTestEnv(overrides);
  vault = await openVault(env);
  await work(vault);
  const app = await buildHttpServer(vault, { host: '127.0.0.1', port: 0, auth: undefined });
  close = () => app.close();
  const response = await fetch(`${await app.listen({ host: '127.0.0.1', port: 0 })}/metrics`);
  expect(response.status).toBe(200);
  const samples = new Map<string, number>();
  for (const [, name, value] of (await response.text()).matchAll(/^([a-z_:]+(?:\{.*\})?) (\S+)$/gm)) samples.set(name!, Number(value));
  return samples;
}

describe('alert bounds on /metrics of chunkvault serve', () => {
  it('shows scrub_max_age_days in seconds and, once a pass ran, the next cleanup_schedule time after it', async () => {
    const before = await scrapeAfter({ chunkvault: { maintenance: { scrub_max_age_days: 7 } }, storage: { cleanup: { cleanup_schedule: '30 */6 * * *' } } }, async () => undefined);
    expect(before.get('chunkvault_scrub_max_age_seconds')).toBe(7 * 86_400);
    // No pass yet: nothing is due, rather than a due time of 0 that reads as long overdue.
    expect([...before.keys()].filter((series) => series.startsWith('chunkvault_maintenance_next_pass_due'))).toEqual([]);
    await close!();
    await vault!.close();
    await env!.cleanup();

    const m = await scrapeAfter({ storage: { cleanup: { cleanup_schedule: '30 */6 * * *' } } }, (v) => v.maintenance.runPass({ tasks: ['scrub'] }));
    const finished = Date.parse((await vault!.maintenance.lastReport())!.finishedAt);
    // Every 6 hours at :30 (UTC): the first after the pass finished.
    const sixHours = 6 * 3600_000;
    const expected = Math.floor((finished - 30 * 60_000) / sixHours + 1) * sixHours + 30 * 60_000;
    expect(m.get('chunkvault_maintenance_next_pass_due_timestamp_seconds{schedule="30 */6 * * *"}')).toBe(expected / 1000);
    expect(m.get('chunkvault_scrub_max_age_seconds')).toBe(30 * 86_400);
  });

  it('leaves the scrub bound out when it is 0 and the due time out without a schedule', async () => {
    const m = await scrapeAfter(
      { chunkvault: { maintenance: { scrub_max_age_days: 0 } }, storage: { cleanup: { enable_auto_cleanup: false } } },
      (v) => v.maintenance.runPass({ tasks: ['scrub'] }),
    );
    expect(m.get('chunkvault_maintenance_last_pass_timestamp_seconds')).toBeGreaterThan(0);
    expect(m.has('chunkvault_scrub_max_age_seconds')).toBe(false);
    expect([...m.keys()].filter((series) => series.startsWith('chunkvault_maintenance_next_pass_due'))).toEqual([]);
  });
});
