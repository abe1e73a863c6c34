/**
 * A deployment that uses only the local filesystem never loads a cloud SDK: the backend
 * modules import their SDK on first use, not when imported or constructed. Checked in a child
 * process where resolving any cloud SDK package throws.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');

/** A module-resolution hook that refuses the three SDKs. */
const REFUSE_SDKS = `data:text/javascript,${encodeURIComponent(`
  import { register } from 'node:module';
  register('data:text/javascript,' + encodeURIComponent(\`
    export async function resolve(specifier, context, next) {
      if (/^@(aws-sdk|google-cloud|azure)\\\\//.test(specifier)) throw new Error('cloud SDK resolved: ' + specifier);
      return next(specifier, context);
    }\`));
`)}`;

const SCRIPT = `
  const { S3Backend } = await import('./src/backends/s3.backend.ts');
  const { GcsBackend } = await import('./src/backends/gcs.backend.ts');
  const { AzureBlobBackend } = await import('./src/backends/azure-blob.backend.ts');
  const backends = [
    new S3Backend({ bucket: 'b', region: 'us-east-1' }),
    new GcsBackend({ bucket: 'b' }),
    new AzureBlobBackend({ container: 'c' }),
  ];
  console.log('constructed ' + backends.map((b) => b.name).join(','));
  for (const backend of backends) {
    const error = await backend.head('chunk.bin').then(() => undefined, (e) => e);
    console.log(backend.name + ' first use: ' + error?.code + ' ' + String(error?.cause?.message ?? '').slice(0, 60));
  }
`;

describe('cloud SDK loading', () => {
  it('imports and constructs the cloud backends without loading any SDK, and loads it on first use', () => {
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--import', REFUSE_SDKS, '--input-type=module', '-e', SCRIPT], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });

    expect(child.stdout, child.stderr).toContain('constructed aws_s3,gcp_gcs,azure_blob');
    for (const [name, sdk] of [['aws_s3', '@aws-sdk/client-s3'], ['gcp_gcs', '@google-cloud/storage'], ['azure_blob', '@azure/storage-blob']]) {
      expect(child.stdout).toContain(`${name} first use: E_CONFIG cloud SDK resolved: ${sdk}`);
    }
  });
});
