/**
 * GCS as a cloud backend kind (cloud-backend-kind.ts): its config block and how a block
 * becomes a GcsBackend.
 */
import { z } from 'zod';
import { defineCloudBackend, objectStoreFields } from './cloud-backend-kind.js';
import { GcsBackend } from './gcs.backend.js';

/** The `storage.backends.cloud.gcp_gcs` block. */
export const gcsBlockSchema = z
  .object({
    bucket: z.string().min(1),
    /** The bucket's location (informational: GCS buckets are global by name). */
    region: z.string().min(1).optional(),
    /** A GCS-compatible server (an emulator), e.g. "http://127.0.0.1:9199"; Google when absent. */
    endpoint: z.string().url().optional(),
    project_id: z.string().min(1).optional(),
    ...objectStoreFields,
  })
  .strict();

/** GCS as a cloud backend kind (cloud-backend-kind.ts). */
export const GCS_BACKEND_KIND = defineCloudBackend({
  name: 'gcp_gcs',
  provider: 'gcp',
  configSchema: gcsBlockSchema,
  create: (block, name) => new GcsBackend({ name, bucket: block.bucket, region: block.region, endpoint: block.endpoint, projectId: block.project_id, keyPrefix: block.key_prefix }),
});
