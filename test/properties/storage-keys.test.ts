/**
 * Backend keys, for any string: LocalBackend.pathOf either refuses the key (InvalidInputError)
 * or names a path strictly inside the backend's root, whatever unicode normalization the
 * filesystem or a later tool applies to it; the same holds for the keys chunkvault derives
 * from ids (data, metadata, staging), under every partition strategy.
 */
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/backends/local.backend.js';
import { assertSafeKey } from '../../src/backends/storage-key.js';
import { tempNameFor } from '../../src/backends/fs-support.js';
import { InvalidInputError } from '../../src/errors.js';
import { idSchema, replicaIdSchema } from '../../src/domain/ids.js';
import { PARTITION_STRATEGIES } from '../../src/config/config.schema.js';
import { dataKeyOf, metadataKeyOf } from '../../src/storage/storage-layout.js';
import { fuzzParameters, hostileString, nearValid } from './support/hostile.js';

const root = path.join(tmpdir(), 'chunkvault-keys-root', 'base');
const backend = new LocalBackend({ basePath: root, staleTempAfterMs: 60_000 });

/** The form of a key chunkvault itself makes, plus hostile segments. */
const keyLike = fc.oneof(
  hostileString(),
  fc.array(fc.oneof(hostileString(), nearValid.id(), fc.constantFrom('..', '.', '', '_chunkvault', '2026', '\u2025')), { minLength: 1, maxLength: 6 }).map((s) => s.join('/')),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

/** Ids the producer accepts, edges included (longest, dots, dashes). */
const validId = nearValid.id().filter((id) => idSchema.safeParse(id).success);
const validReplicaId = nearValid.id().filter((id) => replicaIdSchema.safeParse(id).success);

/** What is wrong with `full` as a path of `key` under `base` (empty when it is strictly inside it in every normal form). */
function problemsOf(full: string, base: string, key: string): string[] {
  const problems: string[] = [];
  for (const form of [full, full.normalize('NFC'), full.normalize('NFD'), full.normalize('NFKC'), full.normalize('NFKD')]) {
    const resolved = path.resolve(form);
    if (!resolved.startsWith(base + path.sep) || path.relative(base, resolved).split(path.sep).includes('..')) {
      problems.push(`key ${JSON.stringify(key)} -> ${JSON.stringify(resolved)} leaves ${base}`);
    }
  }
  if (full.includes('\u0000')) problems.push(`key ${JSON.stringify(key)} carries a NUL byte into a path`);
  if (full.includes('\\')) problems.push(`key ${JSON.stringify(key)} carries a backslash into a path`);
  return problems;
}

describe('storage keys (property)', () => {
  it('pathOf refuses or stays inside the root, for any string', () => {
    fc.assert(
      fc.property(keyLike, (key) => {
        let full: string;
        try {
          full = backend.pathOf(key);
        } catch (error) {
          expect(error, `key ${JSON.stringify(key)}`).toBeInstanceOf(InvalidInputError);
          expect((error as Error).message).toMatch(/storage key/);
          return;
        }
        const problems = problemsOf(full, backend.basePath, key);
        // An accepted key never names a hidden or temp file.
        for (const segment of key.split('/')) if (segment.startsWith('.')) problems.push(`segment ${segment} of ${key} is hidden`);
        expect(problems).toEqual([]);
      }),
      fuzzParameters(3000),
    );
  });

  it('names a replica <chunkId>@<replicaId>.dat, and keeps a directory per chunk when the two ids are too long for one file name', () => {
    const at = { targetNode: 'n1', cloudProvider: 'aws', sizeBytes: 1, createdAtMs: Date.UTC(2026, 11, 1) };
    expect(dataKeyOf('date', { ...at, chunkId: 'c1', replicaId: 'c1_r0' })).toBe('2026/12/01/c1@c1_r0.dat');
    const chunkId = 'c'.repeat(128);
    expect(dataKeyOf('flat', { ...at, chunkId, replicaId: 'r'.repeat(116) })).toBe(`${chunkId}@${'r'.repeat(116)}.dat`); // 245 bytes + '.meta.json' = 255
    expect(dataKeyOf('flat', { ...at, chunkId, replicaId: 'r'.repeat(117) })).toBe(`${chunkId}/${'r'.repeat(117)}.dat`);
  });

  it('keys derived from ids are safe and inside the root under every partition strategy', () => {
    fc.assert(
      fc.property(
        fc.record({ chunkId: validId, replicaId: validReplicaId, targetNode: validId, cloudProvider: validId }),
        fc.integer({ min: 1, max: 253402300799999 }),
        fc.nat(),
        (ids, createdAtMs, sizeBytes) => {
          const problems: string[] = [];
          for (const strategy of PARTITION_STRATEGIES) {
            const key = dataKeyOf(strategy, { ...ids, sizeBytes, createdAtMs });
            for (const k of [key, metadataKeyOf(key)]) {
              try {
                assertSafeKey(k);
                problems.push(...problemsOf(backend.pathOf(k), backend.basePath, k));
              } catch (error) {
                problems.push(`${strategy}: ${(error as Error).message}`);
              }
              if (k.startsWith('_chunkvault/')) problems.push(`${k} is in the reserved checkpoint area`);
              // A path component longer than 255 bytes cannot be created on Linux filesystems.
              for (const segment of k.split('/')) if (Buffer.byteLength(segment) > 255) problems.push(`${segment} is longer than 255 bytes`);
              const temp = tempNameFor(k.split('/').at(-1)!);
              if (Buffer.byteLength(temp) > 255) problems.push(`temp file name ${temp} is longer than 255 bytes`);
            }
          }
          expect(problems).toEqual([]);
        },
      ),
      fuzzParameters(1500),
    );
  });

  it('unicode look-alikes of "." and "/" are refused, not normalized into a traversal', () => {
    for (const key of ['\uff0e\uff0e/x', 'a/\uff0e\uff0e/b', '\u2025/x', 'a\uff0fb', 'a\u2215..\u2215b', 'e\u0301', '\u212a', 'a\u0000b', '..\\x']) {
      expect(() => backend.pathOf(key), JSON.stringify(key)).toThrow(InvalidInputError);
    }
  });
});
