/**
 * The dashboard's statistics page (/admin): one server-rendered HTML document from
 * `vault.getStatistics()`, the catalog's per-minute series (charts, dashboard-charts.ts) and
 * the newest checkpoint. Every value goes through the escaping
 * `html` template; free text that could carry a credential (backend locations, error
 * messages) is also redacted first.
 */
import type { CheckpointEntry } from '../catalog/checkpoint-index.js';
import { redactSecrets } from '../logging/redact.js';
import { taskResultsOf, type MaintenanceReport } from '../maintenance/maintenance-service.js';
import type { StorageStatistics } from '../stats/statistics.js';
import type { MinuteSeries } from '../catalog/minute-series.js';
import { CHART_STYLE, chartsSection } from './dashboard-charts.js';
import { SafeHtml, html } from './dashboard-html.js';
import { backendOfReplicaQueue } from '../jobs/replica-queues.js';

export interface StatisticsPageView {
  stats: StorageStatistics;
  /** The minutes the charts show, ending with the current one. */
  series: MinuteSeries;
  /** The newest sealed checkpoint (undefined before the first). */
  lastCheckpoint: CheckpointEntry | undefined;
  readOnly: boolean;
  /** Where Bull Board is mounted, e.g. /admin/queues. */
  queuesPath: string;
  /** Seconds between automatic reloads; 0 turns them off. */
  refreshSeconds: number;
  now: Date;
}

/** Descriptions of the shared queues. */
const QUEUE_DESCRIPTIONS: Readonly<Record<string, string>> = {
  replicas: 'replica writes and repairs',
  chunks: 'chunk completion, which feeds checkpoints',
  maintenance: 'retention, compaction, compression and scrub passes',
};

/** A queue's description, shown on this page and in Bull Board (a per-backend replica queue names its backend). */
export function queueDescription(name: string): string {
  const shared = QUEUE_DESCRIPTIONS[name];
  if (shared !== undefined) return shared;
  const backend = backendOfReplicaQueue(name);
  return backend === undefined ? '' : `replica writes and repairs on ${backend}`;
}

// A constant, inserted as it is (a <style> element's text is not HTML-escaped by browsers).
const STYLE = new SafeHtml(`
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:12px 24px;display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0} header a{color:#9cd2ff} .badge{background:#bf8700;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
main{padding:16px 24px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(360px,1fr))}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;overflow-x:auto} #queues,#backends{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px} table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:3px 8px 3px 0;border-bottom:1px solid #eaeef2;vertical-align:top}
.n{text-align:right;font-variant-numeric:tabular-nums} .bad{color:#cf222e;font-weight:600} .ok{color:#1a7f37;font-weight:600} .muted{color:#656d76}
footer{padding:0 24px 16px;color:#656d76}
${CHART_STYLE}`);

