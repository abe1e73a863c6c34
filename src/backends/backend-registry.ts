/**
 * Builds the configured backends (one exhaustive switch) and routes each replica to one.
 *
 * Routing by a replica's `cloudProvider`:
 * - cloud storage disabled (the seed's default): every replica goes to the local backend and
 *   its `cloudProvider` is only a label, as in the seed design;
 * - cloud storage enabled: `aws` -> aws_s3, `gcp` -> gcp_gcs, `azure` -> azure_blob, each only
 *   when its block is configured; `local` -> the local backend when use_local_storage is on.
 *   Anything else is a routing error that no retry can fix (`routeOf` says which and why).
 *
 * Cloud SDKs are imported by each backend on first use, so a local-only deployment never
 * loads them.
 */
import { CLOUD_PROVIDERS, type Config } from '../config/config.schema.js';
import { InvalidInputError } from '../errors.js';
import { CLOUD_BACKENDS, type CloudBackendName } from '../domain/types.js';
import type { Backend } from './backend.js';
import { LocalBackend } from './local.backend.js';
import { S3Backend } from './s3.backend.js';
import { GcsBackend } from './gcs.backend.js';
import { AzureBlobBackend } from './azure-blob.backend.js';

export type BackendKind = 'local' | CloudBackendName;

/** Backend name recorded for a replica whose provider routes nowhere (it failed for good). */
export const UNROUTED_BACKEND = 'none';

/** The provider name that routes to the local backend when cloud storage is enabled. */
export const LOCAL_PROVIDER = 'local';

export class BackendRegistry {
  readonly #backends = new Map<string, Backend>();
  /** Byte limit per backend name; 0 means none. */
  readonly #limits = new Map<string, number>();
  readonly #cloudEnabled: boolean;
  readonly #local: Backend | undefined;

  constructor(config: Config) {
    const cloud = config.storage.backends.cloud;
    this.#cloudEnabled = cloud.enabled;
    const kinds: BackendKind[] = [];
    if (config.use_local_storage && config.storage.backends.local.enabled) kinds.push('local');
    if (cloud.enabled) kinds.push(...CLOUD_BACKENDS.filter((name) => cloud[name] !== undefined));
    for (const kind of kinds) {
      const gib = 1024 ** 3;
      switch (kind) {
        case 'local': {
          const local = config.storage.backends.local;
          this.#add(new LocalBackend({ basePath: local.base_path, staleTempAfterMs: config.chunkvault.worker.stale_temp_after_ms }), local.max_size_gb * gib);
          break;
        }
        case 'aws_s3': {
          const s3 = cloud.aws_s3!;
          this.#add(
            new S3Backend({ name: kind, bucket: s3.bucket, region: s3.region, endpoint: s3.endpoint, forcePathStyle: s3.force_path_style, keyPrefix: s3.key_prefix }),
            s3.max_size_gb * gib,
          );
          break;
        }
        case 'gcp_gcs': {
          const gcs = cloud.gcp_gcs!;
          this.#add(new GcsBackend({ name: kind, bucket: gcs.bucket, region: gcs.region, endpoint: gcs.endpoint, projectId: gcs.project_id, keyPrefix: gcs.key_prefix }), gcs.max_size_gb * gib);
          break;
        }
        case 'azure_blob': {
          const azure = cloud.azure_blob!;
          this.#add(new AzureBlobBackend({ name: kind, container: azure.container, endpoint: azure.endpoint, keyPrefix: azure.key_prefix }), azure.max_size_gb * gib);
          break;
        }
        default: {
          const unreachable: never = kind;
          throw new Error(`unknown backend kind ${String(unreachable)}`);
        }
      }
    }
    if (this.#backends.size === 0) throw new Error('no storage backend is enabled');
    this.#local = this.#backends.get('local');
  }

  #add(backend: Backend, limitBytes: number): void {
    this.#backends.set(backend.name, backend);
    this.#limits.set(backend.name, Math.floor(limitBytes));
  }

  /** The backend for a replica bound for `cloudProvider`, or why there is none (a permanent error). */
  routeOf(cloudProvider: string): { backend: Backend } | { problem: string } {
    if (!this.#cloudEnabled) {
      return this.#local ? { backend: this.#local } : { problem: 'no local backend is enabled' };
    }
    if (cloudProvider === LOCAL_PROVIDER) {
      return this.#local ? { backend: this.#local } : { problem: `cloud provider "${LOCAL_PROVIDER}" is disabled: use_local_storage is false` };
    }
    if (Object.hasOwn(CLOUD_PROVIDERS, cloudProvider)) {
      const name = CLOUD_PROVIDERS[cloudProvider as keyof typeof CLOUD_PROVIDERS];
      const backend = this.#backends.get(name);
      return backend ? { backend } : { problem: `cloud provider "${cloudProvider}" is disabled: storage.backends.cloud.${name} is not configured` };
    }
    const known = [...Object.keys(CLOUD_PROVIDERS), LOCAL_PROVIDER].join(', ');
    return { problem: `unknown cloud provider ${JSON.stringify(cloudProvider)} (known: ${known})` };
  }

  /** The backend a replica bound for `cloudProvider` is written to; InvalidInputError (not retryable) when none is. */
  forReplica(cloudProvider: string): Backend {
    const route = this.routeOf(cloudProvider);
    if ('problem' in route) throw new InvalidInputError(route.problem);
    return route.backend;
  }

  /** Where checkpoint manifests are written: the local backend, else the first cloud one configured. */
  forCheckpoints(): Backend {
    return this.#local ?? this.#backends.values().next().value!;
  }

  /** The backend recorded under `name` in the catalog, or undefined when none is configured. */
  byName(name: string): Backend | undefined {
    return this.#backends.get(name);
  }

  /** Configured byte limit of a backend; 0 when unlimited. */
  limitOf(name: string): number {
    return this.#limits.get(name) ?? 0;
  }

  all(): Backend[] {
    return [...this.#backends.values()];
  }

  async close(): Promise<void> {
    for (const backend of this.#backends.values()) await backend.close();
  }
}
