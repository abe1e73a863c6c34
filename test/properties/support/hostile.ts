/**
 * Hostile input for the property tests: arbitraries of adversarial values (path traversal,
 * absolute paths, NUL bytes, backslashes, very long strings, unicode tricks, wrong types,
 * prototype-pollution keys, impossible numbers) and the checks every surface shares.
 *
 * Runs are seeded: FUZZ_SEED (default: a fixed seed per property) and FUZZ_RUNS (default:
 * each property's own small number) make a longer campaign reproducible, e.g.
 *   FUZZ_RUNS=20000 FUZZ_SEED=42 npx vitest run test/properties
 * fast-check prints the seed, path and counterexample of any failure (shrunk with FUZZ_SHRINK=1).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';

/** Runs of a property: FUZZ_RUNS scaled by `weight` (slow properties run fewer), else `defaultRuns`. */
export function runsOf(defaultRuns: number, weight = 1): number {
  const asked = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(asked) && asked > 0 ? Math.max(1, Math.round(asked * weight)) : defaultRuns;
}

/** A test's time limit for `runs` runs of about `perRunMs` each: never below vitest's default of 60 s. */
export function timeoutFor(runs: number, perRunMs: number): number {
  return Math.max(60_000, 30_000 + runs * perRunMs);
}

/** fc.assert parameters: a fixed seed unless FUZZ_SEED says otherwise (printed by fast-check on failure). */
export function fuzzParameters(defaultRuns: number, weight = 1, defaultSeed = 0x5eed): fc.Parameters<unknown> {
  const seed = Number(process.env.FUZZ_SEED);
  // Shrinking hostile values (long strings, deep objects) through real I/O can take minutes: only on request.
  const shrink = process.env.FUZZ_SHRINK === '1';
  return { numRuns: runsOf(defaultRuns, weight), seed: Number.isInteger(seed) ? seed : defaultSeed, endOnFailure: !shrink };
}

/** Strings that name somewhere else than where they are used. */
export const TRAVERSALS = [
  '..', '.', '../', '../../', '../../../../../../', '..\\', '..\\..\\', '/..', '/../', 'a/../../b', './', '.\\', '...', '....//',
  '..;/', '%2e%2e%2f', '%2e%2e/', '..%2f', '%252e%252e%252f', '..%00/', '..%c0%af', '\uff0e\uff0e\uff0f', '\u2025', '\uff0e\uff0e',
  '.\u0000.', '\u0000', 'a\u0000b', '\\', '\\\\', '//', '~', '~/', '$HOME', '${HOME}', '`id`', '$(id)', '|id', ';', '\n', '\r\n', '\t', ' ',
  '', 'CON', 'NUL', 'aux.txt', 'a:b', 'C:', 'C:\\Windows', '\\\\?\\C:\\', '\\\\server\\share', 'file:///etc/passwd', '/etc/passwd',
  '/dev/null', '/proc/self/environ', '/tmp', '_chunkvault', '_chunkvault/checkpoints/x', '.cvtmp~1~h~0~x', '.hidden', '-rf', '--help',
] as const;

/** Keys that reach Object.prototype (or shadow its members) when used as a plain object's key. */
export const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf'] as const;

/** Unicode that looks like something else, reorders, composes, or normalizes into separators. */
export const UNICODE_TRICKS = [
  '\u202e', '\u202egpj.exe', 'e\u0301', '\u0065\u0301\u0301\u0301', 'A\u030a', '\u212b', '\u212a', 'İ', 'ß', 'ﬁ', '\ufeff', '\u200b', '\u200d',
  '👨‍👩‍👧‍👦', '🧨', '\ud800', '\udc00', 'ｃｈｕｎｋ', '\uff0f', '\u2215', '\u2044', '\u29f8', '\uff3c', '\u0338', 'ａ／．．', '\u00a0', '\u3000',
] as const;

/** An absolute path into `outsideDir` (a directory the tests watch), as a hostile value. */
export function outsidePaths(outsideDir: string): string[] {
  return [path.join(outsideDir, 'escaped'), `${outsideDir}/../escaped`, `${outsideDir}\\escaped`, `../../../${path.basename(outsideDir)}/escaped`];
}

