/** The built-in mail catcher's messages, for a new user to see real mail arrive. */
import type { FastifyInstance } from "fastify";
import { getCaughtMessage, listCaughtMessages } from "../../db/caught-messages.js";
import type { AppDeps } from "../app.js";
import { notFound } from "../errors.js";
import { idParams, noQuery } from "../input.js";
import { MESSAGE_HTML_HEADERS } from "../security-headers.js";

export async function messageRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const tags = ["mail catcher"];
  app.get<{ Querystring: { limit?: number } }>(
    "/api/messages",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Messages the built-in mail catcher received, newest first",
        tags,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { limit: { type: "integer", minimum: 1, maximum: 1000 } },
        },
      },
    },
    async (request) => ({
      enabled: deps.catcherEnabled,
      messages: await listCaughtMessages(deps.db, request.query.limit ?? 100),
    }),
  );
  app.get<{ Params: { id: number } }>(
    "/api/messages/:id",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "One caught message with its text, HTML and headers",
        tags,
        params: idParams,
        querystring: noQuery,
      },
    },
    async (request) => {
      const message = await getCaughtMessage(deps.db, request.params.id);
      if (!message) throw notFound(`message ${request.params.id}`);
      return message;
    },
  );
  app.get<{ Params: { id: number } }>(
    "/api/messages/:id/html",
    {
      // An iframe cannot send headers: the preview takes the token as ?token=.
      config: { access: { signedIn: true, tokenInQuery: true } },
      helmet: MESSAGE_HTML_HEADERS,
      schema: {
        summary: "A caught message's HTML body as a page of its own, for the dashboard's preview",
        tags,
        params: idParams,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { token: { type: "string", maxLength: 4096 } },
        },
      },
    },
    async (request, reply) => {
      const message = await getCaughtMessage(deps.db, request.params.id);
      if (!message?.html) throw notFound(`HTML of message ${request.params.id}`);
      return reply.type("text/html; charset=utf-8").send(message.html);
    },
  );
}
