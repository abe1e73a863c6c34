/**
 * The hosts' Redis: a private redis-server on a free loopback port that requires a password
 * (as a Redis reachable from other hosts must), keeping nothing on disk. The hosts reach it
 * through their forwarders; the test process directly on loopback. A server whose test
 * process died is stopped by the next one's `start` (found by its pidfile).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freeLoopbackPort } from '../../src/redis/private-redis.js';
import { waitFor } from '../support/harness.js';
import { killIfRunning, orphansInTmp, RUN_ID } from './leftovers.js';

/** `<tmp>/cvhosts-redis-<runId>-<port>.pid`: how the next test process finds a server whose owner died. */
const PIDFILE_PREFIX = 'cvhosts-redis-';

export class PasswordRedis {
  readonly password = randomBytes(12).toString('hex');
  #child: ChildProcess | undefined;
  #pidfile = '';

  private constructor(readonly port: number) {}

  static async start(): Promise<PasswordRedis> {
    await sweepOrphanedServers();
    const redis = new PasswordRedis(await freeLoopbackPort());
    const pidfile = path.join(tmpdir(), `${PIDFILE_PREFIX}${RUN_ID}-${redis.port}.pid`);
    const args = ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', redis.password, '--pidfile', pidfile];
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    redis.#pidfile = pidfile;
    redis.#child = child;
    try {
      await waitFor('the hosts\' redis-server to answer', async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited ${child.exitCode} at start`);
        return redis.#answers();
      }, 15_000, 50);
    } catch (error) {
      await redis.stop();
      throw error;
    }
    return redis;
  }

  /** redis://:PASSWORD@`host`:`port`, by default this server on loopback. */
  url(host = '127.0.0.1', port = this.port): string {
    return `redis://:${this.password}@${host}:${port}`;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    if (this.#pidfile) await rm(this.#pidfile, { force: true });
  }

  async #answers(): Promise<boolean> {
    const probe = new Redis(this.url(), { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      return (await probe.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  }
}

/** Servers started by test processes that died without stopping them. */
async function sweepOrphanedServers(): Promise<void> {
  for (const { file } of await orphansInTmp(PIDFILE_PREFIX)) {
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (pid > 0) await killIfRunning(pid, 'redis-server');
    await rm(file, { force: true });
  }
}
