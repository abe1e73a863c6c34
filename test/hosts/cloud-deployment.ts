/**
 * One chunkvault deployment spread over the hosts: one Redis key prefix on the hosts' Redis
 * (with its password), one fresh bucket on the S3 server and container on Azurite, each under
 * a fresh key prefix. Every host gets a config file of its own that names the servers at its
 * forwarders, and an environment holding the secrets (REDIS_URL with the password, the cloud
 * credentials): a config file never does. The test process opens the same deployment on
 * loopback to check the outcome. Bucket names carry the test process's RUN_ID, so the next
 * test process deletes those of one that died.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dump } from 'js-yaml';
import { openChunkvault, type Chunkvault } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { Config } from '../../src/config/config.schema.js';
import { createLogger } from '../../src/logging/logger.js';
import { azureTestContainer, cloudServers, createTestBuckets, exportCredentials, s3TestClient, type CloudServers } from '../support/cloud-servers.js';
import { deleteKeys } from '../support/harness.js';
import { s3Keys } from '../faults/support/cloud-env.js';
import type { Host } from './hosts.js';
import type { HostProcessEnv } from './host-process.js';
import type { PasswordRedis } from './password-redis.js';
import { ownerAlive, RUN_ID } from './leftovers.js';

const BUCKET_PREFIX = 'cv-hosts-';

/** The services a host of a cloud deployment reaches, by the names Hosts.create is given. */
export const CLOUD_SERVICES = ['redis', 's3', 'azure'] as const;

export interface DeploymentOptions {
  /** Where producers stage chunk bytes: a bucket (hosts share no directory). */
  staging: 'aws_s3' | 'azure_blob';
  /** Replicas on the local backend too (`use_local_storage: true`), each host at its own `data` directory. */
  localStorage?: boolean;
  /** Set in every host's YAML (and the test process's). */
  settings?: Settings;
}

/** YAML settings by dotted key path, e.g. `{ 'chunkvault.routing.queue_per_backend': true }`. */
export type Settings = Readonly<Record<string, unknown>>;

export class CloudDeployment {
  readonly prefix = `cvhosts-${randomBytes(5).toString('hex')}`;
  /** `cv-hosts-<runId>-<random>`: the owner's RUN_ID, for the sweep of a dead owner's buckets. */
  readonly bucket = `${BUCKET_PREFIX}${RUN_ID}-${randomBytes(4).toString('hex')}`;
  readonly keyPrefix = `h-${randomBytes(4).toString('hex')}/`;
  readonly servers: CloudServers;
  readonly #redis: PasswordRedis;
  readonly #options: DeploymentOptions;
  readonly #vaults: Chunkvault[] = [];
  #removeBuckets: (() => Promise<void>) | undefined;

  private constructor(redis: PasswordRedis, options: DeploymentOptions) {
    this.servers = cloudServers();
    this.#redis = redis;
    this.#options = options;
  }

  /**
   * Creates the bucket and container; `remove()` deletes them with everything in them. First
   * deletes those of test processes that died without removing theirs.
   */
  static async create(redis: PasswordRedis, options: DeploymentOptions): Promise<CloudDeployment> {
    const deployment = new CloudDeployment(redis, options);
    // The test process's own vault takes its credentials from its environment, as the hosts do.
    exportCredentials(deployment.servers);
    await sweepOrphanedBuckets(deployment.servers);
    deployment.#removeBuckets = await createTestBuckets(deployment.servers, deployment.bucket);
    return deployment;
  }

