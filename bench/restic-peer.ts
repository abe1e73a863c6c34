/**
 * restic as a peer of chunkvault in `npm run bench` (issue 20): the same workload, stored the
 * way a mature tool for many small files stores it. The run writes `count` files of `size`
 * random bytes (each distinct, so restic's deduplication finds nothing to skip; random bytes
 * do not compress, so its default zstd saves nothing either), flushes them, creates one
 * restic repository per replica on the same disk, and then times `restic backup` of the
 * files into every repository, start to exit: `replicas` durable copies of each file, as
 * chunkvault makes `replicas` durable replicas of each chunk. All of it before the clock
 * (files, `restic init`) is untimed, as the limit prepares its data untimed.
 *
 * What a timed backup includes that chunkvault's timing does not: opening the repository,
 * which derives the key with scrypt (restic calibrates it at `init` to take about half a
 * second); `openS` reports it, measured once per run with `restic cat config`.
 *
 * CPU is restic's own, from the kernel: the shell that runs the backups reads its waited-for
 * children's user and system time (cutime, cstime of /proc/<shell>/stat) once they exit.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CLOCK_TICKS_PER_S } from './chunkvault-run.js';

/** How the repositories' backups run: one after the other, or all at once. */
export const RESTIC_MODES = ['concurrent', 'sequential'] as const;
export type ResticMode = (typeof RESTIC_MODES)[number];

export interface ResticSample {
  /** Durable copies (files x repositories) per second, start of the first backup to exit of the last. */
  copiesPerS: number;
  mbPerS: number;
  /** restic's user and system CPU over the timed backups. */
  cpuS: number;
  /** Wall time of opening one repository (key derivation, config read), which each backup pays once. */
  openS: number;
}

/** The path of `restic` on PATH, or undefined when it is not installed. */
export function findRestic(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v restic'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A shell script that runs `restic backup` of $1 into the repositories $2.. (concurrently or
 * in turn), exits non-zero if any backup failed, and prints its /proc stat line last: its
 * cutime and cstime are then restic's CPU, every backup having been waited for.
 */
function backupScript(repositories: number, mode: ResticMode): string {
  const backup = (i: number) => `restic -q -r "$${i + 2}" backup "$1"`;
  const indices = Array.from({ length: repositories }, (_, i) => i);
  const run = mode === 'sequential'
    ? indices.map((i) => `${backup(i)} || exit 1`).join('\n')
    : [...indices.map((i) => `${backup(i)} & p${i}=$!`), ...indices.map((i) => `wait $p${i} || exit 1`)].join('\n');
  return `${run}\ncat /proc/$$/stat\n`;
}

/** The shell's waited-for children's CPU seconds: fields 16 and 17 of its stat line. */
function childrenCpuS(statLine: string): number {
  const fields = statLine.slice(statLine.lastIndexOf(')') + 2).trim().split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_S;
}

export async function runRestic(run: { count: number; size: number; replicas: number; mode: ResticMode }): Promise<ResticSample> {
  const exec = promisify(execFile);
  const dir = await mkdtemp(path.join(tmpdir(), 'cv-restic-'));
  try {
    const files = path.join(dir, 'files');
    await mkdir(files);
    for (let i = 0; i < run.count; i++) await writeFile(path.join(files, `c${i}.dat`), randomBytes(run.size));
    // The files' writeback must not land inside restic's timed writes.
    execFileSync('sync', ['-f', files]);
    await writeFile(path.join(dir, 'password'), randomBytes(16).toString('hex'));
    // A cache of its own per run, as a default restic has one; removed with the rest.
    const env = { ...process.env, RESTIC_PASSWORD_FILE: path.join(dir, 'password'), RESTIC_CACHE_DIR: path.join(dir, 'cache') };
    const repositories = Array.from({ length: run.replicas }, (_, i) => path.join(dir, `repo${i}`));
    for (const repository of repositories) await exec('restic', ['-q', 'init', '-r', repository], { env });

    const t0 = performance.now();
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('sh', ['-c', backupScript(run.replicas, run.mode), 'sh', files, ...repositories], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.on('data', (piece: Buffer) => (stdout += piece.toString()));
      child.once('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`restic backup exited with ${code}`))));
    });
    const elapsedS = (performance.now() - t0) / 1000;

    const open0 = performance.now();
    await exec('restic', ['-q', '-r', repositories[0]!, 'cat', 'config'], { env });
    const openS = (performance.now() - open0) / 1000;
    // Untimed: every repository's snapshot holds every file, or the run did not do the work.
    for (const repository of repositories) {
      const { stdout } = await exec('restic', ['-r', repository, 'ls', 'latest', '--json'], { env, maxBuffer: 1 << 30 });
      const stored = stdout.split('\n').filter((line) => line.includes('"type":"file"')).length;
      if (stored !== run.count) throw new Error(`restic's snapshot in ${repository} holds ${stored} files, not ${run.count}`);
    }
    const copies = run.count * run.replicas;
    return { copiesPerS: copies / elapsedS, mbPerS: (copies * run.size) / 1e6 / elapsedS, cpuS: childrenCpuS(out.trim().split('\n').at(-1)!), openS };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
