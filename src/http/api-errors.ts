/**
 * Every error of the HTTP API answers with one body shape, `{ error, message, problems? }`
 * (api-schemas.ts), whether it comes from a handler, from chunkvault's errors or from
 * Fastify itself (body too large, unsupported media type, unknown route).
 */
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { ChunkvaultError, describeError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { ApiErrorBody, ApiErrorCode, Problem } from './api-schemas.js';

/** An answer other than success, thrown by a handler. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly problems?: readonly Problem[],
  ) {
    super(message);
  }

  get body(): ApiErrorBody {
    return { error: this.code, message: this.message, ...(this.problems?.length ? { problems: [...this.problems] } : {}) };
  }
}

/** chunkvault's error codes as HTTP answers; the rest are 500. */
const FROM_CHUNKVAULT: Partial<Record<ChunkvaultError['code'], [number, ApiErrorCode]>> = {
  E_INVALID_INPUT: [400, 'bad_request'],
  E_NOT_FOUND: [404, 'not_found'],
  E_CONFLICT: [409, 'conflict'],
  E_CORRUPT: [409, 'corrupt'],
  E_REDIS_UNAVAILABLE: [503, 'unavailable'],
  E_BACKEND_IO: [503, 'unavailable'],
};

/** Fastify's own errors (raised before a handler runs) as HTTP answers. */
const FROM_FASTIFY: Record<string, [number, ApiErrorCode]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'bad_request'],
  FST_ERR_CTP_EMPTY_TYPE: [415, 'unsupported_media_type'],
};

/** The HTTP answer for anything a route threw. */
export function httpErrorOf(error: unknown, bodyLimitBytes: number): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof ChunkvaultError) {
    const mapped = FROM_CHUNKVAULT[error.code];
    if (mapped) return new HttpError(mapped[0], mapped[1], describeError(error));
  }
  const code = (error as FastifyError | undefined)?.code;
  if (code && Object.hasOwn(FROM_FASTIFY, code)) {
    const [status, apiCode] = FROM_FASTIFY[code]!;
    const message = status === 413 ? `request body is larger than ${bodyLimitBytes} bytes (chunkvault.http.max_body_mb)` : describeError(error);
    return new HttpError(status, apiCode, message);
  }
  const status = (error as FastifyError | undefined)?.statusCode;
  // Other client errors Fastify raises (malformed request): say so, without claiming more.
  if (typeof status === 'number' && status >= 400 && status < 500) return new HttpError(400, 'bad_request', describeError(error));
  return new HttpError(500, 'internal', describeError(error));
}

/**
 * Installs the error and not-found handlers on `scope` (an encapsulated plugin, so the
 * dashboard and metrics routes keep their own).
 */
export function installErrorHandlers(scope: FastifyInstance, logger: Logger, bodyLimitBytes: number, notFound: boolean): void {
  scope.setErrorHandler(async (error, request, reply) => {
    const answer = httpErrorOf(error, bodyLimitBytes);
    if (answer.status >= 500) logger.error({ err: error, method: request.method, url: request.url }, 'HTTP API request failed');
    await sendError(reply, answer);
  });
  if (notFound) {
    scope.setNotFoundHandler(async (request, reply) => {
      await sendError(reply, new HttpError(404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`));
    });
  }
}

export async function sendError(reply: FastifyReply, error: HttpError): Promise<void> {
  await reply.code(error.status).type('application/json; charset=utf-8').send(error.body);
}