/** Adversarial strings: the fragments above, alone and combined with plain text, random unicode, very long ones. */
export function hostileString(outsideDir?: string): fc.Arbitrary<string> {
  const fragments: string[] = [...TRAVERSALS, ...PROTOTYPE_KEYS, ...UNICODE_TRICKS, ...(outsideDir ? outsidePaths(outsideDir) : [])];
  const fragment = fc.constantFrom(...fragments);
  const plain = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,12}$/);
  return fc.oneof(
    { weight: 4, arbitrary: fragment },
    { weight: 4, arbitrary: fc.array(fc.oneof(fragment, plain, fc.constantFrom('/', '\\', '.', '\u0000')), { minLength: 2, maxLength: 6 }).map((parts) => parts.join('')) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
    { weight: 1, arbitrary: fc.tuple(plain, fc.integer({ min: 129, max: 70_000 })).map(([p, n]) => p.padEnd(n, 'a')) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('..', '../', 'a', '🧨'), fc.integer({ min: 100, max: 5000 })).map(([p, n]) => p.repeat(n)) },
  );
}

/** Numbers no size, time or count should be: negative, fractional, non-finite, beyond 2^53, beyond any date. */
export const HOSTILE_NUMBERS = [
  -1, -0, 0, 0.5, 1.5, -1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 1e21, 1e300,
  Number.MAX_VALUE, Number.MIN_VALUE, Number.EPSILON, 8.64e15, 8.64e15 + 1, 253402300800000, -8.64e15,
] as const;

export function hostileNumber(): fc.Arbitrary<number> {
  return fc.oneof(fc.constantFrom(...HOSTILE_NUMBERS), fc.integer(), fc.double(), fc.maxSafeInteger());
}

/** An object whose own key is "__proto__" (as JSON.parse makes one), carrying a marker. */
export function protoPollutionObject(): fc.Arbitrary<Record<string, unknown>> {
  // Parsed per value: a shared instance would carry one run's changes into the next.
  return fc
    .constantFrom('{"__proto__": {"polluted": "yes"}}', '{"constructor": {"prototype": {"polluted": "yes"}}}', '{"__proto__": {"toString": "polluted"}, "a": 1}')
    .map((json) => JSON.parse(json) as Record<string, unknown>);
}

/** A fresh empty array or object per value (fc.constant would share one instance between runs). */
const freshEmpty = (make: () => unknown): fc.Arbitrary<unknown> => fc.constant(null).map(make);

/**
 * Any hostile value. `jsonOnly` leaves out what JSON cannot carry (BullMQ job data goes
 * through JSON.stringify): bigint, symbols, functions, undefined inside arrays.
 */
export function hostileValue(options: { outsideDir?: string; jsonOnly?: boolean } = {}): fc.Arbitrary<unknown> {
  const { outsideDir, jsonOnly = false } = options;
  const leaves: Array<fc.Arbitrary<unknown>> = [
    hostileString(outsideDir), hostileString(outsideDir), hostileNumber(), fc.boolean(), fc.constant(null),
    protoPollutionObject(), freshEmpty(() => []), freshEmpty(() => ({})),
  ];
  if (!jsonOnly) {
    leaves.push(
      fc.constant(undefined), fc.bigInt(), fc.constant(Symbol('hostile')), freshEmpty(() => Object.create(null)), fc.constant(() => 'fn'),
      freshEmpty(() => new Date(Number.NaN)), freshEmpty(() => new Uint16Array(4)), freshEmpty(() => new ArrayBuffer(8)), freshEmpty(() => new Map([['a', 1]])),
    );
  }
  return fc.oneof(
    { weight: 6, arbitrary: fc.oneof(...leaves) },
    { weight: 1, arbitrary: fc.array(fc.oneof(...leaves), { maxLength: 4 }) },
    { weight: 1, arbitrary: fc.dictionary(fc.oneof(hostileString(), fc.constantFrom(...PROTOTYPE_KEYS)), fc.oneof(...leaves), { maxKeys: 4 }) },
    { weight: 1, arbitrary: jsonOnly ? fc.jsonValue({ maxDepth: 3 }) : fc.anything({ maxDepth: 2, withBigInt: true, withNullPrototype: true, withTypedArray: true }) },
  );
}

/**
 * `valid` with some fields replaced by hostile or near-valid values, some removed and some
 * unknown keys added; now and then not an object at all.
 */
