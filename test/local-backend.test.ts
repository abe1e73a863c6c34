/**
 * The backend contract run against the local filesystem, plus what only a filesystem has:
 * temp files beside the final path, paths that must stay under basePath, and the sweep of
 * temp files left by writers that died.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalBackend } from '../src/backends/local.backend.js';
import { syncDirectory } from '../src/backends/directory-sync.js';
import { BackendIoError, ChecksumMismatchError, InvalidInputError, NotFoundError, SizeMismatchError } from '../src/errors.js';
import { UNSAFE_KEYS, digestOf, itBehavesLikeABackend, keysOf, optionsFor, readAll, rejectionOf, streamOf } from './backend-contract.suite.js';

const TEMP_MARK = '.cvtmp~';
const STALE_TEMP_AFTER_MS = 60 * 60_000;

itBehavesLikeABackend('local filesystem', async () => {
  const basePath = await mkdtemp(path.join(tmpdir(), 'chunkvault-local-contract-'));
  const backend = new LocalBackend({ basePath, staleTempAfterMs: STALE_TEMP_AFTER_MS });
  return {
    backend,
    cleanup: async () => {
      await backend.close();
      await rm(basePath, { recursive: true, force: true });
    },
  };
});

describe('local filesystem backend', () => {
  /** Holds basePath and a sibling that no key may ever reach. */
  let root: string;
  let basePath: string;
  let backend: LocalBackend;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'chunkvault-local-'));
    basePath = path.join(root, 'base');
    await mkdir(basePath);
    backend = new LocalBackend({ basePath, staleTempAfterMs: STALE_TEMP_AFTER_MS });
  });

  afterEach(async () => {
    await backend.close();
    await rm(root, { recursive: true, force: true });
  });

  it('checksumOf hashes the file as it is on disk now, large (on a hashing thread) and small', async () => {
    for (const size of [3 * (1 << 20) + 5, 9_000]) {
      const key = `verify/${size}.bin`;
      const bytes = randomBytes(size);
      await backend.put(key, bytes, optionsFor(bytes, 'sha256'));
      const onDisk = Buffer.from(bytes);
      onDisk.writeUInt8(onDisk.readUInt8(size - 1) ^ 0xff, size - 1); // the medium changed the last byte after the put
      await writeFile(backend.pathOf(key), onDisk);
      expect(await backend.checksumOf(key, 'sha256')).toEqual({ checksum: createHash('sha256').update(onDisk).digest('hex'), sizeBytes: size });
    }
  });

  it('returns the digest of its read-back of a large object, which is what reads back from the final file', async () => {
    const bytes = randomBytes(3 * (1 << 20) + 5);
    const receipt = await backend.put('receipt/large.bin', streamOf(bytes, 100_000), optionsFor(bytes, 'sha256'));
    expect(receipt?.readBack).toMatchObject({ checksum: digestOf(bytes, 'sha256'), sizeBytes: bytes.byteLength });
    expect(await backend.checksumOf('receipt/large.bin', 'sha256')).toEqual({ checksum: digestOf(bytes, 'sha256'), sizeBytes: bytes.byteLength });
  });

  describe('writeHashed', () => {
    it('hashes a temp file as it reads back; place makes it durable under a key, discard leaves nothing', async () => {
      const bytes = randomBytes(2 * (1 << 20) + 3);
      const written = await backend.writeHashed(bytes, 'sha256', 'chunk-a');
      expect(written).toMatchObject({ checksum: digestOf(bytes, 'sha256'), sizeBytes: bytes.byteLength });
      expect(await tempFilesUnder(basePath)).toHaveLength(1);
      await written.place('staged/chunk-a@1');
      expect(await readFile(backend.pathOf('staged/chunk-a@1'))).toEqual(bytes);
      expect(await tempFilesUnder(basePath)).toEqual([]);
      await expect(written.place('staged/chunk-a@2')).rejects.toThrow(/placed or discarded already/);

      const dropped = await backend.writeHashed(bytes, 'md5', 'chunk-b');
      expect(dropped.checksum).toBe(digestOf(bytes, 'md5'));
      await dropped.discard();
      expect(await filesUnder(basePath)).toEqual(['staged/chunk-a@1']);
    });
  });

  describe('putFile', () => {
    let source: string;
    let bytes: Buffer;
    beforeEach(async () => {
      bytes = randomBytes(2 * (1 << 20) + 3);
      source = path.join(root, 'staged.bin');
      await writeFile(source, bytes);
    });

    it('stores a copy of a local file made by the kernel: its own file, the source untouched', async () => {
      const receipt = await backend.putFile('copies/a.bin', source, optionsFor(bytes, 'md5'));
      expect(receipt.readBack).toMatchObject({ checksum: digestOf(bytes, 'md5'), sizeBytes: bytes.byteLength });
      expect(await readFile(backend.pathOf('copies/a.bin'))).toEqual(bytes);
      const [copy, original] = [await stat(backend.pathOf('copies/a.bin')), await stat(source)];
      expect(copy.ino).not.toBe(original.ino);
      expect(original.nlink).toBe(1);
      expect(await tempFilesUnder(basePath)).toEqual([]);
    });

    it('with link, is the source file itself (no byte written, none read back) and stays when the source is removed', async () => {
      const receipt = await backend.putFile('links/a.bin', source, { ...optionsFor(bytes, 'sha256'), link: true });
      expect(receipt).toEqual({ linkedToCheckedSource: true });
      const [linked, original] = [await stat(backend.pathOf('links/a.bin')), await stat(source)];
      expect(linked.ino).toBe(original.ino);
      expect(original.nlink).toBe(2);
      await rm(source);
      expect(await readFile(backend.pathOf('links/a.bin'))).toEqual(bytes);
    });

    it('stores nothing when the file does not match, and says the source is gone when it is', async () => {
      const wrong = { ...optionsFor(bytes, 'sha256'), checksum: '0'.repeat(64) };
      expect(await rejectionOf(backend.putFile('rejected/a.bin', source, wrong))).toBeInstanceOf(ChecksumMismatchError);
      // A link's source was checked when it was written (a staged file): only its size is checked again.
      for (const link of [false, true]) {
        const short = { ...optionsFor(bytes, 'sha256'), sizeBytes: bytes.byteLength + 1, link };
        expect(await rejectionOf(backend.putFile('rejected/a.bin', source, short))).toBeInstanceOf(SizeMismatchError);
      }
      expect(await filesUnder(basePath)).toEqual([]);
      expect((await stat(source)).nlink).toBe(1);
      const gone = await rejectionOf(backend.putFile('rejected/b.bin', path.join(root, 'never-staged.bin'), optionsFor(bytes, 'md5')));
      expect(gone).toBeInstanceOf(NotFoundError);
      expect(await tempFilesUnder(basePath)).toEqual([]);
    });
  });

  it('stores the object at basePath joined with the key segments and leaves no temp file behind', async () => {
    const key = 'datasets/web/shard-0001/chunk-000001.bin';
    const bytes = Buffer.from('replica bytes');
    await backend.put(key, streamOf(bytes, 4), optionsFor(bytes, 'md5'));

    const finalPath = path.join(basePath, ...key.split('/'));
    expect(backend.pathOf(key)).toBe(finalPath);
    expect(await readFile(finalPath)).toEqual(bytes);
    expect(await tempFilesUnder(basePath)).toEqual([]);
  });

  it('leaves no temp file behind when a put is rejected', async () => {
    const bytes = Buffer.alloc(3 * (1 << 20), 7);
    const wrongChecksum = { ...optionsFor(bytes, 'sha256'), checksum: '0'.repeat(64) };
    const tooShort = { ...optionsFor(bytes, 'md5'), sizeBytes: bytes.byteLength + 10 };
    const tooLong = { ...optionsFor(bytes, 'md5'), sizeBytes: 10 };

    await rejectionOf(backend.put('rejected/checksum.bin', streamOf(bytes, 100_000), wrongChecksum));
    await rejectionOf(backend.put('rejected/short.bin', bytes, tooShort));
    await rejectionOf(backend.put('rejected/long.bin', streamOf(bytes, 100_000), tooLong));

    expect(await tempFilesUnder(basePath)).toEqual([]);
    expect(await filesUnder(basePath)).toEqual([]);
  });

  it('keeps an in-flight write in a hidden temp file that neither list nor head shows', async () => {
    const key = 'in-flight/chunk.bin';
    // Larger than the bodies written at once (256 KiB), so this one streams into its temp file.
    const bytes = Buffer.alloc(640_000, 1);
    const body = new PassThrough();
    const put = backend.put(key, body, optionsFor(bytes, 'md5'));
    body.write(bytes.subarray(0, 32_000));

    const temp = await pollUntil(async () => (await tempFilesUnder(basePath))[0], 'a temp file to appear');
    expect(path.basename(temp)).toMatch(new RegExp(`^\\.cvtmp~${process.pid}~${escapeRegExp(hostname())}~[0-9a-z]+-[0-9a-z]+~chunk\\.bin$`));
    expect(path.dirname(temp)).toBe('in-flight');
    expect(await backend.head(key)).toBeUndefined();
    expect(await keysOf(backend, '')).toEqual([]);
    expect(await backend.usage()).toMatchObject({ totalSizeBytes: 0, fileCount: 0 });

    body.end(bytes.subarray(32_000));
    await put;
    expect(await tempFilesUnder(basePath)).toEqual([]);
    expect(await readAll(await backend.get(key))).toEqual(bytes);
  });

  it.each(['../escape', 'a/../../escape', '/abs/path', 'a//b'])('pathOf(%j) throws InvalidInputError', (key) => {
    expect(() => backend.pathOf(key)).toThrow(InvalidInputError);
  });

  it('writes into a directory again after it was removed since an earlier put', async () => {
    const bytes = Buffer.from('first');
    await backend.put('gone/soon/a.bin', bytes, optionsFor(bytes, 'md5'));
    await rm(path.join(basePath, 'gone'), { recursive: true });

    const again = Buffer.from('second');
    await backend.put('gone/soon/b.bin', again, optionsFor(again, 'sha256'));
    expect(await readFile(path.join(basePath, 'gone', 'soon', 'b.bin'))).toEqual(again);
  });

  it('fails a put on a read-only filesystem at once, saying so (not "no such file", which reads as retry later)', async () => {
    // Found by the permission-errors fault scenario: Node's recursive mkdir reports ENOENT on
    // a read-only filesystem, so writes into a new directory there were retried and then
    // failed with a misleading reason.
    const small = Buffer.from('read-only');
    const large = Buffer.alloc(300 * 1024, 7); // the streaming path
    const mountPoint = path.join(basePath, 'ro');
    await mkdir(mountPoint);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', mountPoint]).status).toBe(0);
    try {
      for (const [key, bytes] of [['ro/new/deeper/b.bin', small], ['ro/new/c.bin', large]] as const) {
        const error = await rejectionOf(backend.put(key, bytes, optionsFor(bytes, 'md5')));
        expect(error, key).toBeInstanceOf(BackendIoError);
        expect(error, key).toMatchObject({ retryable: false, message: expect.stringMatching(/EROFS: read-only file system/) });
      }
    } finally {
      spawnSync('umount', ['-l', mountPoint]);
    }
  });

  it('lands every one of many concurrent puts into one new directory (they share directory fsyncs)', async () => {
    const bodies = Array.from({ length: 64 }, (_, i) => Buffer.alloc(1000 + i, i));
    await Promise.all(bodies.map((bytes, i) => backend.put(`shared/dir/obj-${i}.bin`, bytes, optionsFor(bytes, 'md5'))));
    for (const [i, bytes] of bodies.entries()) expect(await readFile(path.join(basePath, 'shared', 'dir', `obj-${i}.bin`))).toEqual(bytes);
    expect(await tempFilesUnder(basePath)).toEqual([]);
  });

  it('fails every caller that shared a directory fsync which failed', async () => {
    const missing = path.join(root, 'no-such-dir');
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => syncDirectory(missing)));
    expect(outcomes.map((o) => o.status)).toEqual(Array(5).fill('rejected'));
    await mkdir(missing);
    await expect(syncDirectory(missing)).resolves.toBeUndefined();
  });

  it('never writes outside basePath, whatever the key', async () => {
    await writeFile(path.join(root, 'neighbour.bin'), 'untouched');
    const before = await snapshot(root);
    const bytes = Buffer.from('escaping bytes');

    for (const key of [...UNSAFE_KEYS, '../base-sibling/escape', 'a/../../../escape']) {
      const error = await rejectionOf(backend.put(key, bytes, optionsFor(bytes, 'md5')));
      expect(error).toBeInstanceOf(InvalidInputError);
    }

    expect(await snapshot(root)).toEqual(before);
    expect(await readFile(path.join(root, 'neighbour.bin'), 'utf8')).toBe('untouched');
  });

  describe('sweepIncompleteWrites', () => {
    const host = hostname();

    it('removes the temp file of a dead writer on this host', async () => {
      const deadPid = pidOfExitedProcess();
      const temp = await writeTemp(`shard-1/${TEMP_MARK}${deadPid}~${host}~a1b2c3~chunk-1.bin`);

      expect(await backend.sweepIncompleteWrites()).toBe(1);

      expect(await exists(temp)).toBe(false);
    });

    it('keeps the fresh temp file of a live writer on this host', async () => {
      const temp = await writeTemp(`shard-1/${TEMP_MARK}${process.pid}~${host}~d4e5f6~chunk-1.bin`);

      expect(await backend.sweepIncompleteWrites()).toBe(0);

      expect(await exists(temp)).toBe(true);
    });

    it('keeps a fresh temp file of a writer on another host, whose pid cannot be checked', async () => {
      const temp = await writeTemp(`${TEMP_MARK}${pidOfExitedProcess()}~${host}-elsewhere~0a0b0c~chunk-1.bin`);

      expect(await backend.sweepIncompleteWrites()).toBe(0);

      expect(await exists(temp)).toBe(true);
    });

    it('removes any temp file older than staleTempAfterMs', async () => {
      const otherHost = await writeTemp(`shard-2/${TEMP_MARK}4242~${host}-elsewhere~1a2b3c~chunk-2.bin`);
      const unparsable = await writeTemp(`shard-2/${TEMP_MARK}not-a-pid~chunk-3.bin`);
      const olderThanStale = new Date(Date.now() - STALE_TEMP_AFTER_MS - 60_000);
      await utimes(otherHost, olderThanStale, olderThanStale);
      await utimes(unparsable, olderThanStale, olderThanStale);
      const fresh = await writeTemp(`shard-2/${TEMP_MARK}4242~${host}-elsewhere~4d5e6f~chunk-4.bin`);

      expect(await backend.sweepIncompleteWrites()).toBe(2);

      expect(await exists(otherHost)).toBe(false);
      expect(await exists(unparsable)).toBe(false);
      expect(await exists(fresh)).toBe(true);
    });

    it('leaves complete objects in place, and list never returns temp files', async () => {
      const bytes = Buffer.from('complete');
      await backend.put('shard-1/chunk-1.bin', bytes, optionsFor(bytes, 'sha256'));
      await writeTemp(`shard-1/${TEMP_MARK}${pidOfExitedProcess()}~${host}~a1b2c3~chunk-2.bin`);
      await writeTemp(`shard-1/${TEMP_MARK}${process.pid}~${host}~d4e5f6~chunk-3.bin`);

      expect(await keysOf(backend, '')).toEqual(['shard-1/chunk-1.bin']);
      expect(await keysOf(backend, 'shard-1/')).toEqual(['shard-1/chunk-1.bin']);
      expect(await keysOf(backend, `shard-1/${TEMP_MARK}`)).toEqual([]);
      expect(await backend.usage()).toMatchObject({ totalSizeBytes: bytes.byteLength, fileCount: 1 });

      expect(await backend.sweepIncompleteWrites()).toBe(1);

      expect(await readFile(path.join(basePath, 'shard-1', 'chunk-1.bin'))).toEqual(bytes);
      expect(await keysOf(backend, '')).toEqual(['shard-1/chunk-1.bin']);
    });

    /** Writes a half-written temp file at `relative` (under basePath) and returns its path. */
    async function writeTemp(relative: string): Promise<string> {
      const full = path.join(basePath, ...relative.split('/'));
      await mkdir(path.dirname(full), { recursive: true });
      await writeFile(full, 'half a chunk');
      return full;
    }
  });

  /** Paths (relative to `dir`) of every temp file in the tree. */
  async function tempFilesUnder(dir: string): Promise<string[]> {
    return (await filesUnder(dir)).filter((relative) => path.basename(relative).startsWith(TEMP_MARK));
  }
});

/** Relative paths of every regular file under `dir`, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.push(path.relative(dir, path.join(entry.parentPath, entry.name)));
  }
  return files.sort();
}

/** Every path under `dir` with its size and mtime, to show nothing was created or changed. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const relative of (await readdir(dir, { recursive: true })).sort()) {
    const info = await stat(path.join(dir, relative));
    result[relative] = `${info.isDirectory() ? 'dir' : 'file'} ${info.size} ${info.mtimeMs}`;
  }
  return result;
}

/** The pid of a process that has already exited, so no writer can own it. */
function pidOfExitedProcess(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  expect(child.status).toBe(0);
  const pid = child.pid;
  expect(() => process.kill(pid, 0)).toThrow();
  return pid;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** Polls `probe` between event-loop turns until it yields a value, failing after a deadline. */
async function pollUntil<T>(probe: () => Promise<T | undefined>, what: string, deadlineMs = 5_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await nextTurn();
  }
  throw new Error(`timed out waiting for ${what}`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
