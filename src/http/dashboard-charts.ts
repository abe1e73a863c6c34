/**
 * The charts of /admin: the catalog's per-minute series (catalog/minute-series.ts) drawn on
 * the server as inline SVG bar charts, one bar per minute. The page keeps needing no script,
 * no library and nothing from another origin, so it works offline and under its
 * Content-Security-Policy that allows no script; each reload draws the newest minutes.
 *
 * Every bar and chart carries its figures in data-* attributes (the browser test reads them)
 * and a <title> that a pointer over it shows.
 */
import type { MinuteSeries, SeriesField } from '../catalog/minute-series.js';
import { MINUTE_MS } from '../catalog/minute-series.js';
import { SafeHtml, html } from './dashboard-html.js';

interface ChartSpec {
  id: string;
  title: string;
  /** What is drawn, one colour each; two figures share each minute's slot side by side. */
  bars: ReadonlyArray<{ field: SeriesField; label: string; color: string }>;
  unit: 'count' | 'bytes';
}

const CHARTS: readonly ChartSpec[] = [
  { id: 'stored', title: 'Replicas stored per minute', unit: 'count', bars: [{ field: 'replicas_stored', label: 'stored (repairs included)', color: '#0969da' }] },
  { id: 'bytes', title: 'Bytes stored per minute', unit: 'bytes', bars: [{ field: 'bytes_stored', label: 'bytes on the backends', color: '#8250df' }] },
  { id: 'failed', title: 'Replicas failed for good per minute', unit: 'count', bars: [{ field: 'replicas_failed', label: 'failed for good', color: '#cf222e' }] },
  {
    id: 'corruptions', title: 'Corruptions found and repairs done per minute', unit: 'count',
    bars: [{ field: 'corruptions_found', label: 'found missing or corrupt', color: '#bc4c00' }, { field: 'repairs_done', label: 'repaired', color: '#1a7f37' }],
  },
];

// Every chart's geometry in SVG user units; the SVG scales to its section's width.
const WIDTH = 720;
const HEIGHT = 140;
const LEFT = 64;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 22;
const PLOT_WIDTH = WIDTH - LEFT - RIGHT;
const PLOT_HEIGHT = HEIGHT - TOP - BOTTOM;
/** Minutes between two time labels, the first that leaves at most 8 labels. */
const TICK_MINUTES = [5, 10, 15, 30, 60, 120, 180, 240, 360];

/** Styles of the charts (added to the page's own). */
export const CHART_STYLE = `#charts{grid-column:1/-1} .charts{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
figure{margin:0} figcaption{font-weight:600;margin-bottom:2px} figcaption .muted{font-weight:400}
.legend{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 8px} svg.chart{width:100%;height:auto;display:block}
svg.chart text{font:12px system-ui,sans-serif;fill:#656d76} svg.chart .grid{stroke:#eaeef2} svg.chart .axis{stroke:#8c959f}`;

/** The charts section: every chart over the whole series, ending with the current minute. */
export function chartsSection(series: MinuteSeries, formatBytes: (bytes: number) => string): SafeHtml {
  const minutes = series.values.replicas_stored.length;
  const hours = minutes / 60;
  return html`<section id="charts"><h2>The last ${hours >= 1 ? `${Number(hours.toFixed(1))} h` : `${minutes} min`} <span class="muted">(per minute, UTC; the last minute is still counting)</span></h2><div class="charts">${CHARTS.map(
    (spec) => chart(spec, series, spec.unit === 'bytes' ? formatBytes : (n: number) => n.toLocaleString('en-US')),
  )}</div></section>`;
}

