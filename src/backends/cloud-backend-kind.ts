/**
 * A kind of cloud backend as the rest of chunkvault sees it: the name of its config block
 * under `storage.backends.cloud` (also the backend name its replicas record), the
 * `cloud_provider` routed to it, the block's schema, and how a configured block becomes a
 * backend. Each cloud backend's file defines its kind; cloud-backends.ts lists them, and the
 * config schema, the routing and the start-up checks read that list, so a new backend is its
 * own file plus one entry there.
 */
import { z } from 'zod';
import type { Backend } from './backend.js';

const GIB = 1024 ** 3;

/** Settings every object-store block shares. Credentials are never here: each SDK's own chain supplies them. */
export const objectStoreFields = {
  /** Every object key starts with this (e.g. "chunkvault/"), so one bucket can hold other data too. */
  key_prefix: z.string().default(''),
  /** Upper bound on replica bytes chunkvault keeps on this backend; 0 (the default) disables it. */
  max_size_gb: z.number().nonnegative().default(0),
};

/** What every object-store block's schema yields. */
export type ObjectStoreBlockSchema = z.ZodType<{ key_prefix: string; max_size_gb: number }, unknown>;

export interface CloudBackendKind<Name extends string = string, Schema extends ObjectStoreBlockSchema = ObjectStoreBlockSchema> {
  /** The config block's name, and the backend name recorded for its replicas. */
  readonly name: Name;
  /** The replicas' `cloud_provider` that routes to this backend when cloud storage is enabled. */
  readonly provider: string;
  /** The block as users write it (snake_case YAML). */
  readonly configSchema: Schema;
  /**
   * The backend a configured block describes, and its byte limit (0: none). No I/O. Throws
   * ConfigError on a bad block. `name`: the backend's name, when it is not this kind's
   * replica backend (the staging area in the same bucket).
   */
  open(block: unknown, name?: string): { backend: Backend; limitBytes: number };
}

/** A kind from its parts: `create` gets the block as its schema parsed it. */
export function defineCloudBackend<Name extends string, Schema extends ObjectStoreBlockSchema>(parts: {
  name: Name;
  provider: string;
  configSchema: Schema;
  create: (block: z.output<Schema>, name: string) => Backend;
}): CloudBackendKind<Name, Schema> {
  return {
    name: parts.name,
    provider: parts.provider,
    configSchema: parts.configSchema,
    open(block, name = parts.name) {
      // Parsed again from the frozen config: the block's own type, without a cast.
      const parsed = parts.configSchema.parse(block);
      return { backend: parts.create(parsed, name), limitBytes: Math.floor(parsed.max_size_gb * GIB) };
    },
  };
}
