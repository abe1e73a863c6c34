/**
 * What a fleet scenario holds while it runs (its test env, the producer's vault, the worker
 * fleet), released after each test however it ended, and its figures written after the file.
 */
import { afterAll, afterEach } from 'vitest';
import type { Chunkvault } from '../../../src/app.js';
import type { TestEnv } from '../../support/harness.js';
import type { FigureRecorder } from './figures.js';
import type { WorkerFleet } from './worker-fleet.js';

export interface ScenarioState {
  env?: TestEnv;
  vault?: Chunkvault;
  fleet?: WorkerFleet;
}

/** Registers the cleanup hooks of a scenario file; the test fills in what it starts. */
export function scenarioState(figures: FigureRecorder): ScenarioState {
  const state: ScenarioState = {};
  afterEach(async () => {
    await state.fleet?.close();
    await state.vault?.close();
    await state.env?.cleanup();
    state.fleet = state.vault = state.env = undefined;
  });
  afterAll(async () => {
    await figures.write();
  });
  return state;
}
