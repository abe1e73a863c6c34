/**
 * Storage identity: every backend carries a deployment marker, and Redis records which marker
 * the deployment knows for each backend name. A process whose backend is another disk, bucket
 * or key prefix than the deployment's is refused before it writes or reads a replica: two
 * hosts each writing "the local backend" to a disk of their own would split the data, and each
 * one's reads would find the other's replicas missing.
 *
 * The marker is the object `_chunkvault/identity.json` (chunkvault's reserved namespace: ids
 * start with a letter or digit, so no replica's key can reach it), written once with the
 * backend's atomic, checksum-checked put. Redis holds the hash `P:identity`: backend name ->
 * the marker's JSON (catalog-keys.ts). The marker is compared by its random id, not by
 * location, so one shared volume mounted at another path on each host is the same storage.
 *
 * At start, for each backend:
 *   Redis records R, the backend holds R              -> matched
 *   Redis records R, the backend holds another or none -> refused (StorageIdentityError)
 *   Redis records none, the backend holds M           -> adopted: M recorded (Redis flushed, or a new one)
 *   Redis records none, the backend holds none        -> created: a new marker written, then recorded
 * Creating and adopting run under a per-backend Redis lock, so processes starting together on
 * a fresh deployment end with one marker that all of them accept (without it, two creators on
 * one disk could each replace the other's marker).
 *
 * A backend that cannot be read or written now (down, refusing the credentials, a base_path
 * under a file), or that does not answer within CHECK_DEADLINE_MS, is left unchecked with a
 * warning rather than keeping the process and the other backends from working: its writes
 * fail meanwhile, /readyz names it, and the next start checks it.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClient } from '../redis/redis-endpoint.js';
import { z } from 'zod';
import type { Backend } from '../backends/backend.js';
import type { CatalogKeys } from '../catalog/catalog-keys.js';
import { ChunkvaultError, NotFoundError, StorageIdentityError, describeError, type IdentityMismatch } from '../errors.js';
import { checksumOf } from '../integrity/checksum.js';
import type { Logger } from '../logging/logger.js';
import { RedisLock } from '../redis/redis-lock.js';
import { RESERVED_KEY_PREFIX } from './storage-layout.js';

/** Where a backend keeps its marker. Listings of a backend meet it: it is neither data nor metadata. */
export const STORAGE_IDENTITY_KEY = `${RESERVED_KEY_PREFIX}identity.json`;
export const IDENTITY_FORMAT = 'chunkvault.storage-identity/1';

/** How long one backend's check may take at start before the backend is left unchecked. */
const CHECK_DEADLINE_MS = 5_000;
/** The creator renews the lock while it writes; a creator that died blocks others for this long at most. */
const LOCK_TTL_MS = 10_000;
/** How long a starting process waits for another one creating the same backend's marker. */
const LOCK_WAIT_MS = 3 * LOCK_TTL_MS;
const LOCK_POLL_MS = 50;

const markerSchema = z.object({
  format: z.literal(IDENTITY_FORMAT),
  /** Random, chosen once when the marker is created: what is compared. */
  id: z.string().min(1),
  /** The rest says where and when it was created, for messages only. */
  backend: z.string(),
  location: z.string(),
  host: z.string(),
  createdAt: z.string(),
});
export type StorageMarker = z.infer<typeof markerSchema>;

/** How one backend's check ended; a refusal is thrown instead (StorageIdentityError). */
export type IdentityOutcome = 'matched' | 'adopted' | 'created' | 'unchecked';

const NO_MARKER = 'no marker';
const UNREADABLE_MARKER = `an unreadable marker (${STORAGE_IDENTITY_KEY} is not a ${IDENTITY_FORMAT} document)`;

/** What the backend holds under STORAGE_IDENTITY_KEY. */
type Found = { marker: StorageMarker } | { none: string };

/** A backend read or write that failed: the backend is left unchecked, unlike a Redis failure, which stops the start. */
class BackendUnavailable extends Error {}

/**
 * Checks every backend against the identity the deployment records in Redis (see the module
 * comment), all at once. Resolves with each backend's outcome by name; throws one
 * StorageIdentityError naming every backend that is not the deployment's, with the expected and
 * the found marker and what to do. Redis errors are thrown as they are.
 */
