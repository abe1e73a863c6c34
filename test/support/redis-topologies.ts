/**
 * Real Redis topologies on 127.0.0.1 for the failover tests (issue 18): a Sentinel group (a
 * master, a replica, three sentinels), a Cluster of six nodes (three masters with a replica
 * each) and a Redis speaking only TLS, all from `redis-server` on PATH, each in a temp
 * directory of its own and keeping nothing on disk. Tests kill, pause and restart data nodes
 * and wait for what Sentinel or the Cluster does about it.
 *
 * Nothing is left behind: stop() and a start that fails half-way kill every process and
 * remove the directory, and so does the test process when it exits or is SIGTERM'd (as
 * vitest's forks are) with a topology nobody stopped.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { freeLoopbackPort } from '../../src/redis/private-redis.js';

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 15_000;
const ASK_TIMEOUT_MS = 3_000;

export interface HostPort {
  host: string;
  port: number;
}

export interface SentinelTopologyOptions {
  password?: string;
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  masterName?: string;
  /**
   * Sentinels ask INFO every second instead of every 10 s and say hello every 0.5 s instead of
   * every 2 s (SENTINEL DEBUG), so a restarted or resumed old master is turned into a replica in
   * seconds rather than in 10-20 s. Off by default: deployed sentinels keep Redis's timers.
   */
  fastSentinelTimers?: boolean;
}

export interface ClusterTopologyOptions {
  password?: string;
  nodeTimeoutMs?: number;
}

/** One master, one replica and three sentinels watching them (quorum 2). */
export async function startSentinelTopology(options: SentinelTopologyOptions = {}): Promise<SentinelTopology> {
  return SentinelTopology.start(options);
}

/** Six cluster nodes: three masters sharing the slots, each with one replica. */
export async function startClusterTopology(options: ClusterTopologyOptions = {}): Promise<ClusterTopology> {
  return ClusterTopology.start(options);
}

/** A Redis that answers only TLS, with a certificate for 127.0.0.1 and localhost from a throw-away CA (`caFile`). */
export async function startTlsRedis(): Promise<TlsRedis> {
  return TlsRedis.start();
}

// The processes and directories of topologies not yet stopped, for the exit-time fallback.
const leftoverChildren = new Set<ChildProcess>();
const leftoverDirs = new Set<string>();

function removeLeftovers(): void {
  for (const child of leftoverChildren) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  for (const dir of leftoverDirs) rmSync(dir, { recursive: true, force: true });
}

// A SIGTERM listener stops Node from dying of the signal; when ours is the only one, die as Node would have.
function onSigterm(): void {
  removeLeftovers();
  if (process.listenerCount('SIGTERM') > 1) return;
  process.off('SIGTERM', onSigterm);
  process.kill(process.pid, 'SIGTERM');
}

let fallbackInstalled = false;
function installFallback(): void {
  if (fallbackInstalled) return;
  fallbackInstalled = true;
  process.on('exit', removeLeftovers);
  process.on('SIGTERM', onSigterm);
}

/** Thrown by a probe when waiting longer cannot help (the process died). */
class Hopeless extends Error {}

/**
 * Calls `probe` every 100 ms until it resolves; its errors mean "not yet" and say why. After
 * `timeoutMs` throws "<what>: <the last reason> after N s".
 */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await probe();
    } catch (error) {
      if (error instanceof Hopeless) throw new Error(`${what}: ${error.message}`, { cause: error });
      if (Date.now() >= deadline) throw new Error(`${what}: ${(error as Error).message} after ${timeoutMs / 1000} s`, { cause: error });
    }
    await sleep(100);
  }
}

function ensure(condition: boolean, reason: string): asserts condition {
  if (!condition) throw new Error(reason);
}

function show(address: HostPort): string {
  return `${address.host}:${address.port}`;
}

