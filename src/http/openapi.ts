/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the route table (api-routes.ts)
 * and its zod schemas (`z.toJSONSchema`, JSON Schema 2020-12 as OpenAPI 3.1 uses). Served at
 * GET /openapi.json and committed as docs/openapi.json (`npm run schemas`); a test fails when
 * the committed file is not what this code generates.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ERROR, type ApiParameter, type ApiResponse, type ApiRoute } from './api-route.js';
import { API_ROUTES } from './api-routes.js';

type JsonObject = Record<string, unknown>;

const TAGS = [
  { name: 'chunks', description: 'store and read chunks' },
  { name: 'catalog', description: 'what is stored: replica records, statistics, checkpoints' },
  { name: 'health', description: 'liveness and readiness probes (no credentials)' },
  { name: 'meta', description: 'this document' },
];

/** JSON Schema of a zod schema, as the document embeds it (no `$schema`). */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output' = 'output'): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, target: 'draft-2020-12' }) as JsonObject;
  return rest;
}

export function buildOpenApiDocument(routes: readonly ApiRoute[] = API_ROUTES): JsonObject {
  const components: Record<string, JsonObject> = {};
  const ref = (named: { name: string; schema: z.ZodType }): JsonObject => {
    components[named.name] ??= jsonSchemaOf(named.schema);
    return { $ref: `#/components/schemas/${named.name}` };
  };
  const paths: Record<string, Record<string, JsonObject>> = {};
  for (const route of routes) {
    const responses: Record<string, JsonObject> = {};
    const all: Record<number, ApiResponse> = route.public
      ? route.responses
      : { ...route.responses, 401: { description: 'credentials are configured and the request has none or wrong ones', json: ERROR } };
    for (const [status, response] of Object.entries(all).sort(([a], [b]) => Number(a) - Number(b))) responses[status] = responseObject(response, ref);
    responses.default = responseObject({ description: 'unexpected error (`internal`, or `unavailable` when Redis or a backend fails)', json: ERROR }, ref);
    const operation: JsonObject = {
      operationId: route.operationId,
      summary: route.summary,
      description: route.description,
      tags: [route.tag],
      ...(route.public ? { security: [] } : {}),
      ...(route.parameters.length ? { parameters: route.parameters.map(parameterObject) } : {}),
      ...(route.requestBody
        ? {
            requestBody: {
              description: route.requestBody.description,
              required: route.requestBody.required,
              content: { [route.requestBody.contentType]: { schema: { type: 'string', contentMediaType: route.requestBody.contentType } } },
            },
          }
        : {}),
      responses,
    };
    const path = openApiPath(route.path);
    (paths[path] ??= {})[route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'chunkvault HTTP API',
      version: packageVersion(),
      description:
        'For coordinators: store chunks and read them back verified, inspect the catalog, statistics and checkpoints, ' +
        'probe health. Every error answers `{ "error": "<code>", "message": "..." }` (400 adds `problems`). ' +
        'Served by `chunkvault serve`; credentials (when configured) are a bearer token (CHUNKVAULT_HTTP_TOKEN) or ' +
        'basic auth (CHUNKVAULT_HTTP_USER / CHUNKVAULT_HTTP_PASSWORD).',
    },
    servers: [{ url: 'http://127.0.0.1:8080', description: 'chunkvault serve with the default chunkvault.http settings' }],
    tags: TAGS,
    // Either scheme, whichever the server is configured with; none when it has no credentials (loopback only).
    security: [{ bearerAuth: [] }, { basicAuth: [] }, {}],
    paths,
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'CHUNKVAULT_HTTP_TOKEN' },
        basicAuth: { type: 'http', scheme: 'basic', description: 'CHUNKVAULT_HTTP_USER and CHUNKVAULT_HTTP_PASSWORD' },
      },
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => a.localeCompare(b))),
    },
  };
}

/** `/v1/chunks/:id` -> `/v1/chunks/{id}` */
export function openApiPath(fastifyPath: string): string {
  return fastifyPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function responseObject(response: ApiResponse, ref: (named: { name: string; schema: z.ZodType }) => JsonObject): JsonObject {
  const content = response.json
    ? { 'application/json': { schema: ref(response.json) } }
    : response.bytes
      ? { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } }
      : undefined;
  const headers = response.headers
    ? Object.fromEntries(Object.entries(response.headers).map(([name, h]) => [name, { description: h.description, required: h.required, schema: jsonSchemaOf(h.schema) }]))
    : undefined;
  return { description: response.description, ...(headers ? { headers } : {}), ...(content ? { content } : {}) };
}

function parameterObject(parameter: ApiParameter): JsonObject {
  const schema = jsonSchemaOf(parameter.schema, 'input');
  return {
    name: parameter.name,
    in: parameter.in,
    required: parameter.required,
    description: parameter.description,
    ...(parameter.json ? { content: { 'application/json': { schema } } } : { schema }),
  };
}

function packageVersion(): string {
  // src/http/ and dist/http/ are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
