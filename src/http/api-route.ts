/**
 * What one route of the HTTP API is: its documentation (for the OpenAPI document) and its
 * handler, side by side, so neither exists without the other.
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { apiErrorSchema } from './api-schemas.js';
import type { HttpParts } from './http-parts.js';

/** A JSON body, named: the name becomes its entry in the document's components. */
export interface NamedSchema {
  name: string;
  schema: z.ZodType;
}

export interface ApiResponse {
  description: string;
  json?: NamedSchema;
  /** The body is raw bytes (application/octet-stream). */
  bytes?: true;
  headers?: Record<string, { description: string; schema: z.ZodType; required: boolean }>;
}

export interface ApiParameter {
  name: string;
  in: 'path' | 'header';
  required: boolean;
  description: string;
  schema: z.ZodType;
  /** The value is JSON text (documented with OpenAPI's `content` form). */
  json?: boolean;
}

export interface RouteContext {
  request: FastifyRequest;
  parts: HttpParts;
  /** The OpenAPI document (for GET /openapi.json). */
  document: () => unknown;
}

export type RouteAnswer =
  | { status: number; json: unknown; headers?: Record<string, string> }
  | { status: number; bytes: Buffer; headers?: Record<string, string> };

export interface ApiRoute {
  method: 'GET' | 'POST';
  /** Fastify form: `/v1/chunks/:id`. */
  path: string;
  operationId: string;
  summary: string;
  description: string;
  tag: 'chunks' | 'catalog' | 'health' | 'meta';
  /** Reachable without credentials (the health probes). */
  public: boolean;
  /** Refused with 403 when the server is read-only, before the body is read. */
  writes: boolean;
  parameters: ApiParameter[];
  requestBody?: { description: string; contentType: 'application/octet-stream'; required: boolean };
  /** Every answer but 401 (added to each non-public route) and unexpected 500s. */
  responses: Record<number, ApiResponse>;
  handle(context: RouteContext): Promise<RouteAnswer>;
}

export const ERROR: NamedSchema = { name: 'Error', schema: apiErrorSchema };
/** An error answer (the one error body of the API). */
export const errorResponse = (description: string): ApiResponse => ({ description, json: ERROR });
