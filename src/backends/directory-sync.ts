/**
 * Group commit of directory fsyncs. A rename is durable once its directory has been fsynced
 * by an fsync that *started after* the rename. Concurrent writers into one directory (the
 * replicas of a chunk, every staged chunk) therefore share fsyncs: a caller
 * joins the next fsync not yet started, or starts one when none is running. One fsync per
 * directory is in flight at a time; whoever arrives while it runs is covered by the next.
 * An fsync that fails rejects every caller it covered (their writes then fail and retry).
 */
import { open } from 'node:fs/promises';

interface Lane {
  /** The fsync in flight, if any. */
  running?: Promise<void>;
  /** The next fsync, not started yet: every caller until it starts joins it. */
  next?: Promise<void>;
}

const lanes = new Map<string, Lane>();

/** Resolves once an fsync of `dir` that started after this call has completed. */
export function syncDirectory(dir: string): Promise<void> {
  let lane = lanes.get(dir);
  if (!lane) {
    lane = {};
    lanes.set(dir, lane);
  }
  if (lane.next) return lane.next;
  const current = lane;
  const previous = current.running ?? Promise.resolve();
  const next = previous
    .catch(() => undefined)
    .then(() => {
      current.next = undefined;
      const running = fsyncDirectory(dir);
      current.running = running;
      void running
        .catch(() => undefined)
        .then(() => {
          if (current.running === running && !current.next) lanes.delete(dir);
        });
      return running;
    });
  current.next = next;
  return next;
}

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
