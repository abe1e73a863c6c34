/**
 * Builds the configured backends (one exhaustive switch) and routes each replica to one.
 * While cloud backends are not implemented, every replica goes to the local backend and
 * keeps its `cloudProvider` as a label, as in the seed design.
 */
import type { Config } from '../config/config.schema.js';
import type { Backend } from './backend.js';
import { LocalBackend } from './local.backend.js';

export type BackendKind = 'local';

export class BackendRegistry {
  readonly #backends = new Map<string, Backend>();
  readonly #default: Backend;
  /** Byte limit per backend name; 0 means none. */
  readonly #limits = new Map<string, number>();

  constructor(config: Config) {
    const kinds: BackendKind[] = config.use_local_storage && config.storage.backends.local.enabled ? ['local'] : [];
    for (const kind of kinds) {
      switch (kind) {
        case 'local': {
          const local = config.storage.backends.local;
          const backend = new LocalBackend({ basePath: local.base_path, staleTempAfterMs: config.chunkvault.worker.stale_temp_after_ms });
          this.#backends.set(backend.name, backend);
          this.#limits.set(backend.name, Math.floor(local.max_size_gb * 1024 ** 3));
          break;
        }
        default: {
          const unreachable: never = kind;
          throw new Error(`unknown backend kind ${String(unreachable)}`);
        }
      }
    }
    const first = this.#backends.values().next();
    if (first.done) throw new Error('no storage backend is enabled');
    this.#default = first.value;
  }

  /** The backend a replica bound for `cloudProvider` is written to. */
  forReplica(_cloudProvider: string): Backend {
    return this.#default;
  }

  /** Where checkpoint manifests are written (the default backend). */
  forCheckpoints(): Backend {
    return this.#default;
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
