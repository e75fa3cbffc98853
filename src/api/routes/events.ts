/**
 * Live campaign progress as server-sent events. One poller reads the store once a second while
 * anyone listens, whichever process changed the rows (workers on other hosts included), and
 * each connection receives the campaigns whose view changed since it last heard.
 */
import type { FastifyInstance } from "fastify";
import { listCampaigns } from "../../db/campaigns.js";
import type { AppDeps } from "../app.js";
import { presentCampaigns, type CampaignView } from "../present.js";

const POLL_MS = 1_000;
const HEARTBEAT_MS = 15_000;

type Subscriber = (views: CampaignView[]) => void;

export async function eventRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const subscribers = new Set<Subscriber>();
  let timer: NodeJS.Timeout | undefined;

  async function poll() {
    try {
      const rows = await listCampaigns(deps.db, { limit: 50 });
      const views = await presentCampaigns(deps.db, rows);
      for (const subscriber of subscribers) subscriber(views);
    } catch (error) {
      // The store is down: listeners keep their last view and hear again once it is back.
      app.log.warn({ err: (error as Error).message }, "event poll failed");
    }
    if (subscribers.size > 0) timer = setTimeout(() => void poll(), POLL_MS);
    else timer = undefined;
  }

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
        summary: "Server-sent events: `campaign` with a campaign's view",
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
      const last = new Map<number, string>();
      const subscriber: Subscriber = (views) => {
        for (const view of views) {
          const json = JSON.stringify(view);
          if (last.get(view.id) === json) continue;
          last.set(view.id, json);
          raw.write(`event: campaign\ndata: ${json}\n\n`);
        }
      };
      const heartbeat = setInterval(() => raw.write(": keep-alive\n\n"), HEARTBEAT_MS);
      subscribers.add(subscriber);
      if (!timer) timer = setTimeout(() => void poll(), 0);
      request.raw.on("close", () => {
        clearInterval(heartbeat);
        subscribers.delete(subscriber);
      });
    },
  );
}
