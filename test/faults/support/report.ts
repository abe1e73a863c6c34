/**
 * Builds the figures of docs/RELIABILITY.md from test/faults/results/*.json (written by the
 * scenarios of `npm run test:faults`): one summary row per scenario, then each scenario's runs.
 *
 *   node --import tsx test/faults/support/report.ts            # print the markdown
 *   node --import tsx test/faults/support/report.ts --write    # replace the figures in docs/RELIABILITY.md
 *
 * `--write` replaces what lies between the `<!-- figures:start -->` and `<!-- figures:end -->`
 * markers and leaves the rest of the document as it is.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { RESULTS_DIR, type ScenarioFigures } from './figures.js';

const DOC = path.resolve(import.meta.dirname, '../../../docs/RELIABILITY.md');
const START = '<!-- figures:start -->';
const END = '<!-- figures:end -->';

/** Scenarios in the order the document presents them; others follow by name. */
const ORDER = ['worker-kill', 'redis-restart-aof', 'redis-restart-no-persistence', 'maintenance-race', 'disk-full', 'permission-errors', 's3-restart', 'faulty-server', 'corruption'];

export async function loadFigures(dir = RESULTS_DIR): Promise<ScenarioFigures[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.json'));
  const all = await Promise.all(names.map(async (name) => JSON.parse(await readFile(path.join(dir, name), 'utf8')) as ScenarioFigures));
  const rank = (s: ScenarioFigures): number => (ORDER.includes(s.scenario) ? ORDER.indexOf(s.scenario) : ORDER.length);
  return all.filter((s) => s.runs > 0).sort((a, b) => rank(a) - rank(b) || a.scenario.localeCompare(b.scenario));
}

export function markdown(figures: readonly ScenarioFigures[]): string {
  const lines: string[] = [];
  const total = (pick: (s: ScenarioFigures) => number): number => figures.reduce((sum, s) => sum + pick(s), 0);
  lines.push('| Scenario | Runs | Chunks | Replicas | Faults injected | Acknowledged chunks | Acknowledged chunks lost | Corrupt bytes returned | Invariant violations | Reproduce |');
  lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|---|');
  for (const s of figures) {
    lines.push(`| ${s.scenario} | ${s.runs} | ${s.chunks} | ${s.replicas} | ${s.faultsInjected} | ${s.acknowledgedChunks} | **${s.acknowledgedLost}** | **${s.corruptReturned}** | ${s.violations} | \`${s.command}\` |`);
  }
  lines.push(`| **all** | ${total((s) => s.runs)} | ${total((s) => s.chunks)} | ${total((s) => s.replicas)} | ${total((s) => s.faultsInjected)} | ${total((s) => s.acknowledgedChunks)} | **${total((s) => s.acknowledgedLost)}** | **${total((s) => s.corruptReturned)}** | ${total((s) => s.violations)} | \`npm run test:faults\` |`);
  lines.push('');
  for (const s of figures) {
    lines.push(`#### ${s.scenario}`, '', `${s.description}. Recorded ${s.finishedAt.slice(0, 16).replace('T', ' ')} UTC.`, '');
    lines.push('| Seed | Chunks | Replicas | Faults | Acknowledged | Lost | Corrupt returned | Violations | Seconds | Details |');
    lines.push('|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|');
    for (const run of s.details) {
      const details = Object.entries(run.extra).map(([key, value]) => `${key}: ${typeof value === 'object' ? JSON.stringify(value).replaceAll('|', '\\|') : String(value)}`).join('; ');
      lines.push(`| ${run.seed} | ${run.chunks} | ${run.replicas} | ${run.faultsInjected} | ${run.acknowledgedChunks} | ${run.acknowledgedLost} | ${run.corruptReturned} | ${run.violations} | ${Math.round(run.durationMs / 1000)} | ${details} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const figures = await loadFigures();
  const table = markdown(figures);
  if (!process.argv.includes('--write')) {
    process.stdout.write(`${table}\n`);
    return;
  }
  const doc = await readFile(DOC, 'utf8');
  const start = doc.indexOf(START);
  const end = doc.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOC} has no ${START} ... ${END} section`);
  await writeFile(DOC, `${doc.slice(0, start + START.length)}\n${table}\n${doc.slice(end)}`);
  process.stdout.write(`wrote the figures of ${figures.length} scenario(s) to ${DOC}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
