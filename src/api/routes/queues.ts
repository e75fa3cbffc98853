/**
 * Queues and workers over HTTP, as Bull Board and Flower's remote control steer them: counts by
 * state, pause and resume, retry every failed job, clean finished jobs older than an age; live
 * workers and a graceful shutdown of one. What each action does is src/queue/queues.ts's (the
 * broker) and the worker's own (it reads its shutdown request at its next heartbeat).
 */
import type { FastifyInstance } from "fastify";
import { liveWorkers, requestShutdown } from "../../db/workers.js";
import { EMAIL_QUEUE } from "../../mail/send-batch.js";
import { createQueueAdmin, type CleanState } from "../../queue/queues.js";
import type { AppDeps } from "../app.js";
import { notFound } from "../errors.js";
import { noBody, noQuery } from "../input.js";

/** Stopping, pausing and cleaning affect every user's work: for admins (README, Users and roles). */
const OPERATOR = { signedIn: true, role: "admin" } as const;

/** The queues this API knows: its tasks' and the email queue. No other name opens a queue. */
export function knownQueues(deps: Pick<AppDeps, "registry">): string[] {
  return [...new Set([EMAIL_QUEUE, ...deps.registry.queues()])].sort();
}

export const DEFAULT_WORKER_TIMEOUT_MS = 15_000;

const nameParams = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: { name: { type: "string", minLength: 1, maxLength: 200 } },
} as const;

const workerParams = {
  type: "object",
  additionalProperties: false,
  required: ["id"],
  properties: { id: { type: "string", minLength: 1, maxLength: 300 } },
} as const;

export async function queueRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const admin = createQueueAdmin(deps.broker);
  const workerTimeoutMs = deps.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS;
  const known = (name: string) => {
    if (!knownQueues(deps).includes(name))
      throw notFound(`queue "${name}" (known: ${knownQueues(deps).join(", ")})`);
    return name;
  };

  app.get(
    "/api/queues",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Each queue: paused or not, and its job counts by state",
        tags: ["queues"],
        querystring: noQuery,
      },
    },
    async () => ({ queues: await Promise.all(knownQueues(deps).map((name) => admin.info(name))) }),
  );

  app.get<{ Params: { name: string } }>(
    "/api/queues/:name",
    {
      config: { access: "signed-in" },
      schema: { summary: "One queue's counts", tags: ["queues"], params: nameParams, querystring: noQuery },
    },
    async (request) => admin.info(known(request.params.name)),
  );

  app.post<{ Params: { name: string } }>(
    "/api/queues/:name/pause",
    {
      config: { access: OPERATOR },
      schema: {
        summary: "Pause a queue: no worker takes its jobs (those running finish) until resumed",
        tags: ["queues"],
        params: nameParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request) => admin.pause(known(request.params.name)),
  );

  app.post<{ Params: { name: string } }>(
    "/api/queues/:name/resume",
    {
      config: { access: OPERATOR },
      schema: {
        summary: "Resume a paused queue",
        tags: ["queues"],
        params: nameParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request) => admin.resume(known(request.params.name)),
  );

  app.post<{ Params: { name: string } }>(
    "/api/queues/:name/retry-failed",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Run every failed job of a queue again (cancelled ones stay cancelled)",
        tags: ["queues"],
        params: nameParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request) => {
      const name = known(request.params.name);
      const retried = await admin.retryFailed(name);
      return { retried, queue: await admin.info(name) };
    },
  );

  app.post<{ Params: { name: string }; Body: { state: CleanState; olderThanMs: number } }>(
    "/api/queues/:name/clean",
    {
      config: { access: OPERATOR },
      schema: {
        summary: "Remove completed or failed jobs that finished more than olderThanMs ago",
        tags: ["queues"],
        params: nameParams,
        querystring: noQuery,
        body: {
          type: "object",
          additionalProperties: false,
          required: ["state", "olderThanMs"],
          properties: {
            state: { type: "string", enum: ["completed", "failed"] },
            olderThanMs: { type: "integer", minimum: 0, maximum: 10 * 365 * 24 * 3600_000 },
          },
        },
      },
    },
    async (request) => {
      const name = known(request.params.name);
      const removed = await admin.clean(name, request.body.state, request.body.olderThanMs);
      return { removed, queue: await admin.info(name) };
    },
  );

  app.get(
    "/api/workers",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Live workers: host, pid, queues, concurrency, jobs running now, counters, heartbeat",
        tags: ["workers"],
        querystring: noQuery,
      },
    },
    async () => ({ workers: await liveWorkers(deps.db, workerTimeoutMs) }),
  );

  app.get<{ Params: { id: string } }>(
    "/api/workers/:id",
    {
      config: { access: "signed-in" },
      schema: { summary: "One live worker", tags: ["workers"], params: workerParams, querystring: noQuery },
    },
    async (request) => {
      const worker = (await liveWorkers(deps.db, workerTimeoutMs)).find((w) => w.id === request.params.id);
      if (!worker) throw notFound(`live worker ${request.params.id}`);
      return worker;
    },
  );

  app.post<{ Params: { id: string } }>(
    "/api/workers/:id/shutdown",
    {
      config: { access: OPERATOR },
      schema: {
        summary: "Ask a worker to stop gracefully: it takes no more jobs, finishes those running, and leaves",
        tags: ["workers"],
        params: workerParams,
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request, reply) => {
      const worker = await requestShutdown(deps.db, request.params.id, workerTimeoutMs);
      if (!worker) throw notFound(`live worker ${request.params.id}`);
      return reply.status(202).send(worker);
    },
  );
}