export function mutated(valid: Record<string, unknown>, nearValid: Record<string, fc.Arbitrary<unknown>>, options: { outsideDir?: string; jsonOnly?: boolean } = {}): fc.Arbitrary<unknown> {
  const keys = Object.keys(valid);
  // Built once: arbitraries made inside chain() would be rebuilt for every generated value.
  const hostile = hostileValue(options);
  const replacements = new Map(
    keys.map((key) => [key, (nearValid[key] ? fc.oneof({ weight: 2, arbitrary: nearValid[key] }, { weight: 1, arbitrary: hostile }) : hostile).map((value) => [key, value] as const)]),
  );
  const edit = fc.record({
    replace: fc.uniqueArray(fc.constantFrom(...keys), { minLength: 1, maxLength: 3 }).chain((chosen) => fc.tuple(...chosen.map((key) => replacements.get(key)!))),
    remove: fc.option(fc.constantFrom(...keys), { freq: 6 }),
    extra: fc.option(fc.tuple(fc.oneof(fc.constantFrom(...PROTOTYPE_KEYS, 'chunkData', 'bytes', 'path'), hostileString()), hostile), { freq: 5 }),
  });
  const object = edit.map(({ replace, remove, extra }) => {
    const out: Record<string, unknown> = { ...valid };
    for (const [key, value] of replace) out[key] = value;
    if (remove !== null) delete out[remove];
    // defineProperty, so "__proto__" becomes an own key (as JSON.parse would make it) instead of a prototype change.
    if (extra !== null) Object.defineProperty(out, extra[0], { value: extra[1], enumerable: true, configurable: true, writable: true });
    return out;
  });
  return fc.oneof({ weight: 9, arbitrary: object }, { weight: 1, arbitrary: hostile });
}

/** Near-valid values of the fields ids, checksums and sizes are made of: right type, edges of the rules. */
export const nearValid = {
  id: (): fc.Arbitrary<string> =>
    fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$/),
      fc.integer({ min: 120, max: 140 }).map((n) => 'a'.repeat(n)),
      fc.constantFrom('a..b', 'a.', 'a-', '_a', '-a', '.a', 'A', '0', 'a/b', 'a\\b', 'a:b', 'a b', 'a@b', 'a#b', 'é', 'a\u0000'),
    ),
  checksum: (): fc.Arbitrary<string> =>
    fc.oneof(
      fc.constantFrom(0, 1, 31, 32, 33, 63, 64, 65, 128).chain((n) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n })),
      fc.constantFrom('A'.repeat(32), 'g'.repeat(32), ` ${'a'.repeat(31)}`, `${'a'.repeat(32)}\n`, 'ａ'.repeat(32), `md5:${'a'.repeat(32)}`),
    ),
  size: (): fc.Arbitrary<number> => fc.oneof(fc.constantFrom(...HOSTILE_NUMBERS), fc.nat(), fc.maxSafeNat()),
  time: (): fc.Arbitrary<number> => fc.oneof(fc.constantFrom(...HOSTILE_NUMBERS), fc.integer({ min: 1, max: 8.64e15 + 10 }), fc.maxSafeNat()),
};

/** Every path under `root` (relative, '/'-separated, directories with a trailing '/'), sorted. */
export async function treeOf(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      const rel = path.relative(root, full).split(path.sep).join('/');
      if (entry.isDirectory()) {
        out.push(`${rel}/`);
        await walk(full);
      } else {
        out.push(rel);
      }
    }
  };
  await walk(root);
  return out.sort();
}

/** Paths that appeared under the watched root outside the allowed directories (relative to it). */
export async function newPathsOutside(root: string, before: readonly string[], allowed: readonly string[]): Promise<string[]> {
  const known = new Set(before);
  const allowedRel = allowed.map((dir) => path.relative(root, dir).split(path.sep).join('/'));
  const after = await treeOf(root);
  return after.filter((p) => !known.has(p) && !allowedRel.some((a) => p === `${a}/` || p.startsWith(`${a}/`) || `${a}/`.startsWith(p)));
}

/**
 * Own property names of the built-ins prototype pollution would touch. Compare before and
 * after a run: any change means hostile input reached Object.prototype (or a built-in).
 */
export function builtinsFingerprint(): string {
  const targets: Array<[string, object]> = [
    ['Object.prototype', Object.prototype], ['Object', Object], ['Function.prototype', Function.prototype],
    ['Array.prototype', Array.prototype], ['String.prototype', String.prototype], ['Object.prototype.toString', Object.prototype.toString],
  ];
  return targets.map(([name, target]) => `${name}: ${Reflect.ownKeys(target).map(String).sort().join(',')}`).join('\n');
}

/** A short, printable form of any value for failure messages. */
export function show(value: unknown): string {
  try {
    return fc.stringify(value).slice(0, 300);
  } catch {
    return String(typeof value);
  }
}
