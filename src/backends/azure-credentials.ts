/**
 * Azure Blob credentials, from the environment only, the way Azure's own tools read them:
 * AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or
 * AZURE_STORAGE_SAS_TOKEN. The storage SDK has no credential chain of its own (unlike the AWS
 * and Google SDKs), so this module is the one place outside the config module that reads
 * process.env, and only for these secrets, which never pass through the config.
 * (Managed identities would need @azure/identity, which is not a dependency.)
 */
import type { BlobServiceClient, StoragePipelineOptions } from '@azure/storage-blob';
import { ConfigError } from '../errors.js';

type AzureSdk = typeof import('@azure/storage-blob');

/**
 * The blob service client, with credentials from the environment only (see the module
 * comment); `endpoint` overrides the service URL the credentials name.
 */
export function serviceClientFromEnvironment(
  sdk: AzureSdk,
  endpoint: string | undefined,
  pipelineOptions: StoragePipelineOptions,
): BlobServiceClient {
  const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
  if (connectionString) {
    if (!endpoint) return sdk.BlobServiceClient.fromConnectionString(connectionString, pipelineOptions);
    const parts = parseConnectionString(connectionString);
    if (parts.AccountName && parts.AccountKey) {
      return new sdk.BlobServiceClient(endpoint, new sdk.StorageSharedKeyCredential(parts.AccountName, parts.AccountKey), pipelineOptions);
    }
    if (parts.SharedAccessSignature) return new sdk.BlobServiceClient(withSas(endpoint, parts.SharedAccessSignature), new sdk.AnonymousCredential(), pipelineOptions);
    throw new ConfigError('Azure Blob backend: AZURE_STORAGE_CONNECTION_STRING has neither AccountName/AccountKey nor SharedAccessSignature');
  }
  const account = process.env.AZURE_STORAGE_ACCOUNT;
  const url = endpoint ?? (account ? `https://${account}.blob.core.windows.net` : undefined);
  if (account && process.env.AZURE_STORAGE_KEY && url) {
    return new sdk.BlobServiceClient(url, new sdk.StorageSharedKeyCredential(account, process.env.AZURE_STORAGE_KEY), pipelineOptions);
  }
  if (process.env.AZURE_STORAGE_SAS_TOKEN && url) {
    return new sdk.BlobServiceClient(withSas(url, process.env.AZURE_STORAGE_SAS_TOKEN), new sdk.AnonymousCredential(), pipelineOptions);
  }
  throw new ConfigError(
    'Azure Blob backend: no credentials in the environment; set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN',
  );
}

function parseConnectionString(value: string): Record<string, string> {
  const parts: Record<string, string> = {};
  for (const pair of value.split(';')) {
    const at = pair.indexOf('=');
    if (at > 0) parts[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return parts;
}

function withSas(url: string, sas: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${sas.replace(/^\?/, '')}`;
}