/** Runs `command` on a fresh connection to `address`; a node that does not answer (a paused one) fails it after three seconds. */
async function ask<T>(address: HostPort, options: RedisOptions, command: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ ...address, ...options, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  client.on('error', () => undefined);
  let timedOut = false;
  const watchdog = setTimeout(() => {
    timedOut = true;
    client.disconnect();
  }, ASK_TIMEOUT_MS);
  try {
    await client.connect();
    return await command(client);
  } catch (error) {
    const reason = timedOut ? `no answer within ${ASK_TIMEOUT_MS / 1000} s` : (error as Error).message;
    throw new Error(`${show(address)}: ${reason}`, { cause: error });
  } finally {
    clearTimeout(watchdog);
    client.disconnect();
  }
}

function onlineReplicas(infoReplication: string): number {
  return infoReplication.split('\n').filter((line) => /^slave\d+:.*state=online/.test(line)).length;
}

function roleIn(infoReplication: string): string | undefined {
  return /^role:(\w+)/m.exec(infoReplication)?.[1];
}

/** Starts them all and waits for every start to end, so that a failure leaves no start still under way when the topology is stopped. */
async function startAll(processes: readonly RedisProcess[]): Promise<void> {
  const failed = (await Promise.allSettled(processes.map((member) => member.start()))).find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
}

async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freeLoopbackPort());
  return [...ports];
}

/** A redis-server (or sentinel) started from a config file in its own directory, which a test may kill, pause and start again. */
class RedisProcess {
  #child: ChildProcess | undefined;
  #paused = false;

  constructor(
    readonly name: string,
    readonly address: HostPort,
    readonly dir: string,
    readonly args: readonly string[],
    readonly clientOptions: RedisOptions,
  ) {}

  /** Running and not paused: it can answer. */
  get answers(): boolean {
    return this.#child !== undefined && !this.#paused;
  }

  async start(): Promise<void> {
    if (this.#child) throw new Error(`${this.name} is already running`);
    // Errors in the config file go to stderr, before the log file is open.
    const output = await open(path.join(this.dir, 'output.log'), 'a');
    const child = spawn('redis-server', this.args, { cwd: this.dir, stdio: ['ignore', output.fd, output.fd] });
    await output.close();
    // Unreferenced so that a test process that forgot stop() can end, and its exit hook kill this.
    child.unref();
    leftoverChildren.add(child);
    child.once('exit', () => leftoverChildren.delete(child));
    this.#child = child;
    this.#paused = false;
    await waitFor(`could not start ${this.name}`, START_TIMEOUT_MS, async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Hopeless(`it exited: ${await this.#outputTail()}`);
      await this.ask((client) => client.ping());
    });
  }

  ask<T>(command: (client: Redis) => Promise<T>): Promise<T> {
    return ask(this.address, this.clientOptions, command);
  }

  /** SIGKILL; waits until it is gone. Does nothing when it is not running. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    this.#paused = false;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.ref();
    const exited = once(child, 'exit');
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }

  pause(): void {
    this.#signal('SIGSTOP');
    this.#paused = true;
  }

  resume(): void {
    this.#signal('SIGCONT');
    this.#paused = false;
  }

  #signal(signal: NodeJS.Signals): void {
    if (!this.#child) throw new Error(`${this.name} is not running`);
    this.#child.kill(signal);
  }

  async #outputTail(): Promise<string> {
    const read = (name: string) => readFile(path.join(this.dir, name), 'utf8').catch(() => '');
    const lines = `${await read('output.log')}\n${await read('redis.log')}`.split('\n').filter((line) => line.trim() !== '');
    return lines.slice(-6).join(' | ');
  }
}

function quoted(value: string): string {
  return JSON.stringify(value);
}

/** The processes of one topology in one temp directory; data nodes can be killed, paused and restarted by port. */
abstract class LocalTopology {
  readonly #processes: RedisProcess[] = [];
  protected readonly dataNodes = new Map<number, RedisProcess>();

  protected constructor(
    readonly dir: string,
    protected readonly password: string | undefined,
  ) {}

  protected static async launched<T extends LocalTopology>(topology: T, launch: () => Promise<void>): Promise<T> {
    try {
      await launch();
      return topology;
    } catch (error) {
      await topology.stop();
      throw error;
    }
  }

