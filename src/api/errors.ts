/**
 * One registry of API errors: code → HTTP status. Every error body has the same shape,
 * `{"error": {"code", "message", "details"}}`, whatever raised it (a route, Fastify's own
 * validation, a body over the limit, a dependency that is down).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { InvalidCampaignError } from "../mail/campaigns.js";
import { SendOptionsError } from "../queue/producer.js";

export const ERROR_STATUS = Object.freeze({
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  uri_too_long: 414,
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

/** One ajv problem, as Fastify reports it (with `verbose`, also the schema and data it concerns). */
interface SchemaProblem {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
  parentSchema?: { properties?: Record<string, unknown> };
  data?: unknown;
}

/** `body.recipients[2].name` from the part and ajv's `/recipients/2/name`. */
function fieldOf(part: string, instancePath: string, child?: unknown): string {
  const segments = instancePath.split("/").slice(1);
  if (typeof child === "string") segments.push(child);
  return segments.reduce(
    (path, segment) =>
      /^\d+$/.test(segment)
        ? `${path}[${segment}]`
        : /^[A-Za-z_$][\w$]*$/.test(segment)
          ? `${path}.${segment}`
          : `${path}[${JSON.stringify(segment.replaceAll("~1", "/").replaceAll("~0", "~"))}]`,
    part,
  );
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (Number.isInteger(value)) return "an integer";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function describeProblem(part: string, problem: SchemaProblem): { field: string; reason: string } {
  const { params } = problem;
  switch (problem.keyword) {
    case "additionalProperties": {
      const known = Object.keys(problem.parentSchema?.properties ?? {});
      return {
        field: fieldOf(part, problem.instancePath, params.additionalProperty),
        reason: `unknown field${known.length > 0 ? ` (known: ${known.join(", ")})` : ""}`,
      };
    }
    case "required":
      return { field: fieldOf(part, problem.instancePath, params.missingProperty), reason: "is required" };
    case "type":
      return {
        field: fieldOf(part, problem.instancePath),
        reason: `must be ${String(params.type).replaceAll(",", " or ")}, got ${typeName(problem.data)}`,
      };
    case "maxLength":
    case "minLength": {
      const length = typeof problem.data === "string" ? ` (it has ${problem.data.length})` : "";
      const bound = problem.keyword === "maxLength" ? "at most" : "at least";
      return {
        field: fieldOf(part, problem.instancePath),
        reason: `must have ${bound} ${String(params.limit)} characters${length}`,
      };
    }
    case "maximum":
    case "minimum":
      return {
        field: fieldOf(part, problem.instancePath),
        reason: `must be ${problem.keyword === "maximum" ? "at most" : "at least"} ${String(params.limit)}`,
      };
    case "enum":
      return {
        field: fieldOf(part, problem.instancePath),
        reason: `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`,
      };
    default:
      return { field: fieldOf(part, problem.instancePath), reason: problem.message ?? problem.keyword };
  }
}

/** The bytes a 413 was about, and the setting that sets them. */
export function tooLarge(what: string, limitBytes: number, setting: string): ApiError {
  return new ApiError("too_large", `${what} is larger than the limit of ${limitBytes} bytes (${setting})`, {
    limitBytes,
  });
}

function toApiError(error: FastifyError | Error, request: FastifyRequest): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof InvalidCampaignError) return new ApiError("bad_request", error.message, error.details);
  if (error instanceof SendOptionsError) return new ApiError("bad_request", error.message, error.problems);
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const part = fastifyError.validationContext ?? "request";
    const problems = (fastifyError.validation as SchemaProblem[])
      .map((problem) => describeProblem(part, problem))
      // anyOf and type lists report one problem per branch; one line per field and reason is enough.
      .filter(
        (p, index, all) => all.findIndex((q) => q.field === p.field && q.reason === p.reason) === index,
      );
    return new ApiError(
      "bad_request",
      `invalid request: ${problems.map((p) => `${p.field}: ${p.reason}`).join("; ")}`,
      problems,
    );
  }
  switch (fastifyError.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return tooLarge("the request body", request.routeOptions.bodyLimit, "LOVAGE_MAX_BODY_BYTES");
    case "FST_REQ_FILE_TOO_LARGE":
    case "FST_FILES_LIMIT":
    case "FST_PARTS_LIMIT":
    case "FST_FIELDS_LIMIT":
      return new ApiError("too_large", fastifyError.message);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError(
        "unsupported_media_type",
        `${fastifyError.message}: send application/json, or multipart/form-data where a file is taken`,
      );
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new ApiError("bad_request", fastifyError.message);
  }
  if (fastifyError.statusCode === 429) return new ApiError("rate_limited", fastifyError.message);
  if (fastifyError.statusCode === 401) return new ApiError("unauthorized", fastifyError.message);
  if (isUnavailable(error)) {
    return new ApiError("unavailable", "a dependency (database or broker) is unavailable; try again shortly");
  }
  if (fastifyError.statusCode === 413) return new ApiError("too_large", fastifyError.message);
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new ApiError("bad_request", fastifyError.message);
  }
  return new ApiError("internal", "internal error");
}

function send(reply: FastifyReply, apiError: ApiError): FastifyReply {
  return reply
    .status(apiError.status)
    .send({ error: { code: apiError.code, message: apiError.message, details: apiError.details ?? null } });
}

export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const apiError = toApiError(error, request);
    if (apiError.code === "internal" || apiError.code === "unavailable") {
      request.log.error({ err: error }, "request failed");
    }
    return send(reply, apiError);
  });
}

/**
 * Fastify's `frameworkErrors`: a path the router cannot even read (broken percent-encoding, a
 * segment over maxParamLength) answers in the common shape too, without echoing the path.
 */
export function answerFrameworkError(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  let apiError: ApiError;
  if (error.code === "FST_ERR_MAX_PARAM_LENGTH") {
    apiError = new ApiError(
      "uri_too_long",
      `a path segment is longer than ${request.server.initialConfig.maxParamLength ?? 100} characters`,
    );
  } else if (error.code === "FST_ERR_BAD_URL") {
    apiError = new ApiError("bad_request", "the path is not valid percent-encoded UTF-8");
  } else apiError = toApiError(error, request);
  void send(reply, apiError);
}
