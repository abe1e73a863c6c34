/**
 * Where chunkvault's Redis is and how to reach it: one server (standalone), the master a set
 * of Sentinels names (sentinel), or a Redis Cluster (cluster), through ioredis's own clients,
 * optionally over TLS. Every connection chunkvault makes comes from `connect`.
 *
 * Secrets come from the environment only, read here and nowhere else: REDIS_URL's user and
 * password (standalone), REDIS_USERNAME / REDIS_PASSWORD (the data nodes, any mode), and
 * REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD (the Sentinels).
 *
 * What the clients are told, so that a failover is ridden out rather than waited on for good:
 * - a connection that reads nothing for `socketTimeout` while commands wait on it is dropped
 *   and made again (a master that hangs, e.g. paused, keeps its TCP connections open);
 * - sentinel: the client follows the Sentinels' `+switch-master` at once (failoverDetector);
 * - a command answered READONLY (the master it reached was demoted) reconnects and is resent;
 * - cluster: commands that meet a closed connection or CLUSTERDOWN are retried for about as
 *   long as a cluster failover takes, refreshing the slot map, which is also refreshed every
 *   few seconds.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import { configSchema, type Config } from '../config/config.schema.js';
import { ChunkvaultError } from '../errors.js';
import { redactUrl } from '../logging/logger.js';

/** A connection chunkvault uses: a single-node client (standalone, sentinel) or a cluster client. */
export type RedisClient = Redis | Cluster;

export type RedisSettings = Config['chunkvault']['redis'];

/** Credentials from the environment (never from the config file). */
export interface RedisCredentials {
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
}

export function redisCredentialsFromEnv(env: NodeJS.ProcessEnv = process.env): RedisCredentials {
  const value = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  return {
    ...definedOnly({ username: value('REDIS_USERNAME'), password: value('REDIS_PASSWORD') }),
    ...definedOnly({ sentinelUsername: value('REDIS_SENTINEL_USERNAME'), sentinelPassword: value('REDIS_SENTINEL_PASSWORD') }),
  };
}

/** What a connection is for, which decides how long it may wait for an answer. */
export type ConnectionRole =
  /** BullMQ workers: their blocking fetch waits up to 10 s for a job. */
  | 'worker'
  /** Queues, locks and the catalog: no command of theirs blocks. */
  | 'commands';

/** A blocking fetch waits up to 10 s (BullMQ's ceiling); a worker connection silent much longer hangs. */
const WORKER_SOCKET_TIMEOUT_MS = 15_000;
const COMMAND_SOCKET_TIMEOUT_MS = 5_000;
/** Cluster: retry a command that met a failover every 300 ms for up to ~20 s. */
const CLUSTER_RETRY_DELAY_MS = 300;
const CLUSTER_MAX_REDIRECTIONS = 64;
const CLUSTER_SLOTS_REFRESH_MS = 5_000;

export class RedisEndpoint {
  readonly #settings: RedisSettings;
  readonly #credentials: RedisCredentials;
  #tls: ConnectionOptions | undefined | null = null;

  /** The one Redis server at `url`, with the settings' defaults otherwise. */
  static standalone(url: string): RedisEndpoint {
    return new RedisEndpoint(configSchema.parse({ chunkvault: { redis: { url } } }).chunkvault.redis, {});
  }

  /** No I/O here: TLS files are read at the first connection. */
  constructor(settings: RedisSettings, credentials: RedisCredentials = redisCredentialsFromEnv()) {
    this.#settings = settings;
    this.#credentials = credentials;
  }

  get mode(): RedisSettings['mode'] {
    return this.#settings.mode;
  }

  /** Replicas that must acknowledge a catalog record before its job completes (min_replicas_acked, by mode when unset). */
  get minReplicasAcked(): number {
    return this.#settings.min_replicas_acked ?? (this.#settings.mode === 'standalone' ? 0 : 1);
  }