/** The whole page. */
export function renderStatisticsPage(view: StatisticsPageView): string {
  const { stats, readOnly, queuesPath, refreshSeconds } = view;
  const page = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${refreshSeconds > 0 ? html`<meta http-equiv="refresh" content="${refreshSeconds}">` : ''}
<title>chunkvault dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>chunkvault</h1>
${readOnly ? html`<span class="badge" data-stat="read_only">read-only</span>` : ''}
<a href="${queuesPath}" id="queues-link">Queues (Bull Board)</a>
</header>
<main>
${chartsSection(view.series, formatBytes)}
${chunksSection(stats)}
${replicasSection(stats)}
${tableSection('Storage by cloud', 'by-cloud', 'Cloud provider', stats.storage_by_cloud)}
${tableSection('Storage by node', 'by-node', 'Node', stats.storage_by_node)}
${backendsSection(stats)}
${checkpointSection(stats, view.lastCheckpoint, view.now)}
${maintenanceSection(stats, view.now)}
${queuesSection(stats, queuesPath)}
</main>
<footer>Generated ${view.now.toISOString()}${refreshSeconds > 0 ? html`; reloads every ${refreshSeconds} s` : ''}.</footer>
</body>
</html>
`;
  return page.markup;
}

function chunksSection(stats: StorageStatistics): SafeHtml {
  const byStatus = stats.chunks_by_status;
  return html`<section id="chunks"><h2>Chunks</h2><table>
${row('Stored (at least one good replica)', 'total_chunks', stats.total_chunks)}
${row('Degraded (a replica missing or bad)', 'degraded_chunks', stats.degraded_chunks, stats.degraded_chunks > 0)}
${row('Pending', 'chunks_pending', byStatus.pending)}
${row('Failed (no replica stored)', 'chunks_failed', byStatus.failed, byStatus.failed > 0)}
${row('Expired by retention', 'chunks_expired', byStatus.expired)}
${bytesRow('Bytes stored (all replicas)', 'total_size_bytes', stats.total_size_bytes)}
</table></section>`;
}

function replicasSection(stats: StorageStatistics): SafeHtml {
  return html`<section id="replicas"><h2>Replicas</h2><table>
${row('Stored', 'total_replicas', stats.total_replicas)}
${row('Failed for good', 'failed_stores', stats.failed_stores, stats.failed_stores > 0)}
${row('Corrupt or missing, not yet repaired', 'corrupt_replicas', stats.corrupt_replicas, stats.corrupt_replicas > 0)}
${row('Corruptions found, ever', 'corruptions_found', stats.corruptions_found)}
${row('Repaired, ever', 'repairs_done', stats.repairs_done)}
${row('Deleted by retention, ever', 'expired_replicas', stats.expired_replicas)}
${bytesRow('Bytes deleted by retention', 'expired_bytes', stats.expired_bytes)}
${row('Compressed, ever', 'compressed_replicas', stats.compressed_replicas)}
${bytesRow('Bytes saved by compression', 'bytes_saved_by_compression', stats.bytes_saved_by_compression)}
</table></section>`;
}

function tableSection(title: string, id: string, keyHeading: string, table: Record<string, { count: number; size_bytes: number }>): SafeHtml {
  const entries = Object.entries(table).sort(([a], [b]) => a.localeCompare(b));
  return html`<section id="${id}"><h2>${title}</h2>${
    entries.length === 0
      ? html`<p class="muted">Nothing stored yet.</p>`
      : html`<table><tr><th>${keyHeading}</th><th class="n">Replicas</th><th class="n">Bytes</th></tr>${entries.map(
          ([name, entry]) => html`<tr data-key="${name}"><td>${name}</td><td class="n">${entry.count}</td><td class="n" data-value="${entry.size_bytes}">${formatBytes(entry.size_bytes)}</td></tr>`,
        )}</table>`
  }</section>`;
}

function backendsSection(stats: StorageStatistics): SafeHtml {
  return html`<section id="backends"><h2>Backends</h2><table><tr><th>Backend</th><th>Location</th><th class="n">Replicas</th><th class="n">Bytes</th><th class="n">Limit</th></tr>${Object.entries(stats.backend_stats).map(
    ([name, backend]) => html`<tr data-key="${name}"><td>${name}</td><td>${withoutSecrets(backend.base_path)}</td><td class="n">${backend.file_count}</td><td class="n" data-value="${backend.total_size_bytes}">${formatBytes(backend.total_size_bytes)}</td><td class="n">${backend.max_size_bytes > 0 ? formatBytes(backend.max_size_bytes) : 'none'}</td></tr>`,
  )}</table></section>`;
}

function checkpointSection(stats: StorageStatistics, last: CheckpointEntry | undefined, now: Date): SafeHtml {
  return html`<section id="checkpoints"><h2>Checkpoints</h2><table>
${row('Sealed', 'checkpoints_created', stats.checkpoints_created)}
${
  last
    ? html`<tr><th>Last checkpoint</th><td data-stat="last_checkpoint">${last.id}</td></tr>
<tr><th>Sealed at</th><td data-stat="last_checkpoint_at">${when(last.createdAt, now)}</td></tr>
<tr><th>Sequence</th><td>${last.sequence}</td></tr>
<tr><th>Chunks in it</th><td data-stat="last_checkpoint_chunks">${last.chunkCount}</td></tr>
${bytesRow('Bytes in it', 'last_checkpoint_bytes', last.totalBytes)}`
    : html`<tr><th>Last checkpoint</th><td data-stat="last_checkpoint" class="muted">none yet</td></tr>`
}
</table></section>`;
}

function maintenanceSection(stats: StorageStatistics, now: Date): SafeHtml {
  const report = stats.last_maintenance;
  return html`<section id="maintenance"><h2>Maintenance</h2><table>
${
  report
    ? html`<tr><th>Last pass</th><td data-stat="last_maintenance_at">${when(report.finishedAt || report.startedAt, now)}</td></tr>
<tr><th>Result</th><td data-stat="last_maintenance_result">${maintenanceResult(report)}</td></tr>
${maintenanceDetails(report)}`
    : html`<tr><th>Last pass</th><td data-stat="last_maintenance_at" class="muted">none yet</td></tr>`
}
<tr><th>Oldest scrub verification</th><td data-stat="oldest_verification">${stats.oldest_verification ? when(stats.oldest_verification, now) : html`<span class="muted">nothing verified yet</span>`}</td></tr>
</table></section>`;
}

function maintenanceResult(report: MaintenanceReport): SafeHtml {
  if (report.error) return html`<span class="bad">failed: ${withoutSecrets(report.error)}</span>`;
  if (report.skipped) return html`<span class="muted">skipped: ${report.skipped}</span>`;
  return html`<span class="ok">ok</span>`;
}

function maintenanceDetails(report: MaintenanceReport): SafeHtml {
  return html`${taskResultsOf(report).map(
    ({ task, result }) =>
      html`<tr><th>${task.title}</th><td data-stat="last_${task.name}">${task.summary(result, formatBytes).map((part) => (part.alarm ? html`<span class="bad">${part.text}</span>` : part.text))}</td></tr>`,
  )}`;
}

function queuesSection(stats: StorageStatistics, queuesPath: string): SafeHtml {
  return html`<section id="queues"><h2>Queues</h2><table><tr><th>Queue</th><th class="n">Waiting</th><th class="n">Active</th><th class="n">Delayed</th><th class="n">Waiting for children</th><th class="n">Failed</th></tr>${Object.entries(stats.queues).map(
    ([name, q]) => {
      const href = `${queuesPath}/queue/${encodeURIComponent(name)}`;
      return html`<tr data-key="${name}"><td><a href="${href}">${name}</a><br><span class="muted">${queueDescription(name)}</span></td><td class="n">${q.waiting}</td><td class="n">${q.active}</td><td class="n">${q.delayed}</td><td class="n">${q.waiting_children}</td><td class="n">${
        q.failed > 0 ? html`<a class="bad" href="${href}?status=failed">${q.failed}</a>` : '0'
      }</td></tr>`;
    },
  )}</table></section>`;
}

function row(label: string, stat: string, value: number, alarming = false): SafeHtml {
  return html`<tr><th>${label}</th><td class="n${alarming ? ' bad' : ''}" data-stat="${stat}">${value.toLocaleString('en-US')}</td></tr>`;
}

function bytesRow(label: string, stat: string, bytes: number): SafeHtml {
  return html`<tr><th>${label}</th><td class="n" data-stat="${stat}" data-value="${bytes}" title="${bytes.toLocaleString('en-US')} bytes">${formatBytes(bytes)}</td></tr>`;
}

/** An ISO time and how long ago it was. */
function when(iso: string, now: Date): SafeHtml {
  const ms = now.getTime() - Date.parse(iso);
  return html`<time datetime="${iso}">${iso}</time>${Number.isFinite(ms) ? html` <span class="muted">(${formatAge(ms)})</span>` : ''}`;
}

export function formatAge(ms: number): string {
  if (ms < 0) return 'in the future';
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86_400).toFixed(1)} days ago`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * `text` without credentials: signed-URL and connection-string secrets, and the user
 * information of any URL in it (an endpoint configured as https://user:key@host).
 */
export function withoutSecrets(text: string): string {
  return redactSecrets(text).replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, '$1***@');
}
