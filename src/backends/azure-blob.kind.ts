/**
 * Azure Blob as a cloud backend kind (cloud-backend-kind.ts): its config block and how a block
 * becomes an AzureBlobBackend.
 */
import { z } from 'zod';
import { defineCloudBackend, objectStoreFields } from './cloud-backend-kind.js';
import { AzureBlobBackend } from './azure-blob.backend.js';

/** The `storage.backends.cloud.azure_blob` block. */
export const azureBlobBlockSchema = z
  .object({
    container: z.string().min(1),
    /** Blob service URL (https://<account>.blob.core.windows.net, or Azurite's); else from AZURE_STORAGE_CONNECTION_STRING. */
    endpoint: z.string().url().optional(),
    ...objectStoreFields,
  })
  .strict();

/** Azure Blob as a cloud backend kind (cloud-backend-kind.ts). */
export const AZURE_BLOB_BACKEND_KIND = defineCloudBackend({
  name: 'azure_blob',
  provider: 'azure',
  configSchema: azureBlobBlockSchema,
  create: (block, name) => new AzureBlobBackend({ name, container: block.container, endpoint: block.endpoint, keyPrefix: block.key_prefix }),
});
