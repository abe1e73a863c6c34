/**
 * A radosgw of the fault scenarios' own, on a free loopback port, serving the Ceph cluster
 * that `.ci/cloud-servers start` runs (same buckets, users and objects as the shared S3
 * endpoint). Killing and restarting it is a real S3 server going away and coming back, without
 * disturbing the shared gateway other tests use; the objects live in the OSD, so they survive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { waitFor } from '../../support/harness.js';
import { freeLoopbackPort } from '../../../src/redis/private-redis.js';

const STATE = process.env.CHUNKVAULT_CLOUD_STATE ?? '/tmp/chunkvault-cloud-servers';
const CEPH_CONF = path.join(STATE, 'ceph', 'ceph.conf');

export class PrivateRadosgw {
  /** Times the gateway was started (1 after `start`). */
  starts = 0;
  readonly #port: number;
  readonly #dir: string;
  readonly #name = `client.rgw-faults-${randomBytes(3).toString('hex')}`;
  #child: ChildProcess | undefined;

  private constructor(port: number, dir: string) {
    this.#port = port;
    this.#dir = dir;
  }

  /** Starts a gateway on a free port; throws naming `.ci/cloud-servers start` when no cluster runs. */
  static async start(): Promise<PrivateRadosgw> {
    if (!existsSync(CEPH_CONF)) {
      throw new Error(`no Ceph cluster config at ${CEPH_CONF}: start the cloud test servers with \`bash .ci/cloud-servers start\``);
    }
    const gateway = new PrivateRadosgw(await freeLoopbackPort(), await mkdtemp(path.join(tmpdir(), 'cv-rgw-')));
    await gateway.resume();
    return gateway;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the gateway process again (on the same port) and waits until it answers S3 requests. */
  async resume(): Promise<void> {
    if (this.#child) return;
    const child = spawn('radosgw', [
      '-f', '-c', CEPH_CONF, '-n', this.#name,
      '--rgw_frontends', `beast endpoint=127.0.0.1:${this.#port}`,
      '--rgw_data', this.#dir,
      '--admin_socket', path.join(this.#dir, 'asok'),
      '--pid_file', path.join(this.#dir, 'pid'),
      '--log_file', path.join(this.#dir, 'log'),
    ], { stdio: 'ignore' });
    this.#child = child;
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    await waitFor(`radosgw to answer on ${this.endpoint} (log: ${this.#dir}/log)`, async () => {
      if (!this.#child) throw new Error(`radosgw exited at start (log: ${this.#dir}/log)`);
      const text = await fetch(`${this.endpoint}/`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.text(), () => '');
      return text.includes('ListAllMyBucketsResult');
    }, 30_000, 100);
    this.starts += 1;
  }

  /** Stops the gateway with `signal` (SIGKILL: it dies mid-request) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
    this.#child = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.#dir, { recursive: true, force: true });
  }
}

