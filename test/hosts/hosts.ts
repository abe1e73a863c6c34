/**
 * Several hosts on this machine: one network namespace per host (`ip netns`), joined to the
 * root namespace by a veth pair with a /30 of 10.231.0.0/16 of its own, its loopback up, and
 * its own directories (home, tmp, data, staging). Nothing is shared between hosts but what
 * the test forwards to them: each host gets a TcpForwarder per service (Redis, S3, Azure...)
 * on its root-side veth address, so its processes reach the loopback servers at
 * `host.endpoint(service)` and nowhere else (a namespace has no other route).
 *
 * Needs root (CI runs as root) and `ip` (iproute2). Namespaces are named `cvh<pid36>-<i>`
 * after the test process, so `Hosts.create` first deletes the leftovers of a test process that
 * died without closing (its pid is gone), and `close()` (also run at process exit) removes
 * everything this one made: host processes, forwarders, namespaces, directories. One Hosts at
 * a time per test process (the names are the process's).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { TcpForwarder } from './tcp-forwarder.js';
import { HostProcess, type HostProcessEnv } from './host-process.js';
import { ownerAlive, RUN_ID, sweepTmp } from './leftovers.js';

const run = promisify(execFile);
const NAME_PREFIX = 'cvh';
const NAME_PATTERN = /^cvh([0-9a-z]+)-(\d+)a?$/;
/** `<tmp>/cvhosts-dir-<runId>-XXXXXX`: the hosts' directories. */
const DIR_PREFIX = 'cvhosts-dir-';
/** Every host's /30 comes from here. */
const RANGE = '10.231.';

/** Loopback ports of the servers the hosts may reach, by a service name of the test's choosing. */
export type Services = Readonly<Record<string, number>>;

export class Host {
  readonly #forwarders: ReadonlyMap<string, TcpForwarder>;
  readonly #processes: HostProcess[] = [];

  constructor(
    /** Index among the hosts, from 0. */
    readonly index: number,
    /** The namespace's name. */
    readonly name: string,
    /** The veth end in the root namespace (what `cut` takes down). */
    readonly rootLink: string,
    /** The root side's address: where this host reaches the forwarded services. */
    readonly gateway: string,
    /** The host's own address inside its namespace. */
    readonly address: string,
    /** The host's directory: `home`, `tmp`, `data`, `staging` below it are its own. */
    readonly dir: string,
    forwarders: ReadonlyMap<string, TcpForwarder>,
  ) {
    this.#forwarders = forwarders;
  }

  get home(): string {
    return path.join(this.dir, 'home');
  }

  /** `gateway:port` of a forwarded service, as this host reaches it. */
  endpoint(service: string): string {
    return `${this.gateway}:${this.forwarder(service).port}`;
  }

  forwarder(service: string): TcpForwarder {
    const forwarder = this.#forwarders.get(service);
    if (!forwarder) throw new Error(`host ${this.name} has no forwarder for ${service} (has: ${[...this.#forwarders.keys()].join(', ')})`);
    return forwarder;
  }

  /** Runs `node dist/cli/main.js <args>` on this host with only `env` (and its own HOME, TMPDIR) in its environment. */
  cli(args: readonly string[], env: HostProcessEnv = {}): HostProcess {
    const child = HostProcess.spawn(this, args, env);
    this.#processes.push(child);
    return child;
  }

  /** Every process started on this host, live or not. */
  get processes(): readonly HostProcess[] {
    return this.#processes;
  }

