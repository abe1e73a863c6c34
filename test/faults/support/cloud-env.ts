/**
 * Test envs whose replicas go to the loopback cloud servers of `.ci/cloud-servers start`
 * (S3 = radosgw, GCS emulator, Azurite), each backend at an endpoint the scenario chooses
 * (a private radosgw, a FaultyProxy in front of a server), under a fresh key prefix in a
 * fresh bucket / container; and what the servers themselves hold there.
 */
import { randomBytes } from 'node:crypto';
import { cloudServers, createTestBuckets, exportCredentials, s3TestClient, type CloudServers } from '../../support/cloud-servers.js';
import { makeTestEnv, type TestEnv } from '../../support/harness.js';

export interface CloudEnv {
  env: TestEnv;
  servers: CloudServers;
  bucket: string;
  keyPrefix: string;
  /** What a worker process needs in its environment to reach the servers (credentials come only from there). */
  processEnv: NodeJS.ProcessEnv;
  /** Deletes every object under the key prefix (directly on the servers), then the bucket and container. */
  remove(): Promise<void>;
}

export interface CloudEndpoints {
  s3?: string;
  gcs?: string;
  azure?: string;
}

/** A test env with cloud storage on; `overrides` merge into its YAML like makeTestEnv's. */
export async function makeCloudEnv(endpoints: CloudEndpoints, overrides: Record<string, unknown> = {}): Promise<CloudEnv> {
  const servers = cloudServers();
  exportCredentials(servers);
  const bucket = `cv-faults-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const removeBuckets = await createTestBuckets(servers, bucket);
  const keyPrefix = `f-${randomBytes(4).toString('hex')}/`;
  const cloud = {
    enabled: true,
    aws_s3: { bucket, region: servers.s3.region, endpoint: endpoints.s3 ?? servers.s3.endpoint, force_path_style: true, key_prefix: keyPrefix },
    gcp_gcs: { bucket, endpoint: endpoints.gcs ?? servers.gcs.endpoint, project_id: servers.gcs.projectId, key_prefix: keyPrefix },
    azure_blob: { container: bucket, endpoint: endpoints.azure ?? servers.azure.endpoint, key_prefix: keyPrefix },
  };
  const storage = (overrides.storage ?? {}) as Record<string, unknown>;
  const backends = (storage.backends ?? {}) as Record<string, unknown>;
  const env = await makeTestEnv({ ...overrides, storage: { ...storage, backends: { ...backends, cloud } } });
  return {
    env, servers, bucket, keyPrefix,
    processEnv: {
      AWS_ACCESS_KEY_ID: servers.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: servers.s3.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: servers.azure.connectionString,
    },
    async remove() {
      await emptyBuckets(servers, bucket);
      await removeBuckets();
    },
  };
}

/** Every S3 key in the bucket (directly on radosgw). */
export async function s3Keys(servers: CloudServers, bucket: string): Promise<string[]> {
  const sdk = await import('@aws-sdk/client-s3');
  const client = s3TestClient(sdk, servers);
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const object of page.Contents ?? []) keys.push(object.Key!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  } finally {
    client.destroy();
  }
}

/** Multipart uploads started in the bucket and never completed or aborted. */
export async function s3OpenUploads(servers: CloudServers, bucket: string): Promise<Array<{ key: string; uploadId: string }>> {
  const sdk = await import('@aws-sdk/client-s3');
  const client = s3TestClient(sdk, servers);
  try {
    const page = await client.send(new sdk.ListMultipartUploadsCommand({ Bucket: bucket }));
    return (page.Uploads ?? []).map((u) => ({ key: u.Key!, uploadId: u.UploadId! }));
  } finally {
    client.destroy();
  }
}

async function emptyBuckets(servers: CloudServers, bucket: string): Promise<void> {
  const sdk = await import('@aws-sdk/client-s3');
  const client = s3TestClient(sdk, servers);
  try {
    for (const upload of await s3OpenUploads(servers, bucket)) {
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId })).catch(() => undefined);
    }
    const keys = await s3Keys(servers, bucket);
    for (let i = 0; i < keys.length; i += 1000) {
      await client.send(new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }));
    }
  } finally {
    client.destroy();
  }
  const { BlobServiceClient } = await import('@azure/storage-blob');
  const container = BlobServiceClient.fromConnectionString(servers.azure.connectionString).getContainerClient(bucket);
  if (await container.exists()) for await (const blob of container.listBlobsFlat()) await container.deleteBlob(blob.name).catch(() => undefined);
  const { Storage } = await import('@google-cloud/storage');
  await new Storage({ apiEndpoint: servers.gcs.endpoint, projectId: servers.gcs.projectId }).bucket(bucket).deleteFiles({ force: true }).catch(() => undefined);
}