function chart(spec: ChartSpec, series: MinuteSeries, format: (n: number) => string): SafeHtml {
  const startMs = Date.parse(series.start);
  const minutes = series.values[spec.bars[0]!.field].length;
  const peak = Math.max(0, ...spec.bars.flatMap((bar) => series.values[bar.field]));
  const top = spec.unit === 'bytes' ? niceBytesCeiling(peak) : niceCeiling(peak);
  const slot = PLOT_WIDTH / minutes;
  const barWidth = Math.max((slot / spec.bars.length) * 0.85, 0.5);
  const totals = spec.bars.map((bar) => series.values[bar.field].reduce((sum, n) => sum + n, 0));
  const y = (value: number): number => TOP + PLOT_HEIGHT - (value / top) * PLOT_HEIGHT;
  const bars = spec.bars.map((bar, b) =>
    series.values[bar.field].map((value, i) => {
      if (value === 0) return '';
      const at = new Date(startMs + i * MINUTE_MS).toISOString();
      return html`<rect class="bar" data-field="${bar.field}" data-minute="${at}" data-value="${value}" x="${round(LEFT + i * slot + (b * slot) / spec.bars.length)}" y="${round(y(value))}" width="${round(barWidth)}" height="${round(TOP + PLOT_HEIGHT - y(value))}" fill="${bar.color}"><title>${at.slice(11, 16)} UTC: ${format(value)} ${bar.label}</title></rect>`;
    }),
  );
  return html`<figure data-chart="${spec.id}" data-total="${totals.reduce((sum, n) => sum + n, 0)}" data-peak="${peak}"><figcaption>${spec.title}${spec.bars.map(
    (bar, b) => html`<span class="legend" style="background:${bar.color}"></span><span class="muted">${bar.label}: ${format(totals[b]!)}</span>`,
  )}</figcaption><svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${spec.title}: ${spec.bars.map((bar, b) => `${format(totals[b]!)} ${bar.label}`).join(', ')}, at most ${format(peak)} in a minute">
${[0, 0.5, 1].map((f) => html`<line class="grid" x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${round(y(top * f))}" y2="${round(y(top * f))}"></line><text x="${LEFT - 4}" y="${round(y(top * f) + 3)}" text-anchor="end">${format(top * f)}</text>`)}
${timeTicks(startMs, minutes, slot)}
${bars}
${peak === 0 ? html`<text x="${LEFT + PLOT_WIDTH / 2}" y="${TOP + PLOT_HEIGHT / 2}" text-anchor="middle">nothing in this window</text>` : ''}
<line class="axis" x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${TOP + PLOT_HEIGHT}" y2="${TOP + PLOT_HEIGHT}"></line>
</svg></figure>`;
}

/** A tick and an HH:MM label at each whole multiple of the tick interval (UTC). */
function timeTicks(startMs: number, minutes: number, slot: number): SafeHtml {
  const every = TICK_MINUTES.find((m) => minutes / m <= 8) ?? TICK_MINUTES.at(-1)!;
  const firstMinute = startMs / MINUTE_MS;
  const ticks: SafeHtml[] = [];
  for (let m = Math.ceil(firstMinute / every) * every; m < firstMinute + minutes; m += every) {
    const x = round(LEFT + (m - firstMinute) * slot);
    ticks.push(html`<line class="axis" x1="${x}" x2="${x}" y1="${TOP + PLOT_HEIGHT}" y2="${TOP + PLOT_HEIGHT + 4}"></line><text x="${x}" y="${HEIGHT - 4}" text-anchor="middle">${new Date(m * MINUTE_MS).toISOString().slice(11, 16)}</text>`);
  }
  return html`${ticks}`;
}

/** The smallest 1, 2 or 5 times a power of ten at or above `value`, at least 2 (so half of it is a whole number). */
function niceCeiling(value: number): number {
  if (value <= 2) return 2;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((f) => f * power).find((candidate) => candidate >= value)!;
}

/** As niceCeiling, in the binary unit (KiB, MiB...) the value is shown in. */
function niceBytesCeiling(value: number): number {
  const unit = 1024 ** Math.max(0, Math.floor(Math.log(Math.max(value, 1)) / Math.log(1024)));
  return niceCeiling(value / unit) * unit;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
