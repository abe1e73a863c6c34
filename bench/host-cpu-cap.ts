/**
 * `npm run bench:host`: does this machine's host stop it when all its cores are busy?
 *
 * A virtual machine whose host caps its CPU time (a quota per period, as a cgroup's cpu.max
 * does) is stopped as a whole once it has used its quota, until the period ends: every process
 * on it, busy or idle, then waits alike, and the time shows as steal in /proc/stat. Whether
 * that happens bounds what any program's event loop can promise here, so this measures it
 * without chunkvault: busy loops that do nothing but spin (no I/O, no memory), on fewer cores
 * than the machine has and then on all of them, each phase watched by an idle canary.
 *
 *   npm run bench:host -- --seconds=10
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { markdownTable, parseFlags, startMachineWatch } from './chunkvault-run.js';

const flags = parseFlags(process.argv.slice(2));
const seconds = Number(flags.seconds ?? 10);
const cores = cpus().length;

async function phase(busy: number): Promise<Record<string, string>> {
  const spinners: ChildProcess[] = Array.from({ length: busy }, () =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  try {
    const watch = startMachineWatch();
    await sleep(seconds * 1000);
    const { canaryStallMs, hostStealMs } = await watch.stop();
    return {
      'busy processes': `${busy} of ${cores} cores`,
      seconds: String(seconds),
      'idle canary max loop stall ms': String(canaryStallMs),
      'host steal ms (all CPUs)': hostStealMs.toFixed(0),
      'steal share of the busy cores\' time': busy ? `${((hostStealMs / (busy * seconds * 1000)) * 100).toFixed(1)}%` : '–',
    };
  } finally {
    for (const s of spinners) s.kill('SIGKILL');
  }
}

const rows = [];
for (const busy of [0, Math.max(cores - 1, 1), cores]) {
  const row = await phase(busy);
  console.log(JSON.stringify(row));
  rows.push(row);
}
console.log(`\n${markdownTable(rows)}`);
