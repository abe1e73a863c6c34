/**
 * A full disk where a backend writes: a 64 KiB tmpfs mounted on a directory and filled, so
 * every replica placed under it fails with ENOSPC (retryable, then failed for good). Needs root.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Mounts the full tmpfs on `dir` (made if missing); returns its unmount. */
export async function mountFullDisk(dir: string): Promise<() => void> {
  await mkdir(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  await writeFile(path.join(dir, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
  return () => execFileSync('umount', ['-l', dir]);
}
