/**
 * The `chunkvault` command with hostile arguments (the real CLI, one process per case):
 * bad usage exits 2 with a one-line reason on stderr, never a stack trace, a signal or a
 * crash; an argument of the right form naming nothing that exists exits 1. The CLI is slow to
 * start, so a few seeded cases run by default (FUZZ_RUNS scales them).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idSchema } from '../../src/domain/ids.js';
import { isLoopback } from '../../src/http/http-auth.js';
import { runCli, type CliRun } from '../support/harness.js';
import { fuzzParameters, hostileString, nearValid, runsOf, show, timeoutFor } from './support/hostile.js';
import { makeSandbox, type Sandbox } from './support/sandbox.js';

interface CliCase {
  args: string[];
  /** Exit codes this case may end with. */
  expected: number[];
}

/** Arguments a shell can pass: no NUL byte (argv strings end at one). */
const arg = (arbitrary: fc.Arbitrary<string>): fc.Arbitrary<string> => arbitrary.map((s) => s.replaceAll('\u0000', '').slice(0, 300));
const hostileArg = arg(hostileString());
const isId = (value: string): boolean => idSchema.safeParse(value).success;
const isPort = (value: string): boolean => /^\d+$/.test(value) && Number(value) <= 65_535;
/** Values the count options (--chunks, --size, --replicas, --timeout) accept: a run, not a usage error. */
const isPositiveInteger = (value: string): boolean => Number.isInteger(Number(value)) && Number(value) > 0;

function cliCase(configPath: string, file: string): fc.Arbitrary<CliCase> {
  const config = ['--config', configPath];
  const id = fc.oneof(hostileArg, arg(nearValid.id()));
  const badNumber = fc.oneof(hostileArg, fc.constantFrom('-1', '0', '1.5', 'NaN', 'Infinity', '-Infinity', '65536', '99999', '1e400', '', ' ', '0x', '--', '9'.repeat(40)));
  return fc.oneof(
    // Ids: a well-formed id that names nothing is "not found" (1); anything else is bad usage (2).
    id.map((v) => ({ args: ['get', v, ...config], expected: isId(v) ? [1] : [2] })),
    fc.tuple(fc.constantFrom('show', 'verify'), id).map(([sub, v]) => ({ args: ['checkpoint', sub, v, ...config], expected: isId(v) ? [1] : [2] })),
    // put: explicit ids and placements are checked before anything is queued; a replica id derived
    // from a valid chunk id can still be too long, and is refused like any invalid replica (exit 1).
    fc.tuple(id, arg(nearValid.id())).map(([chunkId, node]) => ({ args: ['put', file, '--chunk-id', chunkId, '--replica', `${node}:aws`, ...config], expected: !isId(chunkId) || !isId(node) ? [2] : isId(`${chunkId}_replica_0`) ? [0] : [1] })),
    fc.tuple(hostileArg, hostileArg).map(([node, cloud]) => ({ args: ['put', file, '--replica', `${node}:${cloud}`, ...config], expected: isId(node) && isId(cloud) ? [0, 1] : [2] })),
    hostileArg.map((v) => ({ args: ['put', file, '--replica', v, ...config], expected: [2] })).filter((c) => !/^[^:]+:[^:]+$/.test(c.args[3]!)),
    // Numbers: options that would start a long-running command are only fuzzed with values it must refuse.
    badNumber.filter((v) => !isPort(v)).map((v) => ({ args: ['serve', '--port', v, ...config], expected: [2] })),
    badNumber.filter((v) => !isPort(v)).map((v) => ({ args: ['worker', '--metrics-port', v, ...config], expected: [2] })),
    fc.tuple(fc.constantFrom('--chunks', '--size', '--replicas'), badNumber).filter(([, v]) => !isPositiveInteger(v)).map(([o, v]) => ({ args: ['demo', o, v, ...config], expected: [2] })),
    badNumber.filter((v) => !isPositiveInteger(v)).map((v) => ({ args: ['put', file, '--replica', 'n1:aws', '--wait', '--timeout', v, ...config], expected: [2] })),
    hostileArg.filter((h) => h.trim() !== '' && !isLoopback(h)).map((h) => ({ args: ['serve', '--host', h, ...config], expected: [2] })),
    // Config paths that are not config files, unknown commands and options.
    fc.oneof(hostileArg, fc.constantFrom('/etc/passwd', '/dev/null', '/proc/self/environ', '/', '.', '/nonexistent/x.yml')).map((c) => ({ args: ['stats', '--config', c], expected: [2] })).filter((c) => c.args[2] !== '' && c.args[2] !== '/dev/null'),
    hostileArg.filter((c) => !['worker', 'put', 'get', 'checkpoint', 'stats', 'cleanup', 'compress', 'scrub', 'reindex', 'serve', 'dashboard', 'demo', 'help'].includes(c) && !c.startsWith('-')).map((c) => ({ args: [c, ...config], expected: [2] })),
    hostileArg.map((o) => ({ args: ['stats', `--${o.replace(/^-+/, '')}`, ...config], expected: [2] })).filter((c) => !['--json', '--config', '--pretty', '--help', '--'].includes(c.args[1]!) && !c.args[1]!.startsWith('--config=')),
  );
}

