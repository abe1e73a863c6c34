/**
 * The backend contract against real storage servers on loopback, started by
 * `.ci/cloud-servers start`: Ceph radosgw (S3), Azurite (Azure Blob) and the Cloud Storage
 * emulator of firebase-tools (GCS). Each backend runs the contract twice: as configured by
 * default (the contract's bodies go in one request) and with small thresholds, so its 2 MiB
 * bodies take the large-body path (S3 multipart, GCS resumable temp object, Azure blocks).
 *
 * Then what only object stores have: the checksum metadata a reindex relies on, the server
 * refusing a body damaged on the wire (through a proxy that flips a byte), errors that say
 * whether retrying can help (server gone, 5xx, bad credentials, missing bucket), and the sweep
 * of leftovers of interrupted large puts.
 *
 * These tests fail, never skip, when the servers are not running.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../src/backends/backend.js';
import { AzureBlobBackend, type AzureBlobBackendOptions } from '../src/backends/azure-blob.backend.js';
import { GcsBackend, type GcsBackendOptions } from '../src/backends/gcs.backend.js';
import { S3Backend, type S3BackendOptions } from '../src/backends/s3.backend.js';
import { BackendIoError, ChecksumMismatchError } from '../src/errors.js';
import { digestOf, itBehavesLikeABackend, keysOf, optionsFor, readAll, rejectionOf, streamOf } from './backend-contract.suite.js';
import { azureTestContainer, cloudServers, createTestBuckets, exportCredentials, s3TestClient } from './support/cloud-servers.js';
import { FaultyProxy } from './support/faulty-proxy.js';

const servers = cloudServers();
exportCredentials(servers);

/** One bucket / container per run of this file; one fresh key prefix per test. */
const RUN = `cv-test-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const MiB = 1 << 20;
/** Thresholds that send the contract's 2 MiB bodies down the large-body path. */
const SMALL_SINGLE_PUT = MiB;
/** radosgw, like AWS, refuses parts under 5 MiB except the last. */
const S3_MIN_PART = 5 * MiB;

function freshPrefix(): string {
  return `t-${randomBytes(6).toString('hex')}/`;
}

/** How a test reaches one cloud: backends on the real server or through a proxy, and the server's own view of an object. */
interface Cloud {
  label: string;
  /** Origin of the real server, for the proxy. */
  origin: string;
  make(prefix: string, extra?: { viaOrigin?: string; large?: boolean; staleUploadAfterMs?: number; bucket?: string }): Backend;
  /** The object's stored custom metadata, read with the SDK directly. */
  rawMetadata(objectKey: string): Promise<Record<string, string> | undefined>;
  /** Names under which the chunk checksum and algorithm are stored. */
  metadataNames: { checksum: string; algorithm: string };
  /** Leaves what a large put that died mid-way leaves, under `prefix`. */
  leaveInterruptedUpload(prefix: string): Promise<void>;
  /** How the server (or the backend's own check) refuses a body damaged on the wire. */
  digestRejection: RegExp;
}

const s3: Cloud = {
  label: 'S3 (radosgw)',
  origin: servers.s3.endpoint,
  make(prefix, extra = {}) {
    const options: S3BackendOptions = {
      bucket: extra.bucket ?? RUN,
      region: servers.s3.region,
      endpoint: extra.viaOrigin ?? servers.s3.endpoint,
      forcePathStyle: true,
      keyPrefix: prefix,
      maxAttempts: extra.viaOrigin ? 1 : undefined,
      ...(extra.large ? { singlePutMaxBytes: SMALL_SINGLE_PUT, partSizeBytes: S3_MIN_PART } : {}),
      ...(extra.staleUploadAfterMs !== undefined ? { staleUploadAfterMs: extra.staleUploadAfterMs } : {}),
    };
    return new S3Backend(options);
  },
  async rawMetadata(objectKey) {
    const sdk = await import('@aws-sdk/client-s3');
    const client = s3Client(sdk);
    try {
      return (await client.send(new sdk.HeadObjectCommand({ Bucket: RUN, Key: objectKey }))).Metadata;
    } finally {
      client.destroy();
    }
  },
  metadataNames: { checksum: 'cv-checksum', algorithm: 'cv-algorithm' },
  async leaveInterruptedUpload(prefix) {
    const sdk = await import('@aws-sdk/client-s3');
    const client = s3Client(sdk);
    await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: RUN, Key: `${prefix}crashed/chunk.bin` }));
    client.destroy();
  },
  digestRejection: /BadDigest|XAmzContentSHA256Mismatch/,
};

const gcs: Cloud = {
  label: 'GCS (firebase-tools emulator)',
  origin: servers.gcs.endpoint,
  make(prefix, extra = {}) {
    const options: GcsBackendOptions = {
      bucket: extra.bucket ?? RUN,
      endpoint: extra.viaOrigin ?? servers.gcs.endpoint,
      projectId: servers.gcs.projectId,
      keyPrefix: prefix,
      maxAttempts: extra.viaOrigin ? 1 : undefined,
      ...(extra.large ? { singlePutMaxBytes: SMALL_SINGLE_PUT } : {}),
      ...(extra.staleUploadAfterMs !== undefined ? { staleUploadAfterMs: extra.staleUploadAfterMs } : {}),
    };
    return new GcsBackend(options);
  },
  async rawMetadata(objectKey) {
    const { Storage } = await import('@google-cloud/storage');
    const [metadata] = await new Storage({ apiEndpoint: servers.gcs.endpoint, projectId: servers.gcs.projectId }).bucket(RUN).file(objectKey).getMetadata();
    return metadata.metadata as Record<string, string> | undefined;
  },
  metadataNames: { checksum: 'cv-checksum', algorithm: 'cv-algorithm' },
  async leaveInterruptedUpload(prefix) {
    const { Storage } = await import('@google-cloud/storage');
    const bucket = new Storage({ apiEndpoint: servers.gcs.endpoint, projectId: servers.gcs.projectId }).bucket(RUN);
    await bucket.file(`${prefix}.cvtmp~/${Date.now()}-crashed`).save(randomBytes(100), { resumable: false });
  },
  // The emulator does not check the MD5 sent with an upload (real GCS does); the backend's
  // own comparison with the MD5 the server reports back catches the damage instead.
  digestRejection: /MD5/,
};

const azure: Cloud = {
  label: 'Azure Blob (azurite)',
  origin: new URL(servers.azure.endpoint).origin,
  make(prefix, extra = {}) {
    const options: AzureBlobBackendOptions = {
      container: extra.bucket ?? RUN,
      keyPrefix: prefix,
      ...(extra.viaOrigin ? { endpoint: `${extra.viaOrigin}${new URL(servers.azure.endpoint).pathname}`, maxAttempts: 1 } : {}),
      ...(extra.large ? { singlePutMaxBytes: SMALL_SINGLE_PUT, blockSizeBytes: MiB } : {}),
      ...(extra.staleUploadAfterMs !== undefined ? { staleUploadAfterMs: extra.staleUploadAfterMs } : {}),
    };
    return new AzureBlobBackend(options);
  },
  async rawMetadata(objectKey) {
    const container = await azureContainer();
    return (await container.getBlockBlobClient(objectKey).getProperties()).metadata;
  },
  metadataNames: { checksum: 'cv_checksum', algorithm: 'cv_algorithm' },
  async leaveInterruptedUpload(prefix) {
    const container = await azureContainer();
    const bytes = randomBytes(100);
    await container.getBlockBlobClient(`${prefix}.cvtmp~/${Date.now()}-crashed`).upload(bytes, bytes.byteLength);
  },
  // Azure answers Md5Mismatch; Azurite InvalidOperation "Provided contentMD5 doesn't match."
  digestRejection: /Md5Mismatch|contentMD5/i,
};

const CLOUDS = [s3, gcs, azure];

function s3Client(sdk: typeof import('@aws-sdk/client-s3')) {
  return s3TestClient(sdk, servers);
}

function azureContainer() {
  return azureTestContainer(servers, RUN);
}

let removeBuckets: () => Promise<void>;

beforeAll(async () => {
  removeBuckets = await createTestBuckets(servers, RUN);
});

afterAll(async () => {
  await removeBuckets();
});

/** A backend on a fresh prefix, and a cleanup that removes everything it stored or left. */
async function underTest(cloud: Cloud, large: boolean) {
  const prefix = freshPrefix();
  const backend = cloud.make(prefix, { large });
  return {
    backend,
    cleanup: async () => {
      for await (const info of backend.list('')) await backend.delete(info.key);
      const sweeper = cloud.make(prefix, { staleUploadAfterMs: -1 });
      await sweeper.sweepIncompleteWrites();
      await Promise.all([backend.close(), sweeper.close()]);
    },
  };
}

for (const cloud of CLOUDS) {
  itBehavesLikeABackend(cloud.label, () => underTest(cloud, false));
  itBehavesLikeABackend(`${cloud.label}, large-body path`, () => underTest(cloud, true));
}

for (const cloud of CLOUDS) {
  describe(`${cloud.label} backend on a real server`, () => {
    let prefix: string;
    const opened: Backend[] = [];
    const proxies: FaultyProxy[] = [];

    function backend(extra: Parameters<Cloud['make']>[1] = {}): Backend {
      const made = cloud.make(prefix, extra);
      opened.push(made);
      return made;
    }

    async function proxy(): Promise<FaultyProxy> {
      const started = await FaultyProxy.start(cloud.origin);
      proxies.push(started);
      return started;
    }

    beforeAll(() => {
      prefix = freshPrefix();
    });

    afterEach(async () => {
      for (const started of proxies.splice(0)) await started.stop();
      const cleaner = cloud.make(prefix, { staleUploadAfterMs: -1 });
      for await (const info of cleaner.list('')) await cleaner.delete(info.key);
      await cleaner.sweepIncompleteWrites();
      for (const made of [...opened.splice(0), cleaner]) await made.close();
      prefix = freshPrefix();
    });

    it.each([
      ['one request', false],
      ['the large-body path', true],
    ])('stores the chunk checksum and algorithm as object metadata (%s)', async (_path, large) => {
      const bytes = randomBytes(2 * MiB + 7);
      const options = optionsFor(bytes, 'sha256');
      await backend({ large }).put('meta/chunk.bin', bytes, options);

      const metadata = await cloud.rawMetadata(`${prefix}meta/chunk.bin`);

      expect(metadata?.[cloud.metadataNames.checksum]).toBe(options.checksum);
      expect(metadata?.[cloud.metadataNames.algorithm]).toBe('sha256');
    });

    it('refuses a body damaged on the wire every time, non-retryably, and stores nothing', async () => {
      const faulty = await proxy();
      faulty.corruptNextBodies = Infinity;
      const bytes = randomBytes(64 * 1024);

      const error = await rejectionOf(backend({ viaOrigin: faulty.origin }).put('wire/chunk.bin', bytes, optionsFor(bytes, 'md5')));

      expect(error).toBeInstanceOf(BackendIoError);
      expect(error).toMatchObject({ code: 'E_BACKEND_IO', retryable: false });
      expect((error as Error).message).toContain('wire/chunk.bin');
      expect((error as Error).message).toMatch(cloud.digestRejection);
      expect(faulty.corruptedBodies).toBe(2); // sent once more, then given up
      expect(await backend().head('wire/chunk.bin')).toBeUndefined();
    });

    it('sends a body damaged on the wire once more and stores it intact', async () => {
      const faulty = await proxy();
      faulty.corruptNextBodies = 1;
      const bytes = randomBytes(64 * 1024);

      await backend({ viaOrigin: faulty.origin }).put('wire/once.bin', bytes, optionsFor(bytes, 'md5'));

      expect(faulty.corruptedBodies).toBe(1);
      expect(digestOf(await readAll(await backend().get('wire/once.bin')), 'md5')).toBe(digestOf(bytes, 'md5'));
    });

    it('refuses a large body damaged on the wire and leaves neither the object nor an upload behind', async () => {
      const faulty = await proxy();
      faulty.corruptNextBodies = Infinity;
      const bytes = randomBytes(2 * MiB + 7);

      const error = await rejectionOf(
        backend({ viaOrigin: faulty.origin, large: true }).put('wire/large.bin', streamOf(bytes, 100_000), optionsFor(bytes, 'sha256')),
      );

      expect(error).toBeInstanceOf(BackendIoError);
      expect(error).toMatchObject({ retryable: cloud === gcs });
      expect(await backend().head('wire/large.bin')).toBeUndefined();
      expect(await keysOf(backend(), '')).toEqual([]);
      expect(await backend({ staleUploadAfterMs: -1 }).sweepIncompleteWrites()).toBe(0);
    });

    it('fails with a retryable BackendIoError while the server is down, and works again when it is back', async () => {
      const faulty = await proxy();
      const viaProxy = backend({ viaOrigin: faulty.origin });
      const bytes = randomBytes(10_000);
      await viaProxy.put('down/before.bin', bytes, optionsFor(bytes, 'md5'));

      await faulty.stop();
      const failures = [
        await rejectionOf(viaProxy.put('down/during.bin', bytes, optionsFor(bytes, 'md5'))),
        await rejectionOf(viaProxy.get('down/before.bin')),
        await rejectionOf(viaProxy.head('down/before.bin')),
        await rejectionOf(viaProxy.delete('down/before.bin')),
        await rejectionOf(keysOf(viaProxy, '')),
      ];
      for (const error of failures) {
        expect(error).toBeInstanceOf(BackendIoError);
        expect(error).toMatchObject({ code: 'E_BACKEND_IO', retryable: true });
      }

      await faulty.resume();
      await viaProxy.put('down/during.bin', bytes, optionsFor(bytes, 'md5'));
      expect(await keysOf(viaProxy, '')).toEqual(['down/before.bin', 'down/during.bin']);
    });

    // On Node 24 the GCS SDK's stream reads could end in an unhandled rejection when a request
    // was retried or its stream destroyed early (googleapis/google-cloud-node#8670); vitest
    // fails the run on any unhandled rejection, so this test guards that too.
    it('reads ride out error answers to a third of their requests, and streams destroyed at once leave nothing behind', async () => {
      const bytes = randomBytes(64 * 1024);
      await backend().put('flaky/chunk.bin', bytes, optionsFor(bytes, 'md5'));
      const faulty = await proxy();
      const viaProxy = backend({ viaOrigin: faulty.origin });
      faulty.randomFaults = { seed: 11, errorRate: 0.35, statuses: [503] };
      let read = 0;
      for (let i = 0; i < 6; i++) {
        const outcome = await viaProxy.get('flaky/chunk.bin').then(readAll, (error: unknown) => error);
        if (Buffer.isBuffer(outcome)) {
          expect(outcome.equals(bytes)).toBe(true);
          read += 1;
        } else expect(outcome).toMatchObject({ code: 'E_BACKEND_IO', retryable: true });
      }
      expect(read).toBeGreaterThanOrEqual(3);
      for (let i = 0; i < 6; i++) {
        const stream = await viaProxy.get('flaky/chunk.bin').catch(() => undefined);
        stream?.destroy();
      }
      faulty.randomFaults = undefined;
      await new Promise((resolve) => setTimeout(resolve, 300)); // answers still on the way arrive
      expect(faulty.injected.errors).toBeGreaterThan(0);
      expect(await readAll(await viaProxy.get('flaky/chunk.bin'))).toEqual(bytes);
    }, 120_000);

    it('fails with a retryable BackendIoError naming the status when the server answers 503', async () => {
      const faulty = await proxy();
      faulty.failWithStatus = 503;
      const bytes = randomBytes(1_000);

      const error = await rejectionOf(backend({ viaOrigin: faulty.origin }).put('busy/chunk.bin', bytes, optionsFor(bytes, 'md5')));

      expect(error).toBeInstanceOf(BackendIoError);
      expect(error).toMatchObject({ retryable: true });
      expect((error as Error).message).toContain('503');
    });

    it('with one attempt per request sends a request once: a 503 is not tried again inside the SDK', async () => {
      const faulty = await proxy();
      faulty.failWithStatus = 503;
      const error = await rejectionOf(backend({ viaOrigin: faulty.origin }).head('busy/none.bin'));
      expect(error).toMatchObject({ code: 'E_BACKEND_IO', retryable: true });
      expect(faulty.requests).toBe(1);
    });

    it('refuses a wrong checksum of a large body before completing anything', async () => {
      const bytes = randomBytes(11 * MiB);
      const wrong = { ...optionsFor(bytes, 'md5'), checksum: digestOf(randomBytes(8), 'md5') };

      const error = await rejectionOf(backend({ large: true }).put('large/wrong.bin', streamOf(bytes, 256 * 1024), wrong));

      expect(error).toBeInstanceOf(ChecksumMismatchError);
      expect(await keysOf(backend(), '')).toEqual([]);
      expect(await backend({ staleUploadAfterMs: -1 }).sweepIncompleteWrites()).toBe(0);
    });

    it('round-trips a body of several parts', async () => {
      const bytes = randomBytes(11 * MiB + 3);
      await backend({ large: true }).put('large/parts.bin', streamOf(bytes, 256 * 1024), optionsFor(bytes, 'sha256'));

      expect((await backend().head('large/parts.bin'))?.sizeBytes).toBe(bytes.byteLength);
      expect(digestOf(await readAll(await backend().get('large/parts.bin')), 'sha256')).toBe(digestOf(bytes, 'sha256'));
    });

    it('sweepIncompleteWrites removes stale leftovers of an interrupted large put, and only stale ones', async () => {
      await cloud.leaveInterruptedUpload(prefix);
      const kept = randomBytes(100);
      await backend().put('sweep/kept.bin', kept, optionsFor(kept, 'md5'));

      expect(await keysOf(backend(), '')).toEqual(['sweep/kept.bin']);
      expect(await backend().sweepIncompleteWrites()).toBe(0); // younger than the default 24 h
      expect(await backend({ staleUploadAfterMs: -1 }).sweepIncompleteWrites()).toBe(1);
      expect(await backend({ staleUploadAfterMs: -1 }).sweepIncompleteWrites()).toBe(0);
      expect(await keysOf(backend(), '')).toEqual(['sweep/kept.bin']);
    });
  });
}

describe('permanent server refusals are not retryable and carry the server reason', () => {
  it.each([
    ['S3 (radosgw)', s3, /NoSuchBucket/],
    ['Azure Blob (azurite)', azure, /ContainerNotFound/],
  ])('%s: a missing bucket', async (_label, cloud, reason) => {
    const missing = cloud.make(freshPrefix(), { bucket: `${RUN}-missing` });
    const bytes = randomBytes(100);
    try {
      for (const error of [
        await rejectionOf(missing.put('chunk.bin', bytes, optionsFor(bytes, 'md5'))),
        await rejectionOf(missing.get('chunk.bin')),
        await rejectionOf(keysOf(missing, '')),
      ]) {
        expect(error).toBeInstanceOf(BackendIoError);
        expect(error).toMatchObject({ retryable: false });
        expect((error as Error).message).toMatch(reason);
      }
    } finally {
      await missing.close();
    }
  });

  it.each([
    ['S3 (radosgw)', s3, 'AWS_SECRET_ACCESS_KEY', 'not-the-secret', /SignatureDoesNotMatch|AccessDenied|403/],
    ['Azure Blob (azurite)', azure, 'AZURE_STORAGE_CONNECTION_STRING', servers.azure.connectionString.replace(/AccountKey=[^;]+/, `AccountKey=${Buffer.from('wrong key').toString('base64')}`), /403|AuthorizationFailure|authenticate/],
  ])('%s: credentials the server refuses', async (_label, cloud, variable, wrongValue, reason) => {
    const saved = process.env[variable];
    process.env[variable] = wrongValue;
    const refused = cloud.make(freshPrefix());
    const bytes = randomBytes(100);
    try {
      const error = await rejectionOf(refused.put('chunk.bin', bytes, optionsFor(bytes, 'md5')));
      expect(error).toBeInstanceOf(BackendIoError);
      expect(error).toMatchObject({ retryable: false });
      expect((error as Error).message).toMatch(reason);
    } finally {
      process.env[variable] = saved;
      await refused.close();
    }
  });
});
