/**
 * S3 as a cloud backend kind (cloud-backend-kind.ts): its config block and how a block
 * becomes an S3Backend.
 */
import { z } from 'zod';
import { defineCloudBackend, objectStoreFields } from './cloud-backend-kind.js';
import { S3Backend } from './s3.backend.js';

/** The `storage.backends.cloud.aws_s3` block. */
export const s3BlockSchema = z
  .object({
    bucket: z.string().min(1),
    region: z.string().min(1).default('us-east-1'),
    /** An S3-compatible server (Ceph radosgw, MinIO...), e.g. "http://127.0.0.1:7480"; AWS when absent. */
    endpoint: z.string().url().optional(),
    /** Bucket in the path rather than the host name; most S3-compatible servers need it. */
    force_path_style: z.boolean().default(false),
    ...objectStoreFields,
  })
  .strict();

/** S3 as a cloud backend kind (cloud-backend-kind.ts). */
export const S3_BACKEND_KIND = defineCloudBackend({
  name: 'aws_s3',
  provider: 'aws',
  configSchema: s3BlockSchema,
  create: (block, name) => new S3Backend({ name, bucket: block.bucket, region: block.region, endpoint: block.endpoint, forcePathStyle: block.force_path_style, keyPrefix: block.key_prefix }),
});
