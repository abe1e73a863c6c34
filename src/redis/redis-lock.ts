/**
 * A Redis lock held by a random token with a short TTL that the holder renews while it
 * works: a holder that dies blocks others for at most one TTL, and only the holder can
 * renew or release it.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClient } from './redis-endpoint.js';

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

type LockRedis = RedisClient & {
  cvLockRenew(key: string, token: string, ttlMs: number): Promise<number>;
  cvLockRelease(key: string, token: string): Promise<number>;
};

export class RedisLock {
  readonly #redis: LockRedis;

  constructor(redis: RedisClient, readonly key: string, readonly ttlMs: number) {
    const scripted = redis as LockRedis;
    if (typeof scripted.cvLockRenew !== 'function') {
      redis.defineCommand('cvLockRenew', { numberOfKeys: 1, lua: RENEW });
      redis.defineCommand('cvLockRelease', { numberOfKeys: 1, lua: RELEASE });
    }
    this.#redis = scripted;
  }

  /** The token if the lock was free, else undefined. */
  async acquire(): Promise<string | undefined> {
    const token = randomBytes(12).toString('hex');
    return (await this.#redis.set(this.key, token, 'PX', this.ttlMs, 'NX')) === 'OK' ? token : undefined;
  }

  /** Runs `body` holding the lock (renewed every third of its TTL), then releases it. */
  async holding<T>(token: string, body: () => Promise<T>, onRenewError: (error: unknown) => void): Promise<T> {
    const renewal = setInterval(() => {
      this.#redis.cvLockRenew(this.key, token, this.ttlMs).catch(onRenewError);
    }, Math.max(100, Math.floor(this.ttlMs / 3)));
    try {
      return await body();
    } finally {
      clearInterval(renewal);
      await this.#redis.cvLockRelease(this.key, token);
    }
  }
}