  protected static async makeDir(kind: string): Promise<string> {
    installFallback();
    const dir = await mkdtemp(path.join(tmpdir(), `chunkvault-redis-${kind}-`));
    leftoverDirs.add(dir);
    return dir;
  }

  /** The environment the worker needs besides the config (the password when there is one). */
  get env(): Record<string, string> {
    return this.password === undefined ? {} : { REDIS_PASSWORD: this.password };
  }

  /** SIGKILL to the data node on `port`. */
  async kill(port: number): Promise<void> {
    await this.node(port).kill();
  }

  /** SIGSTOP: the node keeps its connections open but answers nothing until resume(). */
  pause(port: number): void {
    this.node(port).pause();
  }

  resume(port: number): void {
    this.node(port).resume();
  }

  /** Starts the node again on its port, directory and config file (killing it first if it runs); resolves when it answers PING. */
  async restart(port: number): Promise<void> {
    const node = this.node(port);
    await node.kill();
    await node.start();
  }

  /** Kills every process (paused ones too) and removes the directory. Safe to call twice. */
  async stop(): Promise<void> {
    await Promise.all(this.#processes.map((member) => member.kill()));
    await rm(this.dir, { recursive: true, force: true });
    leftoverDirs.delete(this.dir);
  }

  /** Writes `lines` as the process's config file in a directory of its own; the process starts with `redis-server <conf> ...extraArgs`. */
  protected async addProcess(name: string, port: number, lines: readonly string[], extraArgs: readonly string[] = [], clientOptions: RedisOptions = {}): Promise<RedisProcess> {
    const dir = path.join(this.dir, `${name}-${port}`);
    await mkdir(dir);
    const conf = path.join(dir, 'redis.conf');
    const common = [`bind ${HOST}`, `port ${port}`, `dir ${quoted(dir)}`, `logfile ${quoted(path.join(dir, 'redis.log'))}`];
    await writeFile(conf, [...common, ...lines, ''].join('\n'));
    const member = new RedisProcess(`${name} ${HOST}:${port}`, { host: HOST, port }, dir, [conf, ...extraArgs], clientOptions);
    this.#processes.push(member);
    return member;
  }

  /** A master or replica without persistence; with a password, replicas authenticate to their master with it. */
  protected async addDataNode(port: number, lines: readonly string[]): Promise<RedisProcess> {
    const auth = this.password === undefined ? [] : [`requirepass ${quoted(this.password)}`, `masterauth ${quoted(this.password)}`];
    const node = await this.addProcess('redis', port, ['save ""', 'appendonly no', 'repl-diskless-sync-delay 0', ...auth, ...lines], [], { password: this.password });
    this.dataNodes.set(port, node);
    return node;
  }

  protected node(port: number): RedisProcess {
    const node = this.dataNodes.get(port);
    if (!node) throw new Error(`no data node on port ${port} (there are ${[...this.dataNodes.keys()].join(', ')})`);
    return node;
  }

  protected async replicationOf(address: HostPort): Promise<string> {
    return this.node(address.port).ask((client) => client.info('replication'));
  }
}

function toRecord(flat: readonly string[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) record[flat[i]!] = flat[i + 1]!;
  return record;
}

class SentinelTopology extends LocalTopology {
  readonly #sentinels: RedisProcess[] = [];

  private constructor(
    dir: string,
    password: string | undefined,
    readonly masterName: string,
  ) {
    super(dir, password);
  }

  static async start(options: SentinelTopologyOptions): Promise<SentinelTopology> {
    const topology = new SentinelTopology(await LocalTopology.makeDir('sentinel'), options.password, options.masterName ?? 'cvmaster');
    return LocalTopology.launched(topology, () => topology.#launch(options.downAfterMs ?? 1000, options.failoverTimeoutMs ?? 3000, options.fastSentinelTimers ?? false));
  }

  get sentinels(): HostPort[] {
    return this.#sentinels.map((sentinel) => sentinel.address);
  }

  /** To merge into the YAML config under `chunkvault.redis`. */
  get config(): { mode: 'sentinel'; nodes: string[]; sentinel_master: string } {
    return { mode: 'sentinel', nodes: this.sentinels.map(show), sentinel_master: this.masterName };
  }

  /** The master as named by the sentinel with the newest configuration epoch (the one a finished failover leaves behind). */
  async master(): Promise<HostPort> {
    const views = await Promise.all(
      this.#sentinels.map((sentinel) =>
        sentinel.ask(async (client) => toRecord((await client.call('SENTINEL', 'MASTER', this.masterName)) as string[])).catch(() => undefined),
      ),
    );
    const newest = views.filter((view) => view !== undefined).sort((a, b) => Number(b['config-epoch']) - Number(a['config-epoch']))[0];
    if (!newest?.ip || !newest.port) throw new Error(`no sentinel names the master of ${this.masterName}`);
    return { host: newest.ip, port: Number(newest.port) };
  }

