/**
 * Builds the configured backends (the local one, and each configured kind of
 * cloud-backends.ts) and routes each replica to one.
 *
 * Routing by a replica's `cloudProvider`:
 * - cloud storage disabled (the seed's default): every replica goes to the local backend and
 *   its `cloudProvider` is only a label, as in the seed design;
 * - cloud storage enabled: a cloud kind's `provider` (`aws`, `gcp`, `azure`) -> that kind's
 *   backend (aws_s3, gcp_gcs, azure_blob), only when its block is configured; `local` -> the local backend when use_local_storage is on.
 *   Anything else is a routing error that no retry can fix (`routeOf` says which and why).
 *
 * Cloud SDKs are imported by each backend on first use, so a local-only deployment never
 * loads them.
 */
import type { Config } from '../config/config.schema.js';
import { InvalidInputError } from '../errors.js';
import type { Backend } from './backend.js';
import { LocalBackend } from './local.backend.js';
import { CLOUD_BACKEND_KINDS } from './cloud-backends.js';

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
    if (config.use_local_storage && config.storage.backends.local.enabled) {
      const local = config.storage.backends.local;
      this.#add(new LocalBackend({ basePath: local.base_path, staleTempAfterMs: config.chunkvault.worker.stale_temp_after_ms }), Math.floor(local.max_size_gb * 1024 ** 3));
    }
    if (cloud.enabled) {
      for (const kind of CLOUD_BACKEND_KINDS) {
        const block = cloud[kind.name];
        if (block === undefined) continue;
        const { backend, limitBytes } = kind.open(block);
        this.#add(backend, limitBytes);
      }
    }
    if (this.#backends.size === 0) throw new Error('no storage backend is enabled');
    this.#local = this.#backends.get('local');
  }

  #add(backend: Backend, limitBytes: number): void {
    this.#backends.set(backend.name, backend);
    this.#limits.set(backend.name, limitBytes);
  }

  /** The backend for a replica bound for `cloudProvider`, or why there is none (a permanent error). */
  routeOf(cloudProvider: string): { backend: Backend } | { problem: string } {
    if (!this.#cloudEnabled) {
      return this.#local ? { backend: this.#local } : { problem: 'no local backend is enabled' };
    }
    if (cloudProvider === LOCAL_PROVIDER) {
      return this.#local ? { backend: this.#local } : { problem: `cloud provider "${LOCAL_PROVIDER}" is disabled: use_local_storage is false` };
    }
    const kind = CLOUD_BACKEND_KINDS.find((candidate) => candidate.provider === cloudProvider);
    if (kind) {
      const backend = this.#backends.get(kind.name);
      return backend ? { backend } : { problem: `cloud provider "${cloudProvider}" is disabled: storage.backends.cloud.${kind.name} is not configured` };
    }
    const known = [...CLOUD_BACKEND_KINDS.map((candidate) => candidate.provider), LOCAL_PROVIDER].join(', ');
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
