/**
 * Real `chunkvault worker` processes for the fault scenarios: started, SIGKILLed at seeded
 * random moments and restarted, and stopped at the end the way production stops them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startWorkerProcess, type TestEnv } from '../../support/harness.js';
import type { Rng } from './workload.js';

type WorkerProcess = Awaited<ReturnType<typeof startWorkerProcess>>;

/** How long a SIGTERMed worker may take to exit before `stop` calls it stuck. */
const STOP_BOUND_MS = 60_000;

export class WorkerFleet {
  readonly #env: TestEnv;
  readonly #workers: Array<WorkerProcess | undefined> = [];
  /** Every process ever started (killed ones too), so `close` can reap them all. */
  readonly #started: WorkerProcess[] = [];
  kills = 0;
  restarts = 0;

  constructor(env: TestEnv) {
    this.#env = env;
  }

  get size(): number {
    return this.#workers.length;
  }

  async start(count: number): Promise<void> {
    const started = await Promise.all(Array.from({ length: count }, () => startWorkerProcess(this.#env)));
    this.#workers.push(...started);
    this.#started.push(...started);
  }

  /**
   * Kills a worker picked by `rng` at seeded random intervals (`minMs`..`maxMs` apart) and
   * starts its replacement in the background, until `until` settles or `maxKills` is reached;
   * a worker is only killed while at least one other is up, so work goes on. Resolves, once
   * the replacements are up, with the number of kills made.
   */
  async chaos(rng: Rng, until: Promise<unknown>, options: { minMs: number; maxMs: number; maxKills: number }): Promise<number> {
    let done = false;
    const settled = until.then(() => undefined, () => undefined).finally(() => (done = true));
    const restarting: Array<Promise<void>> = [];
    let kills = 0;
    while (!done && kills < options.maxKills) {
      const wait = options.minMs + Math.floor(rng.next() * (options.maxMs - options.minMs));
      await Promise.race([sleep(wait), settled]);
      if (done) break;
      const up = this.#workers.map((worker, index) => ({ worker, index })).filter((slot) => slot.worker !== undefined);
      if (up.length < 2) continue;
      const { worker: victim, index } = up[Math.floor(rng.next() * up.length)]!;
      this.#workers[index] = undefined;
      victim!.kill('SIGKILL');
      await victim!.done;
      kills += 1;
      this.kills += 1;
      restarting.push(startWorkerProcess(this.#env).then((replacement) => {
        this.#workers[index] = replacement;
        this.#started.push(replacement);
        this.restarts += 1;
      }));
    }
    await Promise.all(restarting);
    return kills;
  }

  /** SIGTERM to every live worker; resolves when all exited (graceful: active jobs finish). Throws if one exits non-zero. */
  async stop(): Promise<void> {
    const live = this.#workers.splice(0).filter((worker): worker is WorkerProcess => worker !== undefined);
    for (const worker of live) if (worker.exitCode === null) worker.kill('SIGTERM');
    // Bounded: shutdown_timeout_ms and closing connections should take seconds, not minutes.
    const stuck = await Promise.race([Promise.all(live.map((worker) => worker.done)).then(() => false), sleep(STOP_BOUND_MS).then(() => true)]);
    if (stuck) {
      const hanging = live.filter((worker) => worker.exitCode === null && worker.signalCode === null);
      for (const worker of hanging) worker.kill('SIGKILL');
      throw new Error(`${hanging.length} worker(s) did not exit within ${STOP_BOUND_MS} ms of SIGTERM; last log lines:\n${hanging.map((worker) => worker.output().stderr.split('\n').slice(-8).join('\n')).join('\n---\n')}`);
    }
    const runs = await Promise.all(live.map((worker) => worker.done));
    const bad = runs.filter((run) => run.code !== 0);
    if (bad.length) throw new Error(`worker(s) did not stop cleanly: ${bad.map((run) => `code ${run.code} signal ${run.signal}: ${run.stderr.slice(-2000)}`).join('\n')}`);
  }

  /**
   * Temp files of crashed writes that restarted workers removed at their start (from their
   * logs): how many writes the kills cut short mid-way.
   */
  tempFilesRemovedAtStart(): number {
    let removed = 0;
    for (const worker of this.#started) {
      for (const line of worker.output().stderr.split('\n')) {
        if (!line.includes('removed temp files left by crashed writes')) continue;
        try {
          removed += Number((JSON.parse(line) as { removed?: number }).removed ?? 0);
        } catch {
          // not a JSON log line
        }
      }
    }
    return removed;
  }

  /** Kills whatever still runs (after a failed test). */
  async close(): Promise<void> {
    const live = this.#started.filter((worker) => worker.exitCode === null && worker.signalCode === null);
    for (const worker of live) worker.kill('SIGKILL');
    await Promise.all(live.map((worker) => worker.done));
    this.#workers.length = 0;
  }
}