  /** Until the sentinels name a master other than the one on `oldMasterPort` and that node reports role:master. */
  async waitForFailover(oldMasterPort: number, timeoutMs: number): Promise<HostPort> {
    return waitFor(`no failover from ${HOST}:${oldMasterPort}`, timeoutMs, async () => {
      const master = await this.master();
      ensure(master.port !== oldMasterPort, `the sentinels still name ${HOST}:${oldMasterPort}`);
      const role = roleIn(await this.replicationOf(master));
      ensure(role === 'master', `the sentinels name ${show(master)}, which reports role:${role}`);
      return master;
    });
  }

  /** Until the current master has an online replica and every sentinel knows that replica as healthy (so a next failover can pick it). */
  async waitForReplicaOnline(timeoutMs: number): Promise<void> {
    await waitFor('no replica online', timeoutMs, async () => {
      const master = await this.master();
      ensure(onlineReplicas(await this.replicationOf(master)) >= 1, `the master ${show(master)} has no online replica`);
      for (const sentinel of this.#sentinels) {
        const replicas = (await sentinel.ask((client) => client.call('SENTINEL', 'REPLICAS', this.masterName))) as string[][];
        const healthy = replicas.map(toRecord).filter((replica) => replica.flags === 'slave' && replica['master-link-status'] === 'ok');
        ensure(healthy.length >= 1, `${sentinel.name} does not know the replica of ${show(master)}`);
      }
    });
  }

