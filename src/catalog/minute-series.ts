/**
 * The catalog's per-minute series: in each minute of the last day, how many replicas were
 * stored and their bytes, how many failed for good, how many were found corrupt and how many
 * were repaired. /admin draws its charts from it and GET /v1/stats/series serves it.
 *
 * Every process adds to it from the catalog scripts that move the matching counters
 * (record-stored, record-failed, record-corrupt), inside the same script and under the same
 * condition, so a minute counts an event exactly when the counters do: once, however often
 * a job runs, and never lost between two round trips. It lives in Redis, so every `serve`
 * reads the same figures, whichever process did the work.
 *
 * Bounded by expiry: one small hash per minute (CatalogKeys.minute, the fields below) that
 * expires SERIES_WINDOW_MINUTES after its last write. Nothing has to trim it, an idle
 * deployment keeps nothing old, and a reader fetches the minutes it wants in one pipeline (all
 * keys share the catalog's hash tag: one Cluster slot). A hash per figure with minute fields
 * would need a writer to trim it, which an idle deployment never runs. A day is at most 1,440
 * hashes of five small fields.
 *
 * A minute is the writing process's clock (the one that stamps storedAt), so hosts are
 * expected to keep their clocks in sync (NTP), as retention by date already requires.
 */
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { CatalogKeys } from './catalog-keys.js';

/** The figures of each minute, as the scripts name their fields (scripts/includes/minute-series.lua). */
export const SERIES_FIELDS = ['replicas_stored', 'bytes_stored', 'replicas_failed', 'corruptions_found', 'repairs_done'] as const;
export type SeriesField = (typeof SERIES_FIELDS)[number];

/** How far back the series reaches: a day of minutes. */
export const SERIES_WINDOW_MINUTES = 24 * 60;
export const MINUTE_MS = 60_000;
/** Seconds a minute's hash is kept after its last write: the window, and the minute itself. */
export const MINUTE_TTL_SECONDS = (SERIES_WINDOW_MINUTES + 1) * 60;

/** The minutes since the Unix epoch at `ms`. */
export function epochMinute(ms: number): number {
  return Math.floor(ms / MINUTE_MS);
}

/** Consecutive minutes, oldest first, ending with the current one. */
export interface MinuteSeries {
  /** Start of the oldest minute (ISO 8601, UTC). */
  start: string;
  stepSeconds: 60;
  /** Per figure, one value per minute from `start`; 0 where nothing happened. */
  values: Record<SeriesField, number[]>;
}

/** Reads the series; the catalog scripts write it. */
export class MinuteSeriesReader {
  readonly #redis: RedisClient;
  readonly #keys: CatalogKeys;

  constructor(redis: RedisClient, keys: CatalogKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** The last `minutes` minutes (1 to SERIES_WINDOW_MINUTES) up to the one holding `nowMs`. */
  async read(minutes: number, nowMs = Date.now()): Promise<MinuteSeries> {
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > SERIES_WINDOW_MINUTES) {
      throw new RangeError(`the per-minute series covers 1 to ${SERIES_WINDOW_MINUTES} minutes, not ${minutes}`);
    }
    const first = epochMinute(nowMs) - minutes + 1;
    const pipeline = this.#redis.pipeline();
    for (let m = first; m < first + minutes; m += 1) pipeline.hgetall(this.#keys.minute(m));
    const replies = (await pipeline.exec()) ?? [];
    const values = Object.fromEntries(SERIES_FIELDS.map((field) => [field, new Array<number>(minutes).fill(0)])) as MinuteSeries['values'];
    replies.forEach(([error, raw], i) => {
      if (error) throw error;
      const fields = raw as Record<string, string>;
      for (const field of SERIES_FIELDS) values[field][i] = Number(fields[field] ?? 0);
    });
    return { start: new Date(first * MINUTE_MS).toISOString(), stepSeconds: 60, values };
  }
}