  /** Where this endpoint points, for messages and logs (no secrets). */
  describe(): string {
    const { mode, url, nodes, sentinel_master: master } = this.#settings;
    if (mode === 'standalone') return redactUrl(url);
    if (mode === 'sentinel') return `master "${master}" of the Sentinels ${nodes.join(', ')}`;
    return `the Redis Cluster at ${nodes.join(', ')}`;
  }

  /**
   * A new connection named `name` (CLIENT LIST shows it). `autoPipelining`: commands issued in
   * one event-loop turn go out in one write; only for chunkvault's own non-blocking commands
   * and scripts, never for BullMQ's connections (reported to break job handling there).
   */
  connect(name: string, options: { role?: ConnectionRole; autoPipelining?: boolean } = {}): RedisClient {
    const common: RedisOptions = {
      connectionName: name,
      // BullMQ refuses connections with a per-request retry limit; the catalog's callers bound their own waits.
      maxRetriesPerRequest: null,
      socketTimeout: options.role === 'worker' ? WORKER_SOCKET_TIMEOUT_MS : COMMAND_SOCKET_TIMEOUT_MS,
      reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 2 : false),
      ...this.#access(),
    };
    const autoPipelining = options.autoPipelining === true;
    switch (this.#settings.mode) {
      case 'standalone':
        return new Redis(this.#settings.url, { ...common, enableAutoPipelining: autoPipelining });
      case 'sentinel':
        return new Redis({ ...common, ...this.#sentinelOptions(), enableAutoPipelining: autoPipelining });
      case 'cluster':
        return new Cluster(this.#clusterNodes(), this.#clusterOptions(common, autoPipelining));
    }
  }

  /**
   * Resolves once Redis answers PING (through the Sentinels, or from the cluster with every
   * slot served); throws E_REDIS_UNAVAILABLE naming what did not answer within `timeoutMs`,
   * instead of letting a client retry forever.
   */
  async assertReachable(timeoutMs = 2000): Promise<void> {
    const probe = this.#probe(timeoutMs);
    // The cause (refused, NOAUTH, an untrusted certificate) comes as an event; the command only hears the connection closed.
    let cause: Error | undefined;
    probe.on('error', (error: Error) => {
      cause ??= error;
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          await probe.connect();
          await probe.ping();
        })(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (error) {
      const why = cause?.message ?? (error as Error).message;
      throw new ChunkvaultError('E_REDIS_UNAVAILABLE', `no Redis answers at ${this.describe()} (${why}). ${this.#hint()}`, { cause: cause ?? error, retryable: true });
    } finally {
      clearTimeout(timer);
      probe.disconnect();
    }
  }

  #probe(timeoutMs: number): RedisClient {
    const once: RedisOptions = {
      lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false,
      ...this.#access(),
    };
    switch (this.#settings.mode) {
      case 'standalone':
        return new Redis(this.#settings.url, once);
      case 'sentinel':
        return new Redis({ ...once, ...this.#sentinelOptions(), sentinelRetryStrategy: () => null, failoverDetector: false });
      case 'cluster':
        return new Cluster(this.#clusterNodes(), {
          lazyConnect: true, enableOfflineQueue: false, clusterRetryStrategy: () => null, slotsRefreshTimeout: timeoutMs,
          redisOptions: { connectTimeout: timeoutMs, maxRetriesPerRequest: 0, ...this.#access() },
          ...this.#clusterAddressing(),
        });
    }
  }

  #hint(): string {
    const tls = this.#tlsOptions() ? ' Over TLS: the servers\' certificates must be signed by chunkvault.redis.tls.ca_file (or a system CA) for the name connected to (or tls.server_name).' : '';
    return this.#modeHint() + tls;
  }

  #modeHint(): string {
    switch (this.#settings.mode) {
      case 'standalone':
        return 'Start one (e.g. `redis-server --port 6379 --bind 127.0.0.1`, or `docker compose up -d redis`) or set REDIS_URL.';
      case 'sentinel':
        return 'Check chunkvault.redis.nodes (the Sentinels), chunkvault.redis.sentinel_master, and REDIS_PASSWORD / REDIS_SENTINEL_PASSWORD.';
      case 'cluster':
        return 'Check chunkvault.redis.nodes (some of the cluster\'s nodes) and REDIS_PASSWORD; the cluster must serve every slot (CLUSTER INFO: cluster_state:ok).';
    }
  }

  /** The data nodes' credentials and TLS, as every connection to them carries them. */
  #access(): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
    return definedOnly({ username: this.#credentials.username, password: this.#credentials.password, tls: this.#tlsOptions() });
  }

  #sentinelOptions(): RedisOptions {
    const tls = this.#tlsOptions();
    return {
      sentinels: this.#settings.nodes.map(parseHostPort),
      name: this.#settings.sentinel_master!,
      role: 'master',
      // Follow +switch-master at once, rather than when the old master's connection ends.
      failoverDetector: true,
      ...definedOnly({ sentinelUsername: this.#credentials.sentinelUsername, sentinelPassword: this.#credentials.sentinelPassword }),
      ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    };
  }

  #clusterNodes(): ClusterNode[] {
    return this.#settings.nodes.map(parseHostPort);
  }

  #clusterOptions(common: RedisOptions, autoPipelining: boolean): ClusterOptions {
    const { connectionName, maxRetriesPerRequest, socketTimeout, reconnectOnError } = common;
    return {
      enableAutoPipelining: autoPipelining,
      retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
      retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
      retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
      maxRedirections: CLUSTER_MAX_REDIRECTIONS,
      slotsRefreshInterval: CLUSTER_SLOTS_REFRESH_MS,
      redisOptions: { connectionName, maxRetriesPerRequest, socketTimeout, reconnectOnError, ...this.#access() },
      ...this.#clusterAddressing(),
    };
  }

  /** With TLS, nodes are connected to by the names the cluster announces (certificates name hosts, not addresses). */
  #clusterAddressing(): Pick<ClusterOptions, 'dnsLookup'> {
    return this.#tlsOptions() ? { dnsLookup: (address, callback) => callback(null, address) } : {};
  }

  /** TLS options, or undefined for plain TCP; files are read once. */
  #tlsOptions(): ConnectionOptions | undefined {
    if (this.#tls !== null) return this.#tls;
    const { tls, url, mode } = this.#settings;
    const byUrl = mode === 'standalone' && url.startsWith('rediss:');
    if (!tls.enabled && !byUrl) return (this.#tls = undefined);
    const read = (file: string | undefined, what: string): Buffer | undefined => {
      if (file === undefined) return undefined;
      try {
        return readFileSync(file);
      } catch (error) {
        throw new ChunkvaultError('E_CONFIG', `chunkvault.redis.tls.${what}: cannot read ${file} (${(error as Error).message})`, { cause: error });
      }
    };
    this.#tls = definedOnly({
      ca: read(tls.ca_file, 'ca_file'),
      cert: read(tls.cert_file, 'cert_file'),
      key: read(tls.key_file, 'key_file'),
      servername: tls.server_name,
    });
    return this.#tls;
  }
}

/**
 * The connections to every master `client` reaches, once it is ready: itself, or a cluster's
 * masters (each key of a deployment is on the master of its one slot). For commands that take
 * no key, as SCAN.
 */
export async function mastersOf(client: RedisClient): Promise<Redis[]> {
  await client.ping();
  return client instanceof Cluster ? client.nodes('master') : [client];
}

function parseHostPort(node: string): { host: string; port: number } {
  const split = node.lastIndexOf(':');
  const host = node.slice(0, split).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(node.slice(split + 1)) };
}

/** `object` without its undefined properties (exactOptionalPropertyTypes). */
function definedOnly<T extends object>(object: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
