/**
 * A private redis-server on a fixed loopback port and its own data directory, which a
 * scenario can crash (SIGKILL) and start again: with AOF (`appendonly yes`, `appendfsync
 * always`) it comes back with every acknowledged write; without persistence it comes back empty.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertRedisReachable } from '../../../src/redis/redis-connection.js';

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
    const child = spawn('redis-server', ['--port', String(this.#port), '--bind', '127.0.0.1', '--dir', this.#dir, '--save', '', ...persistence, '--protected-mode', 'yes'], { stdio: 'ignore' });
    this.#child = child;
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await assertRedisReachable(this.url, 500);
        return;
      } catch (error) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on ${this.url} did not come up`, { cause: error });
        await sleep(25);
      }
    }
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

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}
