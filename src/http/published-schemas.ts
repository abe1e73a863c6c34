/** Where the generated schemas are committed, and their one serialization (so a test can compare byte for byte). */
export const PUBLISHED_SCHEMAS = { openapi: 'docs/openapi.json', jobs: 'docs/job-schema.json' } as const;

export function serializeSchema(document: unknown): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}
