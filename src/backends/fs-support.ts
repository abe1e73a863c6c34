/** Small helpers shared by the code that works on local files. */
import { hostname } from 'node:os';

/** Whether `error` is a Node.js system error with this errno code (ENOENT, EEXIST...). */
export function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Whether a process with this pid runs on this host (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isErrno(error, 'EPERM');
  }
}

/** Names of files being written start with this; sweeps remove those of dead writers. */
export const TEMP_MARK = '.cvtmp~';
const HOST = hostname();
const PROCESS_TAG = Date.now().toString(36);
let tempCounter = 0;

/**
 * A temp file name for `finalName`, unique on this host: it carries the writer's pid and
 * host (so a sweep can tell whether its writer lives), the process's start time (a reused
 * pid never repeats a name) and a counter.
 */
export function tempNameFor(finalName: string): string {
  tempCounter += 1;
  // The final name is only there for people looking at the directory: cut to what a file
  // name can hold (255 bytes; the prefix alone is unique).
  return `${TEMP_MARK}${process.pid}~${HOST}~${PROCESS_TAG}-${tempCounter.toString(36)}~${finalName}`.slice(0, 255);
}
