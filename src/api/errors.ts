/**
 * One registry of API errors: code → HTTP status. Every error body has the same shape,
 * `{"error": {"code", "message", "details"}}`, whatever raised it (a route, Fastify's own
 * validation, a body over the limit, a dependency that is down).
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { InvalidCampaignError } from "../mail/campaigns.js";
import { SendOptionsError } from "../queue/producer.js";

export const ERROR_STATUS = Object.freeze({
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const);
export type ErrorCode = keyof typeof ERROR_STATUS;

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string) => new ApiError("not_found", `${what} not found`);

/** Errors of a database or broker that does not answer: the request may succeed later. */
const UNAVAILABLE =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|Connection terminated|connection timeout|the database system is (starting up|shutting down)|terminating connection|Stream isn't writeable|Connection is closed/i;

export function isUnavailable(error: unknown): boolean {
  const e = error as { code?: string; message?: string; cause?: unknown } | undefined;
  if (!e) return false;
  if (UNAVAILABLE.test(`${e.code ?? ""} ${e.message ?? ""}`)) return true;
  return e.cause !== undefined && e.cause !== e && isUnavailable(e.cause);
}

function toApiError(error: FastifyError | Error): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof InvalidCampaignError) return new ApiError("bad_request", error.message, error.details);
  if (error instanceof SendOptionsError) return new ApiError("bad_request", error.message, error.problems);
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    return new ApiError(
      "bad_request",
      `invalid request: ${fastifyError.message}`,
      fastifyError.validation.map((v) => ({ field: v.instancePath || v.params, reason: v.message })),
    );
  }
  switch (fastifyError.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
    case "FST_REQ_FILE_TOO_LARGE":
    case "FST_FILES_LIMIT":
    case "FST_PARTS_LIMIT":
      return new ApiError("too_large", fastifyError.message);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError("unsupported_media_type", fastifyError.message);
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new ApiError("bad_request", fastifyError.message);
  }
  if (fastifyError.statusCode === 429) return new ApiError("rate_limited", fastifyError.message);
  if (fastifyError.statusCode === 401) return new ApiError("unauthorized", fastifyError.message);
  if (fastifyError instanceof SyntaxError)
    return new ApiError("bad_request", `invalid JSON: ${fastifyError.message}`);
  if (isUnavailable(error)) {
    return new ApiError("unavailable", "a dependency (database or broker) is unavailable; try again shortly");
  }
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new ApiError("bad_request", fastifyError.message);
  }
  return new ApiError("internal", "internal error");
}

export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const apiError = toApiError(error);
    if (apiError.code === "internal" || apiError.code === "unavailable") {
      request.log.error({ err: error }, "request failed");
    }
    return reply
      .status(apiError.status)
      .send({ error: { code: apiError.code, message: apiError.message, details: apiError.details ?? null } });
  });
}
