/**
 * Faults of a local disk, made for real (the suite runs as root): a small tmpfs mounted under
 * a backend directory that fills up or is remounted read-only, a directory made immutable
 * (`chattr +i`: EPERM even for root, who bypasses permission bits), and stored replica files
 * damaged in place the way bit rot, a torn copy or a careless `rm` would.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, open, readFile, truncate, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Rng } from './workload.js';

/** A tmpfs of `sizeBytes` mounted at `dir` (created if missing). */
export class TmpfsMount {
  readonly dir: string;
  #mounted = true;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async mount(dir: string, sizeBytes: number): Promise<TmpfsMount> {
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', dir]);
    return new TmpfsMount(dir);
  }

  /**
   * Read-only from now on: every create, write, rename or unlink fails with EROFS. The kernel
   * refuses (EBUSY) while a file is open for writing, as one is during most writes: tried
   * again until a moment between two writes.
   */
  async readOnly(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        execFileSync('mount', ['-o', 'remount,ro', this.dir], { stdio: 'pipe' });
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(1);
      }
    }
  }

  writable(): void {
    execFileSync('mount', ['-o', 'remount,rw', this.dir]);
  }

  /** Fills the free space with a file named `name` (ENOSPC for the next writer); returns its size. */
  async fill(name = 'filler'): Promise<number> {
    const file = await open(path.join(this.dir, name), 'w');
    const block = Buffer.alloc(64 * 1024, 0x5a);
    let written = 0;
    try {
      for (;;) {
        try {
          written += (await file.write(block)).bytesWritten;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
      // The last partial block: fill to the byte.
      for (let size = 32 * 1024; size >= 1; size = Math.floor(size / 2)) {
        try {
          written += (await file.write(block.subarray(0, size))).bytesWritten;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
        }
      }
    } finally {
      await file.close();
    }
    return written;
  }

  async free(name = 'filler'): Promise<void> {
    await unlink(path.join(this.dir, name));
  }

  unmount(): void {
    if (!this.#mounted) return;
    this.#mounted = false;
    execFileSync('umount', ['-l', this.dir]);
  }
}

/** Makes `dir` immutable (`chattr +i`): nothing can be created, renamed or removed in it, not even by root. */
export function makeImmutable(dir: string, immutable: boolean): void {
  execFileSync('chattr', [immutable ? '+i' : '-i', dir]);
}

export type DamageKind = 'flip' | 'truncate' | 'delete' | 'extend';
export const DAMAGE_KINDS: readonly DamageKind[] = ['flip', 'truncate', 'delete', 'extend'];

/** What was done to one replica file. */
export interface Damage {
  chunkId: string;
  replicaId: string;
  file: string;
  kind: DamageKind;
  detail: string;
}

/**
 * Damages the file in place: `flip` inverts bits of one byte (size unchanged: only a checksum
 * can tell), `truncate` cuts it short (possibly to nothing), `delete` removes it, `extend`
 * appends bytes.
 */
export async function damageFile(file: string, kind: DamageKind, rng: Rng): Promise<string> {
  switch (kind) {
    case 'flip': {
      const bytes = await readFile(file);
      if (bytes.byteLength === 0) throw new Error(`cannot flip a byte of the empty file ${file}`);
      const offset = rng.int(0, bytes.byteLength - 1);
      const mask = rng.int(1, 255);
      bytes[offset] = bytes[offset]! ^ mask;
      // Rewritten in place (same inode), as a medium would return it.
      const handle = await open(file, 'r+');
      try {
        await handle.write(bytes, offset, 1, offset);
      } finally {
        await handle.close();
      }
      return `byte ${offset} ^ 0x${mask.toString(16)}`;
    }
    case 'truncate': {
      const bytes = await readFile(file);
      const length = rng.int(0, Math.max(0, bytes.byteLength - 1));
      await truncate(file, length);
      return `cut to ${length} of ${bytes.byteLength} bytes`;
    }
    case 'delete':
      await unlink(file);
      return 'deleted';
    case 'extend': {
      const extra = Buffer.alloc(rng.int(1, 64), rng.int(0, 255));
      await writeFile(file, extra, { flag: 'a' });
      return `${extra.byteLength} bytes appended`;
    }
  }
}
