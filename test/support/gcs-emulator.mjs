#!/usr/bin/env node
/**
 * Runs the Cloud Storage emulator that ships inside the npm package firebase-tools, under
 * Node alone, on loopback. Its CLI (`firebase emulators:start`) needs Java and downloads a
 * security-rules jar at start, which cannot work offline; the GCS JSON API routes never
 * consult those rules, so the emulator is constructed here from firebase-tools' own modules
 * with the rules runtime stubbed out.
 *
 * Usage: node test/support/gcs-emulator.mjs --port 47490 [--host 127.0.0.1] [--data DIR]
 * Prints "ready <url>" on stdout once it accepts connections; stops on SIGTERM/SIGINT.
 */
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '47490' },
    data: { type: 'string', default: path.join(tmpdir(), 'chunkvault-gcs-emulator') },
    project: { type: 'string', default: 'chunkvault-test' },
  },
});

const require = createRequire(import.meta.url);
const { StorageEmulator } = require('firebase-tools/lib/emulator/storage/index.js');
const { EmulatorRegistry } = require('firebase-tools/lib/emulator/registry.js');
const { createApp } = require('firebase-tools/lib/emulator/storage/server.js');
const { createDestroyer } = require('firebase-tools/lib/utils.js');

const blobDir = path.resolve(values.data, 'blobs');
mkdirSync(blobDir, { recursive: true });

class LoopbackStorageEmulator extends StorageEmulator {
  /** Uploads are kept here rather than in the shared $TMPDIR/firebase folder. */
  getPersistenceTmpDir() {
    return blobDir;
  }

  /**
   * As StorageEmulator.start, without the security-rules runtime (a Java process fetched on
   * demand, which no GCS JSON API route consults), and with one path alias: the emulator
   * serves object copy/rewrite only at /b/..., while the SDK (like the real API) calls
   * /storage/v1/b/.../rewriteTo/...
   */
  async start() {
    const { host, port } = this.getInfo();
    const app = await createApp(this.args.projectId, this);
    this._app = app;
    const server = http.createServer((req, res) => {
      if (req.url && COPY_PATH.test(req.url)) req.url = req.url.slice('/storage/v1'.length);
      app(req, res);
    });
    await new Promise((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
    this.destroyServer = createDestroyer(server);
  }
}
const COPY_PATH = /^\/storage\/v1\/b\/[^/]+\/o\/[^/]+\/(rewriteTo|copyTo)\//;

const emulator = new LoopbackStorageEmulator({
  host: values.host,
  port: Number(values.port),
  projectId: values.project,
  auto_download: false,
});
// Never started (see start above), so never stopped either.
const noop = async () => undefined;
emulator._rulesRuntime.stop = noop;
emulator._rulesManager.stop = noop;

// Registered, because the emulator builds its own URLs (bucket and media links) from the registry.
await EmulatorRegistry.start(emulator);
process.stdout.write(`ready http://${values.host}:${values.port}\n`);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    emulator.stop().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3_000).unref();
  });
}
