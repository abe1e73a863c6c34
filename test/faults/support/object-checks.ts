/**
 * The object-level checks behind the invariant checker (invariants.ts): re-reading an object
 * against its catalog record, a sidecar against the record, and walking directories for files
 * and temp files.
 */
import path from 'node:path';
import { opendir } from 'node:fs/promises';
import type { Backend } from '../../../src/backends/backend.js';
import type { ReplicaRecord } from '../../../src/domain/types.js';
import { describeError } from '../../../src/errors.js';
import { checksumOfStream } from '../../../src/integrity/checksum.js';
import { decoded } from '../../../src/integrity/codecs.js';
import type { Sidecar } from '../../../src/catalog/sidecar.js';

/** The local backend's temp-file mark (src/backends/fs-support.ts, TEMP_MARK). */
const TEMP_MARK = '.cvtmp~';

/** Re-reads an object and checks it against its record: size on the backend, then the decoded bytes' checksum. */
export async function verifyObject(backend: Backend, key: string, record: ReplicaRecord): Promise<string | undefined> {
  try {
    const head = await backend.head(key);
    if (!head) return 'listed but gone on head';
    if (head.sizeBytes !== record.storedBytes) return `${head.sizeBytes} bytes on the backend, the catalog records ${record.storedBytes}`;
    const actual = await checksumOfStream(decoded(await backend.get(key), record.codec), record.algorithm);
    if (actual.sizeBytes !== record.sizeBytes) return `decodes to ${actual.sizeBytes} bytes, the chunk has ${record.sizeBytes}`;
    if (actual.checksum !== record.checksum) return `checksum ${actual.checksum}, the catalog records ${record.checksum}`;
    return undefined;
  } catch (error) {
    return `unreadable: ${describeError(error)}`;
  }
}

export function compareMetadata(
  sidecar: Pick<Sidecar, 'path' | 'checksum' | 'sizeBytes' | 'storedBytes' | 'codec' | 'chunkId' | 'replicaId'>, dataKey: string, record: ReplicaRecord,
): string | undefined {
  const mismatches: string[] = [];
  if (sidecar.path !== dataKey) mismatches.push(`path ${sidecar.path}`);
  if (sidecar.checksum !== record.checksum) mismatches.push(`checksum ${sidecar.checksum}`);
  if (sidecar.sizeBytes !== record.sizeBytes) mismatches.push(`sizeBytes ${sidecar.sizeBytes}`);
  if ((sidecar.storedBytes ?? sidecar.sizeBytes) !== record.storedBytes) mismatches.push(`storedBytes ${sidecar.storedBytes}`);
  if (sidecar.codec !== record.codec) mismatches.push(`codec "${sidecar.codec}"`);
  if (sidecar.chunkId !== record.chunkId || sidecar.replicaId !== record.replicaId) mismatches.push(`ids ${sidecar.chunkId}/${sidecar.replicaId}`);
  return mismatches.length ? `metadata disagrees with the catalog: ${mismatches.join(', ')}` : undefined;
}

/** The chunk and replica ids a data key names by its file name (<chunkId>@<replicaId>.dat...), if it is one. */
export function idsOfDataKey(key: string): { chunkId: string; replicaId: string } | undefined {
  const name = key.split('/').at(-1) ?? '';
  const at = name.indexOf('@');
  const dat = name.indexOf('.dat', at);
  return at > 0 && dat > at ? { chunkId: name.slice(0, at), replicaId: name.slice(at + 1, dat) } : undefined;
}

/** The replica record a data key belongs to by its file name, if any. */
export function ownerOf(key: string, chunks: ReadonlyMap<string, { replicas: ReplicaRecord[] }>): ReplicaRecord | undefined {
  const ids = idsOfDataKey(key);
  return ids && chunks.get(ids.chunkId)?.replicas.find((r) => r.replicaId === ids.replicaId);
}

export async function readAll(backend: Backend, key: string): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of await backend.get(key)) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

/** Every file under `root` (relative paths); none when it does not exist. */
export async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  const pending = [root];
  while (pending.length) {
    const dir = pending.pop()!;
    let entries;
    try {
      entries = await opendir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    for await (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) pending.push(full);
      else out.push(path.relative(root, full));
    }
  }
  return out;
}

export async function tempFilesUnder(root: string): Promise<string[]> {
  return (await filesUnder(root)).filter((file) => path.basename(file).startsWith(TEMP_MARK));
}

export async function forEachLimited<T>(items: readonly T[], limit: number, body: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await body(items[next++]!);
  }));
}
