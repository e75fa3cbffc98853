/** The SMTP servers as the workers see them (state, figures) and the pace events. */
import type { FastifyInstance } from "fastify";
import { listSmtpEvents } from "../../db/smtp.js";
import type { AppDeps } from "../app.js";
import { noQuery } from "../input.js";
import { presentSmtpEvent, smtpServers } from "../present.js";

export async function smtpRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get(
    "/api/smtp",
    {
      config: { access: "signed-in" },
      schema: {
        summary:
          "Each SMTP server's state and figures (sent, failed, deferred, rate), and the last 100 pace events",
        tags: ["smtp"],
        querystring: noQuery,
      },
    },
    async () => {
      const [servers, events] = await Promise.all([
        smtpServers(deps.db, deps.workerTimeoutMs ?? 15_000),
        listSmtpEvents(deps.db, { limit: 100 }),
      ]);
      return { servers, events: events.map(presentSmtpEvent) };
    },
  );
}
