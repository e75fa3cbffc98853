/**
 * `POST /api/webhooks/ses`: Amazon SES bounce and complaint notifications through SNS. Public
 * (SNS sends no token): each message must carry a valid SNS signature, or the URL the shared
 * secret (mail/ses.ts). SNS posts JSON as text/plain.
 */
import type { FastifyInstance } from "fastify";
import { applyFeedback } from "../../mail/bounces.js";
import { SnsRefused, createSnsVerifier, sesReports, type SnsMessage } from "../../mail/ses.js";
import { createFeedbackStore } from "../../stores.js";
import type { AppDeps } from "../app.js";
import { ApiError } from "../errors.js";
import { messageSettingsOf } from "./campaigns.js";

const fetchText = async (url: string) => {
  const response = await fetch(url, { redirect: "error", signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return response.text();
};

export async function webhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const store = createFeedbackStore(deps.db);
  const { tokens } = messageSettingsOf(deps);
  const settings = { tokens, softBounceLimit: deps.softBounceLimit ?? 3 };
  const verifier = createSnsVerifier(deps.snsFetch ?? fetchText, deps.sesWebhookSecret);

  await app.register(async (scope) => {
    scope.addContentTypeParser(
      "text/plain",
      { parseAs: "string", bodyLimit: 256 * 1024 },
      (_request, body, done) => {
        try {
          done(null, JSON.parse(body as string));
        } catch {
          done(new ApiError("bad_request", "the body is not an SNS message (JSON)"), undefined);
        }
      },
    );
    const snsSchema = {
      type: "object",
      // SNS's own envelope: it may grow fields (UnsubscribeURL, MessageAttributes) Lovage does not read.
      additionalProperties: true,
      required: ["Type", "MessageId", "TopicArn", "Message", "Timestamp"],
      properties: {
        Type: { type: "string", maxLength: 64 },
        MessageId: { type: "string", maxLength: 200 },
        TopicArn: { type: "string", maxLength: 400 },
        Subject: { type: "string", maxLength: 400 },
        Message: { type: "string", maxLength: 200_000 },
        Timestamp: { type: "string", maxLength: 64 },
        SignatureVersion: { type: "string", maxLength: 4 },
        Signature: { type: "string", maxLength: 2000 },
        SigningCertURL: { type: "string", maxLength: 2000 },
        SubscribeURL: { type: "string", maxLength: 2000 },
        Token: { type: "string", maxLength: 2000 },
      },
    } as const;

    scope.post<{ Body: SnsMessage; Querystring: { secret?: string } }>(
      "/api/webhooks/ses",
      {
        config: { access: "public" },
        schema: {
          summary: "Amazon SES bounce and complaint notifications, delivered by SNS (signature checked)",
          description:
            "Subscribe this URL to the SNS topic of the SES identity's bounce and complaint notifications; the subscription is confirmed by itself. Unsigned messages are refused unless ?secret= is LOVAGE_SES_WEBHOOK_SECRET.",
          tags: ["bounces"],
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: { secret: { type: "string", maxLength: 200 } },
          },
          body: {
            content: { "text/plain": { schema: snsSchema }, "application/json": { schema: snsSchema } },
          },
        },
      },
      async (request) => {
        const message = request.body as SnsMessage | undefined;
        if (typeof message !== "object" || message === null)
          throw new ApiError("bad_request", "the body must be an SNS message (JSON)");
        try {
          await verifier.check(message, request.query.secret);
          if (message.Type === "SubscriptionConfirmation") {
            await (deps.snsFetch ?? fetchText)(verifier.confirmUrl(message));
            return { confirmed: true };
          }
          if (message.Type !== "Notification") return { ignored: message.Type };
          const results = [];
          for (const report of sesReports(message.Message, tokens)) {
            results.push(await applyFeedback(store, settings, report));
          }
          request.log.info({ results }, "SES notification applied");
          return { results };
        } catch (error) {
          if (error instanceof SnsRefused) throw new ApiError("forbidden", error.message);
          throw error;
        }
      },
    );
  });
}
