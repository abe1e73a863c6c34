/**
 * `npm run schemas`: writes docs/openapi.json (the HTTP API) and docs/job-schema.json (the
 * BullMQ jobs) from the code. test/http-api.test.ts fails when the committed files differ.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildOpenApiDocument } from '../src/http/openapi.js';
import { buildJobSchemaDocument } from '../src/jobs/job-schema.document.js';
import { PUBLISHED_SCHEMAS, serializeSchema } from '../src/http/published-schemas.js';

const root = path.resolve(import.meta.dirname, '..');
const documents = { openapi: buildOpenApiDocument(), jobs: buildJobSchemaDocument() };
for (const [which, file] of Object.entries(PUBLISHED_SCHEMAS) as Array<[keyof typeof documents, string]>) {
  await writeFile(path.join(root, file), serializeSchema(documents[which]));
  process.stdout.write(`wrote ${file}\n`);
}
