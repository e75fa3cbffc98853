/**
 * Bounces and complaints from relays that report them by HTTP: `POST /api/bounces` (any relay,
 * Lovage's own JSON). The rules (what a hard or soft bounce or a complaint does) are in
 * mail/bounces.ts.
 */
import type { FastifyInstance } from "fastify";
import { applyFeedback } from "../../mail/bounces.js";
import { validateEmail } from "../../mail/recipients/parse.js";
import { createFeedbackStore } from "../../stores.js";
import type { AppDeps } from "../app.js";
import { ApiError } from "../errors.js";
import { MAX_ID, noQuery } from "../input.js";
import { messageSettingsOf } from "./campaigns.js";

interface BounceBody {
  address: string;
  type: "hard" | "soft" | "complaint";
  recipientId?: string;
  messageId?: string;
  diagnostic?: string;
}

export async function bounceRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const store = createFeedbackStore(deps.db);
  const settings = { tokens: messageSettingsOf(deps).tokens, softBounceLimit: deps.softBounceLimit ?? 3 };

  app.post<{ Body: BounceBody }>(
    "/api/bounces",
    {
      config: { access: "signed-in" },
      schema: {
        summary:
          "Report a bounce or a complaint from a relay (hard and complaint suppress the address at once)",
        description:
          "recipientId is the X-Lovage-Recipient header of the message (or a numeric recipient id); messageId its Message-ID. Without either, the most recent sent recipient of the address is meant.",
        tags: ["bounces"],
        querystring: noQuery,
        body: {
          type: "object",
          additionalProperties: false,
          required: ["address", "type"],
          properties: {
            address: { type: "string", maxLength: 320 },
            type: { type: "string", enum: ["hard", "soft", "complaint"] },
            recipientId: { type: "string", maxLength: 40 },
            messageId: { type: "string", maxLength: 998 },
            diagnostic: { type: "string", maxLength: 2000 },
          },
        },
      },
    },
    async (request) => {
      const body = request.body;
      const checked = validateEmail(body.address);
      if (!checked.ok)
        throw new ApiError("bad_request", `address: ${checked.reason}`, [
          { field: "address", reason: checked.reason },
        ]);
      let recipientId: number | undefined;
      if (body.recipientId !== undefined) {
        recipientId = /^\d+$/.test(body.recipientId)
          ? Number(body.recipientId)
          : settings.tokens.read("recipient", body.recipientId);
        if (recipientId === undefined || recipientId > MAX_ID)
          throw new ApiError(
            "bad_request",
            "recipientId: not an X-Lovage-Recipient token or a recipient id",
            [{ field: "recipientId", reason: "unknown" }],
          );
      }
      const result = await applyFeedback(store, settings, {
        kind: body.type,
        email: checked.email,
        recipientId,
        messageId: body.messageId,
        diagnostic: body.diagnostic ?? `${body.type} reported by the relay`,
        source: "api",
      });
      return result;
    },
  );
}