  /** @internal for Hosts.close */
  async closeProcessesAndForwarders(): Promise<void> {
    await Promise.all(this.#processes.map((child) => child.kill()));
    await Promise.all([...this.#forwarders.values()].map((forwarder) => forwarder.close()));
  }
}

export class Hosts {
  readonly #hosts: Host[];
  readonly #root: string;
  #closed = false;
  readonly #onExit = (): void => this.#closeSync();

  private constructor(hosts: Host[], root: string) {
    this.#hosts = hosts;
    this.#root = root;
    process.once('exit', this.#onExit);
  }

  /**
   * Creates `count` hosts, each with a forwarder per service; on failure removes what it made.
   * First removes the namespaces of earlier test processes that are gone.
   */
  static async create(count: number, services: Services): Promise<Hosts> {
    await sweepLeftovers();
    const root = await mkdtemp(path.join(tmpdir(), `${DIR_PREFIX}${RUN_ID}-`));
    await mkdir(path.join(root, 'test-process'));
    const subnets = await freeSubnets(count);
    const made: Host[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const name = `${NAME_PREFIX}${RUN_ID}-${i}`;
        const rootLink = `${name}a`;
        const { gateway, address } = subnets[i]!;
        const dir = path.join(root, `host${i}`);
        const forwarders = new Map<string, TcpForwarder>();
        await ip('netns', 'add', name);
        // Registered before the rest can fail, so a half-made host is deleted too.
        made.push(new Host(i, name, rootLink, gateway, address, dir, forwarders));
        await Promise.all(['home', 'tmp', 'data', 'staging'].map((sub) => mkdir(path.join(dir, sub), { recursive: true })));
        await ip('link', 'add', rootLink, 'type', 'veth', 'peer', 'name', `${name}b`);
        await ip('link', 'set', `${name}b`, 'netns', name);
        await ip('addr', 'add', `${gateway}/30`, 'dev', rootLink);
        await ip('link', 'set', rootLink, 'up');
        await ip('-n', name, 'addr', 'add', `${address}/30`, 'dev', `${name}b`);
        await ip('-n', name, 'link', 'set', `${name}b`, 'up');
        await ip('-n', name, 'link', 'set', 'lo', 'up');
        for (const [service, port] of Object.entries(services)) forwarders.set(service, await TcpForwarder.start(gateway, port));
      }
    } catch (error) {
      await new Hosts(made, root).close();
      throw error;
    }
    return new Hosts(made, root);
  }

  /** A directory of the test process's own beside the hosts' (removed with them). */
  get dir(): string {
    return path.join(this.#root, 'test-process');
  }

  get all(): readonly Host[] {
    return this.#hosts;
  }

  host(index: number): Host {
    const host = this.#hosts[index];
    if (!host) throw new Error(`no host ${index} (${this.#hosts.length} hosts)`);
    return host;
  }

  /** Cuts host `index` off (its veth link down): its connections hang, new ones fail, until `heal`. */
  async cut(index: number): Promise<void> {
    await ip('link', 'set', this.host(index).rootLink, 'down');
  }

  async heal(index: number): Promise<void> {
    await ip('link', 'set', this.host(index).rootLink, 'up');
  }

  /** Kills the hosts' processes, stops the forwarders, deletes the namespaces and directories; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    process.off('exit', this.#onExit);
    const problems: unknown[] = [];
    for (const host of this.#hosts) {
      await host.closeProcessesAndForwarders().catch((error: unknown) => problems.push(error));
      await deleteNamespace(host.name, host.rootLink).catch((error: unknown) => problems.push(error));
    }
    await rm(this.#root, { recursive: true, force: true });
    if (problems.length) throw new AggregateError(problems, 'closing the hosts failed');
  }

  /** At process exit (a crash, a test runner stopping): no await possible, so ip directly. */
  #closeSync(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const host of this.#hosts) {
      for (const child of host.processes) child.killNow();
      deleteNamespaceSync(host.name, host.rootLink);
    }
  }
}

async function ip(...args: string[]): Promise<string> {
  try {
    return (await run('ip', args)).stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`ip ${args.join(' ')} failed: ${stderr.trim() || (error as Error).message}`, { cause: error });
  }
}

/** Kills what still runs in the namespace (processes a test started there), then deletes it; the veth pair goes with it. */
async function deleteNamespace(name: string, rootLink: string): Promise<void> {
  const pids = await ip('netns', 'pids', name).catch(() => '');
  for (const pid of pids.split(/\s+/).filter(Boolean)) killPid(Number(pid));
  await ip('netns', 'del', name).catch((error: unknown) => {
    if (!/No such file|not found|Invalid netns/i.test((error as Error).message)) throw error;
  });
  // A host whose veth was made but not yet moved leaves its pair in the root namespace.
  await ip('link', 'del', rootLink).catch(() => undefined);
}

function deleteNamespaceSync(name: string, rootLink: string): void {
  const quiet = { stdio: 'ignore' } as const;
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' });
    for (const pid of pids.split(/\s+/).filter(Boolean)) killPid(Number(pid));
  } catch {
    // no such namespace
  }
  try {
    execFileSync('ip', ['netns', 'del', name], quiet);
  } catch {
    // already gone
  }
  try {
    execFileSync('ip', ['link', 'del', rootLink], quiet);
  } catch {
    // went with the namespace
  }
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Namespaces, root-side links and directories of test processes that died without closing their hosts. */
async function sweepLeftovers(): Promise<void> {
  const namespaces = (await ip('netns', 'list')).split('\n').map((line) => line.split(' ')[0] ?? '');
  const links = (await ip('-o', 'link', 'show')).split('\n').map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1] ?? '');
  for (const name of [...namespaces, ...links]) {
    const match = NAME_PATTERN.exec(name);
    if (!match || ownerAlive(match[1]!)) continue;
    const namespace = name.replace(/a$/, '');
    await deleteNamespace(namespace, `${namespace}a`);
  }
  await sweepTmp(DIR_PREFIX);
}

/** `count` /30s of 10.231.0.0/16 no interface uses now: the root side's address (.1 of the /30) and the host's (.2). */
async function freeSubnets(count: number): Promise<Array<{ gateway: string; address: string }>> {
  const used = new Set<number>();
  for (const match of (await ip('-o', '-4', 'addr', 'show')).matchAll(/inet 10\.231\.(\d+)\.(\d+)\//g)) {
    used.add(Number(match[1]) * 64 + Math.floor(Number(match[2]) / 4));
  }
  const free: Array<{ gateway: string; address: string }> = [];
  for (let block = 0; block < 256 * 64 && free.length < count; block++) {
    if (used.has(block)) continue;
    const at = (host: number) => `${RANGE}${Math.floor(block / 64)}.${(block % 64) * 4 + host}`;
    free.push({ gateway: at(1), address: at(2) });
  }
  if (free.length < count) throw new Error(`no ${count} free /30s in ${RANGE}0.0/16`);
  return free;
}