  /** The loopback ports of CLOUD_SERVICES, for Hosts.create. */
  get services(): Record<(typeof CLOUD_SERVICES)[number], number> {
    return { redis: this.#redis.port, s3: Number(new URL(this.servers.s3.endpoint).port), azure: Number(new URL(this.servers.azure.endpoint).port) };
  }

  /** Writes `host`'s config file (servers at its forwarders, its own directories; `settings` set last); returns its path. */
  async configFor(host: Host, settings: Settings = {}): Promise<string> {
    const configPath = path.join(host.dir, 'config.yml');
    await writeFile(configPath, dump(this.#yaml({ s3: `http://${host.endpoint('s3')}`, azure: this.#azureEndpoint(host.endpoint('azure')) }, host.dir, settings)));
    return configPath;
  }

  /** `host`'s environment: REDIS_URL with the password at its forwarder, the cloud credentials, and `extra`. */
  envFor(host: Host, extra: Record<string, string> = {}): HostProcessEnv {
    const azureEndpoint = this.#azureEndpoint(host.endpoint('azure'));
    return {
      REDIS_URL: this.#redis.url(...splitEndpoint(host.endpoint('redis'))),
      AWS_ACCESS_KEY_ID: this.servers.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: this.servers.s3.secretAccessKey,
      // No instance metadata service to ask (and no route to one).
      AWS_EC2_METADATA_DISABLED: 'true',
      AZURE_STORAGE_CONNECTION_STRING: this.servers.azure.connectionString.replace(/BlobEndpoint=[^;]*/, `BlobEndpoint=${azureEndpoint}`),
      ...extra,
    };
  }

  /**
   * The deployment as the test process sees it, on loopback (directories under `dir`, unless
   * `settings` say otherwise: a local backend must be the disk of the host that first used it).
   */
  async openVault(dir: string, settings: Settings = {}): Promise<Chunkvault> {
    const configPath = path.join(dir, 'test-process.yml');
    await writeFile(configPath, dump(this.#yaml({ s3: this.servers.s3.endpoint, azure: this.servers.azure.endpoint }, dir, settings)));
    const { config } = loadConfig({ configPath, env: { REDIS_URL: this.#redis.url() } });
    const vault = await openChunkvault(config, { logger: createLogger((process.env.TEST_LOG_LEVEL ?? 'silent') as Config['chunkvault']['log_level']), announceUnimplemented: false });
    this.#vaults.push(vault);
    return vault;
  }

  /** Closes the test process's vaults, deletes the deployment's Redis keys, the objects, the bucket and container. */
  async remove(): Promise<void> {
    for (const vault of this.#vaults.splice(0).reverse()) await vault.close().catch(() => undefined);
    await deleteKeys(this.#redis.url(), `{${this.prefix}}*`);
    if (!this.#removeBuckets) return;
    await emptyBucket(this.servers, this.bucket);
    // Deleting the container deletes its blobs.
    await this.#removeBuckets();
    this.#removeBuckets = undefined;
  }

  #azureEndpoint(origin: string): string {
    return `${origin.startsWith('http') ? origin : `http://${origin}`}${new URL(this.servers.azure.endpoint).pathname}`;
  }

  #yaml(endpoints: { s3: string; azure: string }, dir: string, settings: Settings): Record<string, unknown> {
    const localStorage = this.#options.localStorage ?? false;
    const base: Record<string, unknown> = {
      use_local_storage: localStorage,
      storage: {
        backends: {
          local: { base_path: path.join(dir, 'data') },
          cloud: {
            enabled: true,
            aws_s3: { bucket: this.bucket, region: this.servers.s3.region, endpoint: endpoints.s3, force_path_style: true, key_prefix: this.keyPrefix },
            azure_blob: { container: this.bucket, endpoint: endpoints.azure, key_prefix: this.keyPrefix },
          },
        },
        organization: { checkpoint_interval_chunks: 10 },
        cleanup: { enable_auto_cleanup: false },
      },
      chunkvault: {
        redis: { prefix: this.prefix },
        staging: { backend: this.#options.staging, dir: path.join(dir, 'staging') },
        retry: { attempts: 3, backoff_ms: 100 },
        worker: { lock_duration_ms: 2000, stalled_interval_ms: 1000, shutdown_timeout_ms: 10_000 },
        log_level: 'info',
      },
    };
    return applySettings(applySettings(base, this.#options.settings ?? {}), settings);
  }
}

/** Deletes every object of the S3 bucket `bucket` (directly on the server). */
async function emptyBucket(servers: CloudServers, bucket: string): Promise<void> {
  const sdk = await import('@aws-sdk/client-s3');
  const client = s3TestClient(sdk, servers);
  try {
    const keys = await s3Keys(servers, bucket);
    for (let i = 0; i < keys.length; i += 1000) {
      await client.send(new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }));
    }
  } finally {
    client.destroy();
  }
}

/** The buckets and containers `cv-hosts-<runId>-...` of test processes that are gone, with what they hold. */
async function sweepOrphanedBuckets(servers: CloudServers): Promise<void> {
  const sdk = await import('@aws-sdk/client-s3');
  const client = s3TestClient(sdk, servers);
  try {
    const { Buckets = [] } = await client.send(new sdk.ListBucketsCommand({}));
    for (const { Name: name } of Buckets) {
      const runId = name?.startsWith(BUCKET_PREFIX) ? name.slice(BUCKET_PREFIX.length).split('-')[0] : undefined;
      if (!name || !runId || ownerAlive(runId)) continue;
      await emptyBucket(servers, name);
      await client.send(new sdk.DeleteBucketCommand({ Bucket: name })).catch(() => undefined);
      await (await azureTestContainer(servers, name)).deleteIfExists();
    }
  } finally {
    client.destroy();
  }
}

function splitEndpoint(endpoint: string): [string, number] {
  const at = endpoint.lastIndexOf(':');
  return [endpoint.slice(0, at), Number(endpoint.slice(at + 1))];
}

/** Sets each `dotted.key.path` of `settings` in `yaml` (creating the mappings on the way). */
function applySettings(yaml: Record<string, unknown>, settings: Settings): Record<string, unknown> {
  for (const [dotted, value] of Object.entries(settings)) {
    const keys = dotted.split('.');
    let node = yaml;
    for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[keys.at(-1)!] = value;
  }
  return yaml;
}