export async function verifyStorageIdentity(redis: RedisClient, keys: CatalogKeys, backends: readonly Backend[], logger: Logger): Promise<Record<string, IdentityOutcome>> {
  const settled = await Promise.allSettled(backends.map((backend) => withinDeadline(verifyBackend(redis, keys, backend, logger), backend, logger)));
  const mismatches: IdentityMismatch[] = [];
  const outcomes: Record<string, IdentityOutcome> = {};
  for (const [i, result] of settled.entries()) {
    const backend = backends[i]!;
    if (result.status === 'fulfilled') {
      if ('backend' in result.value) mismatches.push(result.value);
      else outcomes[backend.name] = result.value.outcome;
    } else if (result.reason instanceof BackendUnavailable) {
      logger.warn({ err: result.reason, backend: backend.name, location: backend.location }, 'could not check the storage identity of this backend; the next start checks it');
      outcomes[backend.name] = 'unchecked';
    } else {
      throw result.reason;
    }
  }
  if (mismatches.length > 0) throw new StorageIdentityError(mismatches, refusalMessage(mismatches, keys));
  return outcomes;
}

/**
 * The check, or BackendUnavailable once CHECK_DEADLINE_MS have passed: a store that does not
 * answer (an SDK retrying a refused connection with backoff, an endpoint that drops packets)
 * must not hold up the start. A check that ends later and finds a mismatch is logged as an error.
 */
