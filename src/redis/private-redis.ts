/**
 * A throw-away Redis for the demo when none answers: `redis-server` from PATH on a free
 * loopback port, keeping nothing on disk, stopped when the demo ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisEndpoint } from './redis-endpoint.js';

export interface PrivateRedis {
  url: string;
  stop(): Promise<void>;
}

/** Whether an executable named `name` is on PATH. */
export async function onPath(name: string): Promise<boolean> {
  const child = spawn('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
  return new Promise((resolve) => child.on('close', (code) => resolve(code === 0)));
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freeLoopbackPort();
  const child = await spawnRedisServer(port, ['--appendonly', 'no']);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Starts `redis-server` from PATH on 127.0.0.1:`port` (no RDB snapshots; `args` add e.g.
 * persistence or a data directory) and resolves once it answers PING.
 */
export async function spawnRedisServer(port: number, args: readonly string[] = []): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--protected-mode', 'yes', ...args], { stdio: 'ignore' });
  const endpoint = RedisEndpoint.standalone(`redis://127.0.0.1:${port}`);
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await endpoint.assertReachable(500);
      return child;
    } catch (error) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`could not start a redis-server on 127.0.0.1:${port}`, { cause: error });
      }
      await sleep(25);
    }
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}
