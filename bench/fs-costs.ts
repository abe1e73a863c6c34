/**
 * What single filesystem operations cost on this machine (CPU and wall time per op, sync
 * calls so nothing else is measured), and what async (libuv thread pool) calls add. Explains
 * the small-file results of `npm run bench`: creating a file costs far more here than
 * writing, renaming or fsyncing it.
 *
 *   node --import tsx bench/fs-costs.ts [--dir=/path/on/the/disk/under/test] [--count=1000]
 */
import { closeSync, fdatasyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const flags = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const count = Number(flags.count ?? 1000);
const dir = mkdtempSync(path.join(flags.dir ?? tmpdir(), 'cv-fs-costs-'));
const block = Buffer.alloc(4096, 1);

function measure(label: string, n: number, run: (i: number) => void): void {
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < n; i++) run(i);
  const used = process.cpuUsage(cpu);
  console.log(`${label.padEnd(44)} ${(((performance.now() - started) / n) * 1000).toFixed(0).padStart(6)} us wall ${((used.user + used.system) / n).toFixed(0).padStart(6)} us CPU`);
}

try {
  const fds: number[] = [];
  measure('create a file (open O_CREAT|O_EXCL)', count, (i) => fds.push(openSync(path.join(dir, `f${i}`), 'wx')));
  measure('write 4 KiB to it', count, (i) => writeSync(fds[i]!, block));
  measure('fdatasync it', Math.min(count, 200), (i) => fdatasyncSync(fds[i]!));
  measure('close it', count, (i) => closeSync(fds[i]!));
  measure('rename it', count, (i) => renameSync(path.join(dir, `f${i}`), path.join(dir, `g${i}`)));
  measure('read it whole (readFileSync)', count, (i) => readFileSync(path.join(dir, `g${i}`)));
  measure('open, overwrite 4 KiB, close (no create)', count, (i) => {
    const fd = openSync(path.join(dir, `g${i}`), 'r+');
    writeSync(fd, block, 0, block.length, 0);
    closeSync(fd);
  });
  measure('mkdir', count, (i) => mkdirSync(path.join(dir, `d${i}`)));
  measure('mkdir -p of an existing directory', count, (i) => mkdirSync(path.join(dir, `d${i}`), { recursive: true }));
  measure('stat', count, (i) => statSync(path.join(dir, `g${i}`)));
  measure('unlink', count, (i) => unlinkSync(path.join(dir, `g${i}`)));
  const appendFd = openSync(path.join(dir, 'log'), 'a');
  measure('append 300 bytes to one open file', count, () => writeSync(appendFd, block.subarray(0, 300)));
  closeSync(appendFd);

  // The same open/read/close through fs/promises (the thread pool), 20 at a time.
  const target = path.join(dir, 'log');
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: 20 }, async () => {
    for (let i = 0; i < count / 20; i++) {
      const handle = await open(target, 'r');
      await handle.read(Buffer.alloc(4096), 0, 4096, 0);
      await handle.close();
    }
  }));
  const used = process.cpuUsage(cpu);
  console.log(`${'open+read+close via fs/promises (x20)'.padEnd(44)} ${(((performance.now() - started) / count) * 1000).toFixed(0).padStart(6)} us wall ${((used.user + used.system) / count).toFixed(0).padStart(6)} us CPU`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
