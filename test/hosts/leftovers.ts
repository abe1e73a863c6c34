/**
 * What a test process that died without cleaning up (SIGKILL, a crashed runner) leaves behind,
 * found by the owner's pid that every name made here carries (`RUN_ID`, base 36), and removed by
 * the next test process once that pid is gone: temp directories here, and the private Redis
 * (PasswordRedis) and namespaces (Hosts) in their own modules.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** This test process's id in every name it makes. */
export const RUN_ID = process.pid.toString(36);

/** Whether the test process whose RUN_ID is `runId` still runs. */
export function ownerAlive(runId: string): boolean {
  try {
    process.kill(Number.parseInt(runId, 36), 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGKILLs `pid` if it still runs `command` (a pid that has since been reused by something else is left alone). */
export async function killIfRunning(pid: number, command: string): Promise<void> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes(command)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

/** Entries of the temp directory named `<prefix><runId>-...` whose owner is gone, with that run id. */
export async function orphansInTmp(prefix: string): Promise<Array<{ file: string; runId: string }>> {
  const out: Array<{ file: string; runId: string }> = [];
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const runId = name.slice(prefix.length).split('-')[0] ?? '';
    if (/^[0-9a-z]+$/.test(runId) && !ownerAlive(runId)) out.push({ file: path.join(tmpdir(), name), runId });
  }
  return out;
}

/** Removes the temp directories `<prefix><runId>-...` of test processes that are gone. */
export async function sweepTmp(prefix: string): Promise<void> {
  for (const { file } of await orphansInTmp(prefix)) await rm(file, { recursive: true, force: true });
}
