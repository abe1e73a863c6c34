/**
 * Where the loopback storage servers started by `.ci/cloud-servers start` are: from the
 * environment, else from the `.ci/cloud-servers.env` file that script writes. The cloud tests
 * fail (never skip) when a server is not there, naming the command that starts them.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const ENV_FILE = path.join(REPO_ROOT, '.ci', 'cloud-servers.env');
const START_HINT = 'start them with `.ci/cloud-servers start` (writes .ci/cloud-servers.env; see README)';

export interface CloudServers {
  s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
  azure: { endpoint: string; connectionString: string };
  gcs: { endpoint: string; projectId: string };
}

/** Reads the servers' addresses; throws with the start command when they were never started. */
export function cloudServers(): CloudServers {
  const fromFile = existsSync(ENV_FILE) ? parseEnvFile(readFileSync(ENV_FILE, 'utf8')) : {};
  const value = (name: string): string => {
    const found = process.env[name] ?? fromFile[name];
    if (!found) throw new Error(`${name} is not set and not in .ci/cloud-servers.env: the cloud storage test servers are not running; ${START_HINT}`);
    return found;
  };
  return {
    s3: {
      endpoint: value('CHUNKVAULT_TEST_S3_ENDPOINT'),
      region: value('CHUNKVAULT_TEST_S3_REGION'),
      accessKeyId: value('CHUNKVAULT_TEST_S3_ACCESS_KEY_ID'),
      secretAccessKey: value('CHUNKVAULT_TEST_S3_SECRET_ACCESS_KEY'),
    },
    azure: { endpoint: value('CHUNKVAULT_TEST_AZURE_ENDPOINT'), connectionString: value('CHUNKVAULT_TEST_AZURE_CONNECTION_STRING') },
    gcs: { endpoint: value('CHUNKVAULT_TEST_GCS_ENDPOINT'), projectId: value('CHUNKVAULT_TEST_GCS_PROJECT') },
  };
}

/** Throws unless something answers HTTP at `url` within two seconds. */
export async function assertAnswers(what: string, url: string): Promise<void> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2_000) });
  } catch (error) {
    throw new Error(`${what} does not answer at ${url} (${(error as Error).message}); ${START_HINT}`, { cause: error });
  }
}

/**
 * Puts the test servers' credentials where each SDK's standard chain looks for them, the
 * only place the backends take credentials from.
 */
export function exportCredentials(servers: CloudServers): void {
  process.env.AWS_ACCESS_KEY_ID = servers.s3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = servers.s3.secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
  process.env.AZURE_STORAGE_CONNECTION_STRING = servers.azure.connectionString;
}

function parseEnvFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^\s*(?:export\s+)?([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!match) continue;
    values[match[1]!] = match[2]!.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
  return values;
}

/** An S3 client on the test server, as the tests' own view of what the server holds. */
export function s3TestClient(sdk: typeof import('@aws-sdk/client-s3'), servers: CloudServers) {
  return new sdk.S3Client({ region: servers.s3.region, endpoint: servers.s3.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' });
}

/** The Azurite container `name` (on another Azurite when `connectionString` names one). */
export async function azureTestContainer(servers: CloudServers, name: string, connectionString = servers.azure.connectionString) {
  const { BlobServiceClient } = await import('@azure/storage-blob');
  return BlobServiceClient.fromConnectionString(connectionString).getContainerClient(name);
}

/** Makes the run's bucket and containers before this file's tests, and removes them after. */
export function useTestBuckets(servers: CloudServers, name: string): void {
  let remove: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    remove = await createTestBuckets(servers, name);
  });
  afterAll(async () => {
    await remove?.();
  });
}

/**
 * Checks the three servers answer, then creates bucket / container `name` on S3 and Azure
 * (the GCS emulator creates a bucket on first use). Returns what removes them again.
 */
export async function createTestBuckets(servers: CloudServers, name: string): Promise<() => Promise<void>> {
  await assertAnswers('S3 (radosgw)', servers.s3.endpoint);
  await assertAnswers('Azure Blob (azurite)', servers.azure.endpoint);
  await assertAnswers('GCS (firebase-tools emulator)', `${servers.gcs.endpoint}/storage/v1/b/${name}/o`);
  const sdk = await import('@aws-sdk/client-s3');
  const client = s3TestClient(sdk, servers);
  await client.send(new sdk.CreateBucketCommand({ Bucket: name }));
  client.destroy();
  await (await azureTestContainer(servers, name)).create();
  return async () => {
    const remover = s3TestClient(sdk, servers);
    await remover.send(new sdk.DeleteBucketCommand({ Bucket: name })).catch(() => undefined);
    remover.destroy();
    await (await azureTestContainer(servers, name)).deleteIfExists();
  };
}
