/**
 * The unsubscribe link of every campaign message: `GET /u/:token` shows a page with a confirm
 * button, `POST /u/:token` unsubscribes (RFC 8058 one-click: mailbox providers POST
 * `List-Unsubscribe=One-Click` with no login, and expect a 2xx). Public routes: the token is
 * the proof. The pages are plain HTML without script or inline style (the CSP forbids both).
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { recipientAddress, suppressRecipient } from "../../db/suppressions.js";
import {
  lookUpUnsubscribe,
  maskAddress,
  unsubscribe,
  type UnsubscribeStore,
} from "../../mail/unsubscribe.js";
import type { AppDeps } from "../app.js";
import { noQuery } from "../input.js";
import { messageSettingsOf } from "./campaigns.js";

const tokenParams = {
  type: "object",
  required: ["token"],
  additionalProperties: false,
  properties: { token: { type: "string", maxLength: 100 } },
} as const;

function page(reply: FastifyReply, status: number, title: string, body: string) {
  return reply
    .status(status)
    .header("content-type", "text/html; charset=utf-8")
    .header("cache-control", "no-store")
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex"><title>${title}</title></head><body><main><h1>${title}</h1>${body}</main></body></html>`,
    );
}

const escape = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );

export async function unsubscribeRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { tokens } = messageSettingsOf(deps);
  const store: UnsubscribeStore = {
    recipientAddress: (id) => recipientAddress(deps.db, id),
    unsubscribe: (id) => suppressRecipient(deps.db, id, "unsubscribed"),
  };

  await app.register(async (scope) => {
    // One-click POSTs come form-encoded (or as multipart, registered by the app); the body says
    // nothing the token does not, so it is read and dropped.
    scope.addContentTypeParser(
      ["application/x-www-form-urlencoded", "text/plain"],
      { parseAs: "string", bodyLimit: 4096 },
      (_request, body, done) => done(null, body),
    );
    const notFound = (reply: FastifyReply) =>
      page(
        reply,
        404,
        "Link not valid",
        "<p>This unsubscribe link is not valid. Use the link of a message you received.</p>",
      );

    scope.get<{ Params: { token: string } }>(
      "/u/:token",
      {
        config: { access: "public" },
        schema: {
          summary:
            "The unsubscribe page of a message's List-Unsubscribe link: a confirm button, nothing changed",
          tags: ["unsubscribe"],
          // Pages for people and mailbox providers, outside /api: not in the API document.
          hide: true,
          params: tokenParams,
          querystring: noQuery,
        },
      },
      async (request, reply) => {
        const found = await lookUpUnsubscribe(store, tokens, request.params.token);
        if (!found.ok) return notFound(reply);
        return page(
          reply,
          200,
          "Unsubscribe",
          `<p>Stop sending emails to ${escape(maskAddress(found.email))}?</p><form method="post"><button type="submit">Unsubscribe</button></form>`,
        );
      },
    );

    scope.post<{ Params: { token: string } }>(
      "/u/:token",
      {
        config: { access: "public" },
        schema: {
          summary: "One-click unsubscribe (RFC 8058): the address goes on the suppression list at once",
          tags: ["unsubscribe"],
          // Pages for people and mailbox providers, outside /api: not in the API document.
          hide: true,
          params: tokenParams,
          querystring: noQuery,
        },
      },
      async (request, reply) => {
        const done = await unsubscribe(store, tokens, request.params.token);
        if (!done.ok) return notFound(reply);
        return page(
          reply,
          200,
          "Unsubscribed",
          `<p>${escape(maskAddress(done.email))} will get no more of these emails.</p>`,
        );
      },
    );
  });
}
