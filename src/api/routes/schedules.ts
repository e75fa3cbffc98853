/**
 * Periodic tasks over HTTP: list schedules with their next and last run, create, enable,
 * disable, delete, run now. What each does is queue/schedules.ts's; this module reads requests
 * and shapes answers.
 */
import type { FastifyInstance } from "fastify";
import { createScheduleStore } from "../../db/schedules.js";
import { createSchedules, ScheduleError, type NewSchedule } from "../../queue/schedules.js";
import { NAME } from "../../queue/task.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound } from "../errors.js";
import { noBody, noQuery } from "../input.js";

const idParams = {
  type: "object",
  additionalProperties: false,
  required: ["id"],
  properties: { id: { type: "string", pattern: NAME.source } },
} as const;

async function answering<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ScheduleError) {
      throw new ApiError(
        error.kind === "conflict" ? "conflict" : "bad_request",
        error.message,
        error.problems,
      );
    }
    throw error;
  }
}

export async function scheduleRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const tags = ["schedules"];
  const schedules = createSchedules({
    broker: deps.broker,
    store: createScheduleStore(deps.db),
    tasks: deps.registry,
    retention: deps.producer.retention,
  });

  app.get(
    "/api/schedules",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Schedules, enabled or not, with their next run and last run",
        tags,
        querystring: noQuery,
      },
    },
    async () => ({ schedules: await schedules.list() }),
  );

  app.post<{ Body: NewSchedule }>(
    "/api/schedules",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Create a schedule: a task run on a cron expression or every N ms",
        tags,
        querystring: noQuery,
        body: {
          type: "object",
          additionalProperties: false,
          required: ["task"],
          properties: {
            id: { type: "string", pattern: NAME.source },
            task: { type: "string", pattern: NAME.source },
            cron: { type: "string", minLength: 9, maxLength: 200 },
            everyMs: { type: "integer", minimum: 1000, maximum: 366 * 24 * 3600_000 },
            timezone: { type: "string", minLength: 1, maxLength: 100 },
            input: {},
            enabled: { type: "boolean" },
          },
        },
      },
    },
    async (request, reply) => {
      const created = await answering(() => schedules.create(request.body));
      return reply.status(201).send(created);
    },
  );

  for (const [action, enabled] of [
    ["enable", true],
    ["disable", false],
  ] as const) {
    app.post<{ Params: { id: string } }>(
      `/api/schedules/:id/${action}`,
      {
        config: { access: "signed-in" },
        schema: {
          summary: enabled ? "Enable a schedule" : "Disable a schedule (it is kept)",
          tags,
          params: idParams,
          querystring: noQuery,
          body: noBody,
        },
      },
      async (request) => {
        const schedule = await schedules.setEnabled(request.params.id, enabled);
        if (!schedule) throw notFound(`schedule ${request.params.id}`);
        return schedule;
      },
    );
  }

  app.post<{ Params: { id: string } }>(
    "/api/schedules/:id/run",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Run a schedule's task now; answers its job id",
        tags,
        params: idParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request, reply) => {
      const id = await schedules.runNow(request.params.id);
      if (!id) throw notFound(`schedule ${request.params.id}`);
      return reply.status(202).send({ id });
    },
  );

  app.get<{ Params: { id: string } }>(
    "/api/schedules/:id",
    {
      config: { access: "signed-in" },
      schema: { summary: "One schedule", tags, params: idParams, querystring: noQuery },
    },
    async (request) => {
      const schedule = await schedules.get(request.params.id);
      if (!schedule) throw notFound(`schedule ${request.params.id}`);
      return schedule;
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/api/schedules/:id",
    {
      config: { access: "signed-in" },
      schema: { summary: "Delete a schedule", tags, params: idParams, querystring: noQuery },
    },
    async (request, reply) => {
      if (!(await schedules.remove(request.params.id))) throw notFound(`schedule ${request.params.id}`);
      return reply.status(204).send();
    },
  );
}
