/**
 * Generic tasks over HTTP: send one by name, list jobs, read one with its attempts, cancel and
 * retry it. What a cancel or retry does is the producer's; this module
 * only reads requests and shapes answers.
 */
import type { FastifyInstance } from "fastify";
import { JOB_STATES, JobQueryError, JobStateError, type JobStateName } from "../../queue/producer.js";
import { NAME, type SendOptions } from "../../queue/task.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound } from "../errors.js";
import { noBody, noQuery } from "../input.js";
import { knownQueues } from "./queues.js";

/** A runAt may lie this far back (it then runs at once) or ahead: as far as delayMs may. */
const RUN_AT_RANGE_MS = 365 * 24 * 3600_000;

interface SendBody {
  input?: unknown;
  options?: {
    priority?: number;
    delayMs?: number;
    runAt?: string;
    attempts?: number;
    backoffMs?: number;
    timeoutMs?: number;
    idempotencyKey?: string;
    queue?: string;
  };
}

interface ListQuery {
  state?: JobStateName;
  name?: string;
  queue?: string;
  q?: string;
  cursor?: string;
  limit?: number;
}

/** A producer's refusal (wrong state, bad cursor) as the API's error. */
async function answering<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof JobStateError) throw new ApiError("conflict", error.message);
    if (error instanceof JobQueryError) throw new ApiError("bad_request", error.message);
    throw error;
  }
}

const idParams = {
  type: "object",
  additionalProperties: false,
  required: ["id"],
  properties: { id: { type: "string", minLength: 3, maxLength: 300 } },
} as const;

export async function taskRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const tags = ["tasks"];

  app.post<{ Params: { name: string }; Body: SendBody | null }>(
    "/api/tasks/:name",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Send a task by name; answers its job id",
        tags,
        params: {
          type: "object",
          additionalProperties: false,
          properties: { name: { type: "string", maxLength: 200 } },
        },
        querystring: noQuery,
        body: {
          type: ["object", "null"],
          additionalProperties: false,
          properties: {
            input: {},
            options: {
              type: "object",
              additionalProperties: false,
              properties: {
                priority: { type: "integer" },
                delayMs: { type: "integer" },
                runAt: { type: "string", format: "date-time" },
                attempts: { type: "integer" },
                backoffMs: { type: "integer" },
                timeoutMs: { type: "integer" },
                idempotencyKey: { type: "string" },
                queue: { type: "string", pattern: NAME.source },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const task = deps.registry.get(request.params.name);
      if (!task) {
        const known = deps.registry.all().map((t) => t.name);
        throw new ApiError(
          "not_found",
          `no task named "${request.params.name}" (known: ${known.join(", ") || "none"})`,
        );
      }
      const { runAt, ...rest } = request.body?.options ?? {};
      const options: SendOptions = { ...rest, ...(runAt ? { runAt: checkRunAt(runAt) } : {}) };
      let input: unknown;
      try {
        input = task.input ? task.input.parse(request.body?.input) : request.body?.input;
      } catch (error) {
        const issues = (error as { issues?: { path?: PropertyKey[]; message: string }[] }).issues;
        if (!issues)
          throw new ApiError(
            "bad_request",
            `input of task ${task.name} is invalid: ${(error as Error).message}`,
          );
        // A zod-like parser lists each problem with its path: say each one, with its field.
        const problems = issues.map((issue) => ({
          field: issue.path && issue.path.length > 0 ? issue.path.map(String).join(".") : "input",
          reason: issue.message,
        }));
        throw new ApiError(
          "bad_request",
          `input of task ${task.name} is invalid: ${problems.map((p) => `${p.field}: ${p.reason}`).join("; ")}`,
          problems,
        );
      }
      const job = await deps.producer.send(task, input, options);
      return reply.status(202).send({ id: job.id });
    },
  );

  app.get<{ Querystring: ListQuery }>(
    "/api/tasks",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Jobs newest first, filtered by state, task name, queue and text; a page at a time",
        tags,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            state: { type: "string", enum: Object.values(JOB_STATES) },
            name: { type: "string", pattern: NAME.source },
            queue: { type: "string", pattern: NAME.source },
            q: { type: "string", minLength: 1, maxLength: 200 },
            cursor: { type: "string", maxLength: 500 },
            limit: { type: "integer", minimum: 1, maximum: 500, default: 50 },
          },
        },
      },
    },
    async (request) => {
      const { queue, limit = 50, ...filters } = request.query;
      const queues = queue ? [queue] : knownQueues(deps);
      return answering(() => deps.producer.listJobs({ queues, limit, ...filters }));
    },
  );

  app.get<{ Params: { id: string } }>(
    "/api/tasks/:id",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "A job: state, input, result or error with its stack, times, worker and attempts",
        tags,
        params: idParams,
        querystring: noQuery,
      },
    },
    async (request) => {
      const job = await deps.producer.getJobDetail(request.params.id);
      if (!job) throw notFound(`job ${request.params.id}`);
      return job;
    },
  );

  app.post<{ Params: { id: string } }>(
    "/api/tasks/:id/cancel",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Cancel a waiting, delayed or active job; answers it as it is then",
        tags,
        params: idParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request) => {
      const job = await answering(() => deps.producer.cancel(request.params.id));
      if (!job) throw notFound(`job ${request.params.id}`);
      return job;
    },
  );

  app.post<{ Params: { id: string } }>(
    "/api/tasks/:id/retry",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Run a failed or cancelled job again",
        tags,
        params: idParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request) => {
      const job = await answering(() => deps.producer.retry(request.params.id));
      if (!job) throw notFound(`job ${request.params.id}`);
      return job;
    },
  );
}

/** The schema checked the format (RFC 3339); a year far off is taken as a typo, as delayMs would be. */
function checkRunAt(runAt: string): Date {
  const date = new Date(runAt);
  const now = Date.now();
  if (Math.abs(date.getTime() - now) > RUN_AT_RANGE_MS) {
    throw new ApiError("bad_request", `options.runAt: must be within a year of now (got ${runAt})`, [
      { field: "body.options.runAt", reason: "must be within a year of now" },
    ]);
  }
  return date;
}