async function withinDeadline<T extends { outcome: IdentityOutcome } | IdentityMismatch>(check: Promise<T>, backend: Backend, logger: Logger): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new BackendUnavailable(`no answer within ${CHECK_DEADLINE_MS / 1000} s`));
      check.then((late) => {
        if ('backend' in late) logger.error({ backend: backend.name, location: backend.location, mismatch: late }, 'this backend is not the storage the deployment knows (found after start): stop this process');
      }, () => undefined);
    }, CHECK_DEADLINE_MS);
    timer.unref();
  });
  try {
    return await Promise.race([check, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function verifyBackend(redis: RedisClient, keys: CatalogKeys, backend: Backend, logger: Logger): Promise<{ outcome: IdentityOutcome } | IdentityMismatch> {
  const lock = new RedisLock(redis, keys.identityLock(backend.name), LOCK_TTL_MS);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const known = await recorded(redis, keys, backend.name);
    if (known) return compare(backend, known, await readMarker(backend), 'matched');
    const token = await lock.acquire();
    if (token) {
      const onRenewError = (error: unknown): void => logger.warn({ err: error, backend: backend.name }, 'could not renew the storage identity lock');
      return lock.holding(token, () => createOrAdopt(redis, keys, backend, logger), onRenewError);
    }
    if (Date.now() > deadline) {
      throw new BackendUnavailable(`another process has been creating the storage marker of backend ${backend.name} for ${LOCK_WAIT_MS / 1000} s`);
    }
    await sleep(LOCK_POLL_MS);
  }
}

/** Holding the backend's lock: adopts the marker the backend holds, or creates one, and records it. */
async function createOrAdopt(redis: RedisClient, keys: CatalogKeys, backend: Backend, logger: Logger): Promise<{ outcome: IdentityOutcome } | IdentityMismatch> {
  // Another process may have finished between our look and our lock.
  const known = await recorded(redis, keys, backend.name);
  const found = await readMarker(backend);
  if (known) return compare(backend, known, found, 'matched');
  if ('none' in found && found.none !== NO_MARKER) return { backend: backend.name, location: backend.location, expected: undefined, found: found.none };
  const outcome = 'marker' in found ? 'adopted' : 'created';
  const marker = 'marker' in found ? found.marker : await writeMarker(backend);
  // HSETNX, not HSET: a creator whose lock expired under it must not replace what another recorded.
  if ((await redis.hsetnx(keys.identity, backend.name, JSON.stringify(marker))) === 0) {
    return compare(backend, (await recorded(redis, keys, backend.name))!, { marker }, outcome);
  }
  logger.info(
    { backend: backend.name, location: backend.location, markerId: marker.id, createdAt: marker.createdAt, createdOn: marker.host },
    outcome === 'adopted' ? 'adopted the storage marker this backend holds (RedisClient recorded none)' : 'created the storage marker of this backend',
  );
  return { outcome };
}

function compare(backend: Backend, known: StorageMarker, found: Found, outcome: IdentityOutcome): { outcome: IdentityOutcome } | IdentityMismatch {
  if ('marker' in found && found.marker.id === known.id) return { outcome };
  const { id, location, host, createdAt } = known;
  return { backend: backend.name, location: backend.location, expected: { id, location, host, createdAt }, found: 'marker' in found ? `marker ${found.marker.id}` : found.none };
}

async function recorded(redis: RedisClient, keys: CatalogKeys, backendName: string): Promise<StorageMarker | undefined> {
  const value = await redis.hget(keys.identity, backendName);
  if (value === null) return undefined;
  const parsed = markerSchema.safeParse(safeJson(value));
  if (!parsed.success) {
    throw new ChunkvaultError('E_CORRUPT', `the storage identity RedisClient records for backend ${backendName} (${keys.identity}, field ${backendName}) is not a marker: ${value.slice(0, 200)}`);
  }
  return parsed.data;
}

async function readMarker(backend: Backend): Promise<Found> {
  let bytes: Buffer;
  try {
    bytes = await buffer(await backend.get(STORAGE_IDENTITY_KEY));
  } catch (error) {
    if (error instanceof NotFoundError) return { none: NO_MARKER };
    throw new BackendUnavailable(`read ${STORAGE_IDENTITY_KEY}: ${describeError(error)}`, { cause: error });
  }
  const parsed = markerSchema.safeParse(safeJson(bytes.toString('utf8')));
  return parsed.success ? { marker: parsed.data } : { none: UNREADABLE_MARKER };
}

async function writeMarker(backend: Backend): Promise<StorageMarker> {
  const marker: StorageMarker = { format: IDENTITY_FORMAT, id: randomUUID(), backend: backend.name, location: backend.location, host: hostname(), createdAt: new Date().toISOString() };
  const bytes = Buffer.from(`${JSON.stringify(marker, null, 2)}\n`);
  try {
    await backend.put(STORAGE_IDENTITY_KEY, bytes, { sizeBytes: bytes.byteLength, checksum: await checksumOf(bytes, 'sha256'), algorithm: 'sha256' });
  } catch (error) {
    throw new BackendUnavailable(`put ${STORAGE_IDENTITY_KEY}: ${describeError(error)}`, { cause: error });
  }
  return marker;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One line per refused backend, then what to do: the message users see on stderr. */
function refusalMessage(mismatches: readonly IdentityMismatch[], keys: CatalogKeys): string {
  const lines = mismatches.map(({ backend, location, expected, found }) => {
    const wanted = expected ? `marker ${expected.id} (created ${expected.createdAt} on host ${expected.host} at ${expected.location})` : 'a readable marker';
    return `backend ${backend} at ${location} is not the storage this deployment knows: expected ${wanted}, found ${found}.`;
  });
  const advice = [
    "Point this process at the deployment's storage: the local backend on several hosts must be one shared volume, mounted at each host's base_path; " +
      "a cloud backend must name the deployment's bucket (or container) and key_prefix.",
  ];
  for (const m of mismatches.filter((m) => m.found === UNREADABLE_MARKER)) {
    const restore = m.expected ? `if this is the deployment's storage, write the JSON RedisClient records (redis-cli HGET '${keys.identity}' ${m.backend}) back to it, else ` : '';
    advice.push(`The marker ${STORAGE_IDENTITY_KEY} of backend ${m.backend} was damaged or written by something else: ${restore}remove it.`);
  }
  const forget = mismatches.filter((m) => m.expected).map((m) => `redis-cli HDEL '${keys.identity}' ${m.backend}`);
  if (forget.length > 0) advice.push(`If the deployment's storage really was replaced, forget the identity RedisClient records (${forget.join('; ')}); the next start then marks the new storage.`);
  return [`storage identity: ${lines.join('\n  ')}`, ...advice].join('\n');
}
