/** Generic tasks over HTTP: send one by name, read its job, and the queues' counts. */
import type { FastifyInstance } from "fastify";
import { liveWorkers } from "../../db/workers.js";
import { EMAIL_QUEUE } from "../../mail/send-batch.js";
import type { SendOptions } from "../../queue/task.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound } from "../errors.js";
import { noQuery } from "../input.js";

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
  };
}

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

  app.get<{ Params: { id: string } }>(
    "/api/tasks/:id",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "A job's state, result and error",
        tags,
        params: {
          type: "object",
          additionalProperties: false,
          properties: { id: { type: "string", maxLength: 300 } },
        },
        querystring: noQuery,
      },
    },
    async (request) => {
      const job = await deps.producer.getJob(request.params.id);
      if (!job) throw notFound(`job ${request.params.id}`);
      return { id: job.id, name: job.name, state: job.state, result: job.result, error: job.error };
    },
  );

  app.get(
    "/api/workers",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Live worker processes with their counters and heartbeat",
        tags,
        querystring: noQuery,
      },
    },
    async () => ({
      workers: await liveWorkers(deps.db, deps.workerTimeoutMs ?? 15_000),
    }),
  );

  app.get(
    "/api/queues",
    {
      config: { access: "signed-in" },
      schema: { summary: "Job counts per queue and state", tags, querystring: noQuery },
    },
    async () => {
      const names = [...new Set([EMAIL_QUEUE, ...deps.registry.queues()])].sort();
      const queues = await Promise.all(
        names.map(async (name) => ({
          name,
          counts: await deps.broker
            .queue(name)
            .getJobCounts("waiting", "prioritized", "active", "delayed", "completed", "failed"),
        })),
      );
      return { queues };
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
