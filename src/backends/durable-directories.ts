/**
 * The directories a local backend writes into, made durable before a file is renamed into
 * them: mkdir -p that also fsyncs the parent of every directory it creates, so new paths
 * survive a crash. Writers in this process that need the same new directory wait for its
 * creator's fsyncs, so none of them renames into a directory that is not durable yet.
 * Directories made once are remembered, so most writes skip mkdir.
 */
import path from 'node:path';
import { syncDirectory } from './directory-sync.js';
import { isErrno, mkdirs } from './fs-support.js';

/** Bound on the remembered directories (partitions, and per-chunk directories of ids too long for one file name). */
const REMEMBERED_MAX = 4096;

export class DurableDirectories {
  readonly #creating = new Map<string, Promise<void>>();
  readonly #known = new Set<string>();

  /** Makes sure `dir` exists and is durable; at once when it was made before. Throws the fs error when it cannot be made. */
  async ensure(dir: string): Promise<void> {
    if (this.#known.has(dir)) return;
    await this.#create(dir);
    if (this.#known.size >= REMEMBERED_MAX) this.#known.clear();
    this.#known.add(dir);
  }

  /**
   * Runs `create`, which makes a file in `dir`, once `dir` is ensured. When it fails with
   * ENOENT (`dir` was removed since it was remembered), makes `dir` again and runs `create`
   * once more; its second failure is thrown.
   */
  async creatingIn<T>(dir: string, create: () => T | Promise<T>): Promise<T> {
    await this.ensure(dir);
    try {
      return await create();
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
      this.#known.delete(dir);
      await this.ensure(dir);
      return create();
    }
  }

  #create(dir: string): Promise<void> {
    const inProgress = this.#creating.get(dir);
    if (inProgress) return inProgress;
    const creating = (async () => {
      const firstCreated = await mkdirs(dir);
      if (firstCreated === undefined) return;
      const created: string[] = [];
      for (let current = dir; current.length >= firstCreated.length; current = path.dirname(current)) created.push(current);
      await Promise.all(created.map((made) => syncDirectory(path.dirname(made))));
    })().finally(() => this.#creating.delete(dir));
    this.#creating.set(dir, creating);
    return creating;
  }
}