  async #launch(downAfterMs: number, failoverTimeoutMs: number, fastTimers: boolean): Promise<void> {
    const [masterPort, replicaPort, ...sentinelPorts] = await freePorts(5);
    const master = await this.addDataNode(masterPort!, []);
    const replica = await this.addDataNode(replicaPort!, [`replicaof ${HOST} ${masterPort}`]);
    await startAll([master, replica]);
    // Sentinels learn of replicas from the master's INFO, asked at once and then every 10 s: start them once it lists the replica.
    await waitFor('the replica did not sync', START_TIMEOUT_MS, async () => {
      ensure(onlineReplicas(await master.ask((client) => client.info('replication'))) === 1, `${master.name} has no online replica`);
    });
    const name = this.masterName;
    const watch = [
      `sentinel monitor ${name} ${HOST} ${masterPort} 2`,
      `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
      `sentinel failover-timeout ${name} ${failoverTimeoutMs}`,
      `sentinel parallel-syncs ${name} 1`,
      ...(this.password === undefined ? [] : [`sentinel auth-pass ${name} ${quoted(this.password)}`]),
    ];
    for (const port of sentinelPorts) this.#sentinels.push(await this.addProcess('sentinel', port, watch, ['--sentinel']));
    await startAll(this.#sentinels);
    if (fastTimers) await Promise.all(this.#sentinels.map((sentinel) => sentinel.ask((client) => client.call('SENTINEL', 'DEBUG', 'info-period', 1000, 'publish-period', 500))));
    await this.waitForReplicaOnline(START_TIMEOUT_MS);
    for (const sentinel of this.#sentinels) {
      await waitFor('the sentinels did not find each other', START_TIMEOUT_MS, async () => {
        const others = (await sentinel.ask((client) => client.call('SENTINEL', 'SENTINELS', name))) as unknown[];
        ensure(others.length === 2, `${sentinel.name} knows ${others.length} of the 2 other sentinels`);
      });
    }
  }
}

/** One line of CLUSTER NODES: a node as one node sees it. */
interface ClusterNodeView {
  id: string;
  port: number;
  flags: string[];
  configEpoch: number;
  slots: Array<[number, number]>;
}

function parseClusterNodes(text: string): ClusterNodeView[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id = '', address = '', flags = '', , , , epoch = '0', , ...slots] = line.split(' ');
      const ranges = slots.filter((slot) => !slot.startsWith('[')).map((slot): [number, number] => {
        const [first, last = first] = slot.split('-').map(Number);
        return [first!, last!];
      });
      return { id, port: Number(/:(\d+)@/.exec(address)?.[1]), flags: flags.split(','), configEpoch: Number(epoch), slots: ranges };
    });
}

class ClusterTopology extends LocalTopology {
  private constructor(dir: string, password: string | undefined) {
    super(dir, password);
  }

  static async start(options: ClusterTopologyOptions): Promise<ClusterTopology> {
    const topology = new ClusterTopology(await LocalTopology.makeDir('cluster'), options.password);
    return LocalTopology.launched(topology, () => topology.#launch(options.nodeTimeoutMs ?? 2000));
  }

  /** To merge into the YAML config under `chunkvault.redis`. */
  get config(): { mode: 'cluster'; nodes: string[] } {
    return { mode: 'cluster', nodes: [...this.dataNodes.values()].map((node) => show(node.address)) };
  }

  /** The hash slot of `key` (keys with the same `{hash tag}` share it). */
  async slotOf(key: string): Promise<number> {
    return Number(await this.#live()[0]!.ask((client) => client.call('CLUSTER', 'KEYSLOT', key)));
  }

  /** The master serving `slot`, by the live nodes' views; where they differ, the claim with the newest config epoch wins, as in the cluster itself. */
  async masterOfSlot(slot: number): Promise<HostPort> {
    const views = await Promise.all(this.#live().map((node) => node.ask((client) => client.call('CLUSTER', 'NODES')).then((text) => parseClusterNodes(String(text)), () => [])));
    const claims = views.flat().filter((view) => view.flags.includes('master') && view.slots.some(([first, last]) => first <= slot && slot <= last));
    const newest = claims.sort((a, b) => b.configEpoch - a.configEpoch)[0];
    if (!newest) throw new Error(`no live node names a master of slot ${slot}`);
    return { host: HOST, port: newest.port };
  }

  async masterOfKey(key: string): Promise<HostPort> {
    return this.masterOfSlot(await this.slotOf(key));
  }

  /** Until another node than the one on `oldMasterPort` serves `slot` as master, by its own view too, and says cluster_state:ok. */
  async waitForFailover(oldMasterPort: number, slot: number, timeoutMs: number): Promise<HostPort> {
    return waitFor(`no failover of slot ${slot} from ${HOST}:${oldMasterPort}`, timeoutMs, async () => {
      const master = await this.masterOfSlot(slot);
      ensure(master.port !== oldMasterPort, `the cluster still names ${HOST}:${oldMasterPort} as the master of slot ${slot}`);
      const node = this.node(master.port);
      const own = parseClusterNodes(String(await node.ask((client) => client.call('CLUSTER', 'NODES')))).find((view) => view.flags.includes('myself'));
      const serves = own?.flags.includes('master') && own.slots.some(([first, last]) => first <= slot && slot <= last);
      ensure(serves === true, `${node.name} is named master of slot ${slot} but does not say so itself`);
      await this.#assertStateOk(node);
      return master;
    });
  }

  /** Until the master of `slot` has an online replica. */
  async waitForReplicaOnline(slot: number, timeoutMs: number): Promise<void> {
    await waitFor(`no replica online for slot ${slot}`, timeoutMs, async () => {
      const master = await this.masterOfSlot(slot);
      const replication = await this.replicationOf(master);
      ensure(roleIn(replication) === 'master' && onlineReplicas(replication) >= 1, `the master ${show(master)} of slot ${slot} has no online replica`);
    });
  }

  #live(): RedisProcess[] {
    const live = [...this.dataNodes.values()].filter((node) => node.answers);
    if (live.length === 0) throw new Error('no cluster node is running');
    return live;
  }

  async #assertStateOk(node: RedisProcess): Promise<void> {
    const info = String(await node.ask((client) => client.call('CLUSTER', 'INFO')));
    ensure(info.includes('cluster_state:ok'), `${node.name} says ${/cluster_state:\w+/.exec(info)?.[0]}`);
  }

  async #launch(nodeTimeoutMs: number): Promise<void> {
    const ports = await freePorts(12);
    for (let i = 0; i < 6; i++) {
      const clusterLines = ['cluster-enabled yes', 'cluster-config-file nodes.conf', `cluster-node-timeout ${nodeTimeoutMs}`, `cluster-port ${ports[i + 6]}`];
      await this.addDataNode(ports[i]!, clusterLines);
    }
    const nodes = [...this.dataNodes.values()];
    await startAll(nodes);
    const create = ['--cluster', 'create', ...nodes.map((node) => show(node.address)), '--cluster-replicas', '1', '--cluster-yes'];
    await run('redis-cli', create, this.password === undefined ? {} : { REDISCLI_AUTH: this.password });
    await waitFor('the cluster did not come up', START_TIMEOUT_MS * 2, async () => {
      for (const node of nodes) await this.#assertStateOk(node);
    });
    const ranges = parseClusterNodes(String(await nodes[0]!.ask((client) => client.call('CLUSTER', 'NODES')))).flatMap((view) => view.slots);
    for (const [first] of ranges) await this.waitForReplicaOnline(first, START_TIMEOUT_MS * 2);
  }
}

async function run(command: string, args: readonly string[], env: Record<string, string> = {}): Promise<void> {
  try {
    await promisify(execFile)(command, args, { env: { ...process.env, ...env }, timeout: 60_000 });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${(error as Error).message} ${stdout} ${stderr}`.trim(), { cause: error });
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

class TlsRedis extends LocalTopology {
  #port = 0;

