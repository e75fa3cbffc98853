/**
 * The suppression list over HTTP: list and search it, export it as CSV, add entries (JSON, or a
 * CSV/TXT import as the body), and remove one. Sending reads the list at every claim, so a
 * change here holds for the next message of every campaign.
 */
import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import {
  ALL_SUPPRESSION_REASONS,
  addSuppressions,
  countSuppressions,
  listSuppressions,
  removeSuppression,
  type SuppressionReason,
  type SuppressionRow,
} from "../../db/suppressions.js";
import { validateEmail } from "../../mail/recipients/parse.js";
import {
  parseSuppressionImport,
  parseSuppressionList,
  type ParsedSuppressions,
  type SuppressionInput,
} from "../../mail/suppressions.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound } from "../errors.js";
import { noQuery } from "../input.js";
import { csvCell } from "./campaigns.js";

const present = (row: SuppressionRow) => ({
  email: row.email,
  reason: row.reason,
  campaignId: row.campaignId,
  detail: row.detail,
  createdAt: row.createdAt.toISOString(),
});

export async function suppressionRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;
  const tags = ["suppressions"];

  await app.register(async (scope) => {
    // An import is the file's text as the body.
    scope.addContentTypeParser(["text/csv", "text/plain"], { parseAs: "string" }, (_request, body, done) =>
      done(null, body),
    );

    scope.get<{ Querystring: { reason?: SuppressionReason; q?: string; cursor?: string; limit?: number } }>(
      "/api/suppressions",
      {
        config: { access: "signed-in" },
        schema: {
          summary: "The suppression list in address order, filtered; with the counts by reason",
          tags,
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: {
              reason: { type: "string", enum: ALL_SUPPRESSION_REASONS },
              q: { type: "string", maxLength: 254 },
              cursor: { type: "string", maxLength: 320, description: "nextCursor of the page before" },
              limit: { type: "integer", minimum: 1, maximum: 1000 },
            },
          },
        },
      },
      async (request) => {
        const limit = request.query.limit ?? 100;
        const rows = await listSuppressions(db, {
          reason: request.query.reason,
          q: request.query.q,
          afterEmail: request.query.cursor,
          limit,
        });
        return {
          suppressions: rows.map(present),
          nextCursor: rows.length === limit ? rows[rows.length - 1]!.email : null,
          counts: await countSuppressions(db),
        };
      },
    );

    scope.get(
      "/api/suppressions.csv",
      {
        config: { access: "signed-in" },
        schema: {
          summary: "The whole suppression list as CSV (it imports back as it is)",
          tags,
          querystring: noQuery,
        },
      },
      async (_request, reply) => {
        async function* lines() {
          yield "email,reason,campaign_id,detail,created_at\n";
          let afterEmail: string | undefined;
          for (;;) {
            const rows = await listSuppressions(db, { afterEmail, limit: 5000 });
            if (rows.length === 0) return;
            yield rows
              .map((r) =>
                [r.email, r.reason, r.campaignId ?? "", r.detail ?? "", r.createdAt.toISOString()]
                  .map(csvCell)
                  .join(","),
              )
              .join("\n")
              .concat("\n");
            afterEmail = rows[rows.length - 1]!.email;
          }
        }
        return reply
          .header("content-type", "text/csv; charset=utf-8")
          .header("content-disposition", 'attachment; filename="suppressions.csv"')
          .send(Readable.from(lines()));
      },
    );

    scope.post<{ Body: string | { entries: SuppressionInput[] } }>(
      "/api/suppressions",
      {
        config: { access: "signed-in" },
        schema: {
          summary: "Add addresses to the suppression list: JSON entries, or a CSV/TXT import as the body",
          description:
            'JSON {"entries": [{"email", "reason"?, "detail"?}]}; or a text/csv body with an email column (and optional reason, detail columns), or one address per line. The reason defaults to manual. A stronger reason already there (complained > bounced > unsubscribed > manual) is kept.',
          tags,
          querystring: noQuery,
          body: {
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  additionalProperties: false,
                  required: ["entries"],
                  properties: {
                    entries: {
                      type: "array",
                      maxItems: 100_000,
                      items: {
                        type: "object",
                        additionalProperties: false,
                        required: ["email"],
                        properties: {
                          email: { type: "string", maxLength: 320 },
                          reason: { type: "string", enum: ALL_SUPPRESSION_REASONS },
                          detail: { type: "string", maxLength: 1000 },
                        },
                      },
                    },
                  },
                },
              },
              "text/csv": { schema: { type: "string" } },
              "text/plain": { schema: { type: "string" } },
            },
          },
        },
      },
      async (request) => {
        let parsed: ParsedSuppressions;
        try {
          parsed =
            typeof request.body === "string"
              ? parseSuppressionImport(request.body)
              : parseSuppressionList(request.body.entries);
        } catch (error) {
          throw new ApiError("bad_request", (error as Error).message);
        }
        let written = 0;
        for (let i = 0; i < parsed.entries.length; i += 5000) {
          written += await addSuppressions(db, parsed.entries.slice(i, i + 5000));
        }
        return { accepted: parsed.entries.length, written, rejected: parsed.rejected };
      },
    );

    scope.delete<{ Params: { email: string } }>(
      "/api/suppressions/:email",
      {
        config: { access: "signed-in" },
        schema: {
          summary: "Remove an address from the suppression list: it may be mailed again",
          tags,
          params: {
            type: "object",
            required: ["email"],
            additionalProperties: false,
            properties: { email: { type: "string", maxLength: 320 } },
          },
          querystring: noQuery,
        },
      },
      async (request, reply) => {
        const checked = validateEmail(request.params.email);
        if (!checked.ok)
          throw new ApiError("bad_request", `email: ${checked.reason}`, [
            { field: "email", reason: checked.reason },
          ]);
        if (!(await removeSuppression(db, checked.email))) throw notFound(`suppression of ${checked.email}`);
        return reply.status(204).send();
      },
    );
  });
}
