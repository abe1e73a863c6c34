/**
 * deploy/grafana/chunkvault.json is generated (npm run dashboard, scripts/grafana-dashboard.ts):
 * the committed file must be what the code builds now, and the dashboard must show what an
 * operator looks for. That its queries name real metrics is test/monitoring-queries.test.ts's.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDashboard, DASHBOARD_FILE, serializeDashboard } from '../scripts/grafana-dashboard.js';
import { REPO_ROOT } from './support/harness.js';

interface PanelJson {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string }>;
}

const committed = readFileSync(path.join(REPO_ROOT, DASHBOARD_FILE), 'utf8');
const panels = (JSON.parse(committed) as { panels: PanelJson[] }).panels;
const exprsOf = (title: string) => (panels.find((p) => p.title === title)?.targets ?? []).map((t) => t.expr);

describe(DASHBOARD_FILE, () => {
  it('is what scripts/grafana-dashboard.ts builds (run npm run dashboard after changing it)', () => {
    expect(committed).toBe(serializeDashboard(buildDashboard()));
  });

  it('has a panel for each figure an operator watches, each on the chosen Prometheus data source', () => {
    expect(panels.filter((p) => p.type !== 'row').map((p) => p.title)).toEqual([
      'Replicas stored', 'Bytes written', 'Write latency', 'Verify latency', 'Queue depth', 'Failures and retries',
      'Corruptions found and repaired', 'Scrub coverage', 'Retention, compression and compaction per pass', 'Bytes per pass',
      'Last pass', 'Last pass failed', 'Compression saved', 'Expired by retention', 'Stored against max_size_gb',
      'Capacity used', 'Workers up', 'Serve up',
    ]);
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect({ title: panel.title, datasource: panel.datasource }).toEqual({ title: panel.title, datasource: { type: 'prometheus', uid: '${datasource}' } });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
  });

  it('takes latency quantiles from the histograms buckets, summed over processes per le', () => {
    for (const [title, histogram] of [['Write latency', 'chunkvault_replica_write_duration_seconds'], ['Verify latency', 'chunkvault_replica_verify_duration_seconds']]) {
      const exprs = exprsOf(title!);
      expect(exprs.map((e) => /^histogram_quantile\((0\.\d+), sum by \(le, [a-z, ]+\) \(rate\((\w+)\[\$__rate_interval\]\)\)\)$/.exec(e)?.slice(1))).toEqual([
        ['0.5', `${histogram}_bucket`], ['0.9', `${histogram}_bucket`], ['0.99', `${histogram}_bucket`],
      ]);
    }
  });

  it('compares scrub coverage with its configured bound and capacity with max_size_gb', () => {
    expect(exprsOf('Scrub coverage')).toEqual(['max(chunkvault_oldest_unverified_replica_age_seconds)', 'max(chunkvault_scrub_max_age_seconds)']);
    expect(exprsOf('Stored against max_size_gb')).toEqual(['max by (backend) (chunkvault_stored_bytes)', 'max by (backend) (chunkvault_backend_capacity_bytes)']);
    expect(exprsOf('Workers up')).toEqual(['sum(up{job="chunkvault-workers"})']);
  });
});