  private constructor(dir: string) {
    super(dir, undefined);
  }

  static async start(): Promise<TlsRedis> {
    const topology = new TlsRedis(await LocalTopology.makeDir('tls'));
    return LocalTopology.launched(topology, () => topology.#launch());
  }

  /** `rediss://127.0.0.1:<port>`; clients must trust `caFile`. */
  get url(): string {
    return `rediss://${HOST}:${this.#port}`;
  }

  get caFile(): string {
    return path.join(this.dir, 'ca.crt');
  }

  get certFile(): string {
    return path.join(this.dir, 'server.crt');
  }

  get keyFile(): string {
    return path.join(this.dir, 'server.key');
  }

  async #launch(): Promise<void> {
    const caKey = path.join(this.dir, 'ca.key');
    const request = path.join(this.dir, 'server.csr');
    const extensions = path.join(this.dir, 'server.ext');
    await writeFile(extensions, 'subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n');
    await run('openssl', ['req', '-x509', ...EC_KEY, '-keyout', caKey, '-out', this.caFile, '-days', '2', '-subj', '/CN=chunkvault test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
    await run('openssl', ['req', ...EC_KEY, '-keyout', this.keyFile, '-out', request, '-subj', '/CN=localhost']);
    await run('openssl', ['x509', '-req', '-in', request, '-CA', this.caFile, '-CAkey', caKey, '-set_serial', '1', '-days', '2', '-extfile', extensions, '-out', this.certFile]);
    this.#port = await freeLoopbackPort();
    const tls = [`tls-port ${this.#port}`, `tls-cert-file ${quoted(this.certFile)}`, `tls-key-file ${quoted(this.keyFile)}`, `tls-ca-cert-file ${quoted(this.caFile)}`, 'tls-auth-clients optional'];
    // `port 0` comes after the common `port` line and wins: nothing listens without TLS.
    const server = await this.addProcess('redis-tls', this.#port, ['save ""', 'appendonly no', ...tls, 'port 0'], [], { tls: { ca: await readFile(this.caFile) } });
    await server.start();
  }
}

export type { SentinelTopology, ClusterTopology, TlsRedis };
