/**
 * Live progress as server-sent events: `campaign` (a campaign's view), `workers` (the live
 * workers) and `queue` (a queue's counts and pause). One poller reads the store and the broker
 * once a second while anyone listens, whichever process changed them (workers on other hosts
 * included), and each connection receives what changed since it last heard.
 */
import type { FastifyInstance } from "fastify";
import { listCampaigns } from "../../db/campaigns.js";
import { liveWorkers, type WorkerView } from "../../db/workers.js";
import { createQueueAdmin, type QueueInfo } from "../../queue/queues.js";
import type { AppDeps } from "../app.js";
import { presentCampaigns, type CampaignView } from "../present.js";
import { DEFAULT_WORKER_TIMEOUT_MS, knownQueues } from "./queues.js";

const POLL_MS = 1_000;
const HEARTBEAT_MS = 15_000;

interface Snapshot {
  campaigns: CampaignView[];
  workers: WorkerView[] | undefined;
  queues: QueueInfo[] | undefined;
}

type Subscriber = (snapshot: Snapshot) => void;

export async function eventRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const subscribers = new Set<Subscriber>();
  const admin = createQueueAdmin(deps.broker);
  let timer: NodeJS.Timeout | undefined;

  async function poll() {
    try {
      const rows = await listCampaigns(deps.db, { limit: 50 });
      const [campaigns, workers, queues] = await Promise.all([
        presentCampaigns(deps.db, rows),
        liveWorkers(deps.db, deps.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS),
        // The broker may be down while the store is up: campaigns are still told.
        Promise.all(knownQueues(deps).map((name) => admin.info(name))).catch(() => undefined),
      ]);
      for (const subscriber of subscribers) subscriber({ campaigns, workers, queues });
    } catch (error) {
      // The store is down: listeners keep their last view and hear again once it is back.
      app.log.warn({ err: (error as Error).message }, "event poll failed");
    }
    if (subscribers.size > 0) timer = setTimeout(() => void poll(), POLL_MS);
    else timer = undefined;
  }

  /** Open streams, ended when the server closes: a stream never ends by itself, and the server
   * waits for every open request before it stops, so SIGTERM would never finish. */
  const streams = new Set<{ end(): void }>();

  app.addHook("preClose", async () => {
    for (const stream of streams) stream.end();
    streams.clear();
  });

  app.addHook("onClose", async () => {
    clearTimeout(timer);
    subscribers.clear();
  });

  app.get(
    "/api/events",
    {
      // EventSource cannot send headers: the stream also takes the token as ?token=.
      config: { access: { signedIn: true, tokenInQuery: true } },
      schema: {
        summary:
          "Server-sent events: `campaign` (a campaign's view), `workers` (the live workers), `queue` (a queue's counts)",
        tags: ["events"],
        querystring: {
          type: "object",
          additionalProperties: false,
          // EventSource cannot send headers, so this stream alone takes the token here.
          properties: { token: { type: "string", maxLength: 4096 } },
        },
      },
    },
    (request, reply) => {
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      raw.write("retry: 2000\n\n");
      const last = new Map<string, string>();
      const send = (event: string, key: string, value: unknown) => {
        const json = JSON.stringify(value);
        if (last.get(key) === json) return;
        last.set(key, json);
        raw.write(`event: ${event}\ndata: ${json}\n\n`);
      };
      const subscriber: Subscriber = ({ campaigns, workers, queues }) => {
        for (const view of campaigns) send("campaign", `campaign:${view.id}`, view);
        if (workers) send("workers", "workers", { workers });
        for (const queue of queues ?? []) send("queue", `queue:${queue.name}`, queue);
      };
      const heartbeat = setInterval(() => raw.write(": keep-alive\n\n"), HEARTBEAT_MS);
      subscribers.add(subscriber);
      streams.add(raw);
      if (!timer) timer = setTimeout(() => void poll(), 0);
      request.raw.on("close", () => {
        clearInterval(heartbeat);
        subscribers.delete(subscriber);
        streams.delete(raw);
      });
    },
  );
}
