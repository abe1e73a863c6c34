/** The files of a local backend's directory tree, as its listing and its sweep of temp files read them. */
import type { Dirent } from 'node:fs';
import { opendir, stat } from 'node:fs/promises';
import path from 'node:path';
import { TEMP_MARK, isErrno, wrapFsError } from './fs-support.js';

export interface TreeFile {
  /** Its key: the path below `basePath`, '/'-separated. */
  key: string;
  name: string;
  fullPath: string;
  /** A temp file of a write in progress or abandoned (TEMP_MARK). */
  temp: boolean;
  sizeBytes: number;
  modifiedAt: Date;
}

/**
 * Every file under `root` (a directory inside `basePath`, or `basePath` itself); nothing when
 * `root` does not exist. Hand-written, not fs.glob: Node's glob takes a directory it cannot
 * read for an empty one, and a listing that misses files must fail (retention plans deletions
 * from it). A file renamed or removed while the walk passes is skipped.
 */
export async function* walkFiles(basePath: string, root: string): AsyncIterable<TreeFile> {
  const pending = [root];
  while (pending.length) {
    const dir = pending.pop()!;
    let entries: AsyncIterable<Dirent>;
    try {
      entries = await opendir(dir);
    } catch (error) {
      if (isErrno(error, 'ENOENT') && dir === root) return;
      if (isErrno(error, 'ENOTDIR') && dir === root) return;
      throw wrapFsError(error, `list ${dir}`);
    }
    for await (const entry of entries) {
      const fullPath = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        pending.push(fullPath);
      } else if (entry.isFile()) {
        let info;
        try {
          info = await stat(fullPath);
        } catch (error) {
          if (isErrno(error, 'ENOENT')) continue; // renamed or removed while walking
          throw wrapFsError(error, `list ${fullPath}`);
        }
        const key = path.relative(basePath, fullPath).split(path.sep).join('/');
        yield { key, name: entry.name, fullPath, temp: entry.name.startsWith(TEMP_MARK), sizeBytes: info.size, modifiedAt: info.mtime };
      }
    }
  }
}
