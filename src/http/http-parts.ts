/**
 * What server.ts hands each part of the HTTP server it registers (the API, the metrics, the
 * dashboard). In a module of its own so those parts need nothing from server.ts, which
 * stays the one module that imports them.
 */
import type { Chunkvault } from '../app.js';

export interface HttpParts {
  vault: Chunkvault;
  /** No writes: POST /v1/chunks answers 403 and the dashboard hides retry/clean/promote. */
  readOnly: boolean;
}