/** CLI cases per run: each is a process start (seconds), so few by default. */
const CLI_RUNS = runsOf(9, 0.002);

function expectWellBehaved(run: CliRun, c: CliCase, context: string): void {
  expect(run.signal, `${context}: killed by a signal`).toBeNull();
  expect(c.expected, `${context}: exit ${run.code}; stderr: ${run.stderr.slice(0, 600)}`).toContain(run.code);
  if (run.code !== 0) {
    // The reason: on stderr, or for replicas put refused, one FAILED line each on stdout.
    expect(/chunkvault: \S/.test(run.stderr) || /^FAILED \S+: \S/m.test(run.stdout), `${context}: no reason given; stdout: ${run.stdout.slice(0, 300)}`).toBe(true);
    expect(run.stderr, `${context}: a stack trace`).not.toMatch(/^\s+at .+[:(]\d+:\d+\)?$/m);
  }
}

describe('chunkvault CLI with hostile arguments (real processes)', () => {
  let sandbox: Sandbox;
  let file: string;

  beforeAll(async () => {
    sandbox = await makeSandbox();
    file = path.join(sandbox.watched, 'input', 'chunk.bin');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, 'hostile cli input');
  });

  afterAll(async () => {
    await sandbox?.cleanup();
  });

  it('exits 2 with a reason for bad usage, never a crash', async () => {
    const before = await sandbox.snapshot();
    const { seed } = fuzzParameters(0);
    const cases = fc.sample(cliCase(sandbox.env.configPath, file), { seed, numRuns: CLI_RUNS });
    const codes: Record<string, number> = {};
    // Three at a time: each case is a whole Node process (tsx), most of the cost here.
    for (let i = 0; i < cases.length; i += 3) {
      const batch = cases.slice(i, i + 3);
      const runs = await Promise.all(batch.map((c) => runCli(c.args, { LOG_LEVEL: 'silent' })));
      for (const [k, run] of runs.entries()) {
        const c = batch[k]!;
        codes[String(run.code)] = (codes[String(run.code)] ?? 0) + 1;
        expectWellBehaved(run, c, `case ${i + k} (seed ${seed}): chunkvault ${show(c.args)}`);
      }
    }
    // put with valid ids queues chunks: they stay in the staging dir (no worker runs here), never elsewhere.
    expect(await sandbox.escapedSince(before)).toEqual([]);
    console.info(`cli fuzz: ${cases.length} cases, exit codes ${JSON.stringify(codes)}`);
  }, timeoutFor(CLI_RUNS, 4000));

  it('regression: ids, placements and ports given as arguments are checked as usage (exit 2)', async () => {
    const config = ['--config', sandbox.env.configPath];
    const cases: CliCase[] = [
      { args: ['checkpoint', 'show', '../../etc/passwd', ...config], expected: [2] },
      { args: ['put', file, '--chunk-id', '../escape', '--replica', 'n1:aws', ...config], expected: [2] },
      { args: ['put', file, '--replica', '../../n1:aws', ...config], expected: [2] },
      { args: ['serve', '--port', '70000', ...config], expected: [2] },
      { args: ['worker', '--metrics-port', '65536', ...config], expected: [2] },
    ];
    for (let i = 0; i < cases.length; i += 3) {
      const batch = cases.slice(i, i + 3);
      const runs = await Promise.all(batch.map((c) => runCli(c.args, { LOG_LEVEL: 'silent' })));
      for (const [k, run] of runs.entries()) expectWellBehaved(run, batch[k]!, show(batch[k]!.args));
    }
  });
});
