/**
 * Figures of the fault scenarios: each scenario records its runs (one invariant report each)
 * and writes them, with totals, to test/faults/results/<scenario>.json (gitignored), from
 * which `report.ts` builds the tables of docs/RELIABILITY.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { InvariantReport } from './invariants.js';

export const RESULTS_DIR = path.resolve(import.meta.dirname, '../results');

export interface RunFigures {
  seed: number;
  chunks: number;
  replicas: number;
  faultsInjected: number;
  acknowledgedChunks: number;
  acknowledgedLost: number;
  corruptReturned: number;
  /** Violations of any invariant (must be 0). */
  violations: number;
  durationMs: number;
  /** Scenario-specific numbers (kills, restarts, jobs reported lost...). */
  extra: Record<string, unknown>;
  counts: InvariantReport['counts'];
}

export interface ScenarioFigures {
  scenario: string;
  description: string;
  /** The command that reproduces the scenario. */
  command: string;
  finishedAt: string;
  runs: number;
  chunks: number;
  replicas: number;
  faultsInjected: number;
  acknowledgedChunks: number;
  acknowledgedLost: number;
  corruptReturned: number;
  violations: number;
  details: RunFigures[];
}

/** Collects one scenario's runs; `write()` (re)writes its JSON with the runs so far. */
export class FigureRecorder {
  readonly #runs: RunFigures[] = [];

  constructor(
    readonly scenario: string,
    readonly description: string,
    readonly command = `npx vitest run --config vitest.faults.config.ts test/faults/${scenario}.faults.ts`,
  ) {}

  /** Records one run from its invariant report. */
  add(report: InvariantReport, durationMs: number, extra: Record<string, unknown> = {}): RunFigures {
    const run: RunFigures = {
      seed: report.seeds[0] ?? 0,
      chunks: report.counts.chunks,
      replicas: report.counts.replicas,
      faultsInjected: report.counts.faultsInjected,
      acknowledgedChunks: report.counts.acknowledgedChunks,
      acknowledgedLost: report.counts.acknowledgedLost,
      corruptReturned: report.counts.corruptReturned,
      violations: Object.values(report.violationCounts).reduce((a, b) => a + b, 0),
      durationMs: Math.round(durationMs),
      extra,
      counts: report.counts,
    };
    this.#runs.push(run);
    return run;
  }

  /** Writes the results file; does nothing when no run was recorded (a filtered run keeps the last figures). */
  async write(): Promise<string | undefined> {
    if (this.#runs.length === 0) return undefined;
    const sum = (pick: (run: RunFigures) => number): number => this.#runs.reduce((total, run) => total + pick(run), 0);
    const figures: ScenarioFigures = {
      scenario: this.scenario,
      description: this.description,
      command: this.command,
      finishedAt: new Date().toISOString(),
      runs: this.#runs.length,
      chunks: sum((r) => r.chunks),
      replicas: sum((r) => r.replicas),
      faultsInjected: sum((r) => r.faultsInjected),
      acknowledgedChunks: sum((r) => r.acknowledgedChunks),
      acknowledgedLost: sum((r) => r.acknowledgedLost),
      corruptReturned: sum((r) => r.corruptReturned),
      violations: sum((r) => r.violations),
      details: this.#runs,
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `${this.scenario}.json`);
    await writeFile(file, `${JSON.stringify(figures, null, 2)}\n`);
    return file;
  }
}
