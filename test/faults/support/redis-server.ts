/**
 * A private redis-server on a fixed loopback port and its own data directory, which a
 * scenario can crash (SIGKILL) and start again: with AOF (`appendonly yes`, `appendfsync
 * always`) it comes back with every acknowledged write; without persistence it comes back empty.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort, spawnRedisServer } from '../../../src/redis/private-redis.js';

export class RedisServer {
  #child: ChildProcess | undefined;
  #dir = '';
  #port = 0;
  restarts = 0;

  constructor(readonly persistence: 'aof' | 'none') {}

  get url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  async start(): Promise<void> {
    if (!this.#dir) {
      this.#dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-faults-redis-'));
      this.#port = await freeLoopbackPort();
    }
    const persistence = this.persistence === 'aof' ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    this.#child = await spawnRedisServer(this.#port, ['--dir', this.#dir, ...persistence]);
  }

  /** Crashes the server (no chance to write anything more), waits `downMs`, and starts it again on the same port and directory. */
  async crashAndRestart(downMs: number): Promise<void> {
    await this.#kill('SIGKILL');
    await sleep(downMs);
    await this.start();
    this.restarts += 1;
  }

  async stop(): Promise<void> {
    await this.#kill('SIGKILL');
    if (this.#dir) await rm(this.#dir, { recursive: true, force: true });
  }

  async #kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  }
}
