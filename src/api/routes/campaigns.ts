/** Campaigns and their email log: create (JSON or a file), read, follow, pause, resume, cancel, retry. */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { getCampaign, listCampaigns } from "../../db/campaigns.js";
import { ALL_RECIPIENT_STATUSES, listRecipients, type RecipientStatus } from "../../db/recipients.js";
import {
  cancelCampaign,
  pauseCampaign,
  resumeCampaign,
  retryCampaign,
  type LifecycleAnswer,
} from "../../mail/campaign-lifecycle.js";
import { createCampaign, validateCampaignInput, type CampaignInput } from "../../mail/campaigns.js";
import { createCampaignStore } from "../../stores.js";
import { parseJsonRecipients, parseUpload, type ParseItem } from "../../mail/recipients/parse.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound } from "../errors.js";
import { presentCampaigns, presentRecipient } from "../present.js";

const idParams = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "integer", minimum: 1 } },
} as const;

interface ParsedCreate {
  fields: CampaignInput;
  items: Iterable<ParseItem> | AsyncIterable<ParseItem>;
  cleanup: () => Promise<void>;
}

/**
 * Reads a multipart campaign. The file is spooled to a temporary file as it arrives, so the
 * text fields may come before or after it and the upload is never held in memory.
 */
async function readMultipart(request: FastifyRequest, maxUploadBytes: number): Promise<ParsedCreate> {
  const dir = await mkdtemp(join(tmpdir(), "lovage-upload-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const fields: Record<string, unknown> = {};
    let file: { path: string; filename: string } | undefined;
    for await (const part of request.parts({ limits: { fileSize: maxUploadBytes, files: 1 } })) {
      if (part.type === "file") {
        if (part.fieldname !== "file") {
          part.file.resume();
          throw new ApiError(
            "bad_request",
            `unexpected file field "${part.fieldname}": send the list as "file"`,
          );
        }
        const path = join(dir, "upload");
        await pipeline(part.file, createWriteStream(path));
        file = { path, filename: part.filename };
      } else {
        fields[part.fieldname] = part.value;
      }
    }
    let items: Iterable<ParseItem> | AsyncIterable<ParseItem>;
    if (file) {
      items = parseUpload(createReadStream(file.path), file.filename);
    } else if (typeof fields.recipients === "string") {
      items = parseJsonRecipients(fields.recipients);
    } else {
      throw new ApiError(
        "bad_request",
        'recipients are required: a "file" field or a "recipients" text field',
      );
    }
    return { fields, items, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

function readJson(body: unknown): ParsedCreate {
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError(
      "bad_request",
      "the body must be a JSON object with subject, text or html, and recipients",
    );
  }
  const fields = body as CampaignInput & { recipients?: unknown };
  if (fields.recipients === undefined) {
    throw new ApiError("bad_request", "recipients is required: a string (one per line) or an array");
  }
  let items: ParseItem[];
  try {
    items = parseJsonRecipients(fields.recipients);
  } catch (error) {
    throw new ApiError("bad_request", (error as Error).message);
  }
  return { fields, items, cleanup: async () => undefined };
}

export async function campaignRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;
  const campaigns = createCampaignStore(db);
  const tags = ["campaigns"];

  app.post(
    "/api/campaigns",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Create a campaign from pasted recipients, a JSON array, or an uploaded CSV/TXT file",
        tags,
        description:
          'JSON {"subject","text","html","from","name","priority","sendAt","recipients"} or multipart with the same fields and a "file".',
      },
    },
    async (request, reply) => {
      const parsed = request.isMultipart()
        ? await readMultipart(request, deps.maxUploadBytes)
        : readJson(request.body);
      try {
        const campaign = validateCampaignInput(parsed.fields, deps.defaultFrom);
        const created = await createCampaign(campaigns, campaign, parsed.items);
        deps.dispatcher?.wake();
        const row = await getCampaign(db, created.campaignId);
        const [view] = await presentCampaigns(db, [row!]);
        return reply.status(202).send({
          campaign: view,
          accepted: created.accepted,
          rejected: created.rejected,
          rejectedCount: created.rejectedCount,
        });
      } finally {
        await parsed.cleanup();
      }
    },
  );

  app.get<{ Querystring: { limit?: number; before?: number } }>(
    "/api/campaigns",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "List campaigns, newest first",
        tags,
        querystring: {
          type: "object",
          properties: { limit: { type: "integer", minimum: 1, maximum: 500 }, before: { type: "integer" } },
        },
      },
    },
    async (request) => {
      const rows = await listCampaigns(db, {
        limit: request.query.limit ?? 100,
        beforeId: request.query.before,
      });
      return { campaigns: await presentCampaigns(db, rows) };
    },
  );

  async function campaignView(id: number) {
    const row = await getCampaign(db, id);
    if (!row) throw notFound(`campaign ${id}`);
    const [view] = await presentCampaigns(db, [row]);
    return view!;
  }

  app.get<{ Params: { id: number } }>(
    "/api/campaigns/:id",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "A campaign with its counts by recipient status, rate and ETA",
        tags,
        params: idParams,
      },
    },
    async (request) => campaignView(request.params.id),
  );

  const recipientQuery = {
    type: "object",
    properties: {
      status: { type: "string", enum: ALL_RECIPIENT_STATUSES },
      q: { type: "string", maxLength: 254 },
      cursor: { type: "string", pattern: "^[0-9]+$" },
      limit: { type: "integer", minimum: 1, maximum: 1000 },
    },
  } as const;
  type RecipientQuerystring = { status?: RecipientStatus; q?: string; cursor?: string; limit?: number };

  async function page(campaignId: number | undefined, query: RecipientQuerystring) {
    const limit = query.limit ?? 100;
    const rows = await listRecipients(db, {
      campaignId,
      status: query.status,
      q: query.q,
      afterId: query.cursor ? Number(query.cursor) : undefined,
      limit,
    });
    return {
      recipients: rows.map(presentRecipient),
      nextCursor: rows.length === limit ? String(rows[rows.length - 1]!.id) : null,
    };
  }

  app.get<{ Params: { id: number }; Querystring: RecipientQuerystring }>(
    "/api/campaigns/:id/recipients",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "The email log of a campaign, filtered and paginated",
        tags,
        params: idParams,
        querystring: recipientQuery,
      },
    },
    async (request) => {
      if (!(await getCampaign(db, request.params.id))) throw notFound(`campaign ${request.params.id}`);
      return page(request.params.id, request.query);
    },
  );

  app.get<{ Querystring: RecipientQuerystring }>(
    "/api/emails",
    {
      config: { access: "signed-in" },
      schema: { summary: "Search the email log across campaigns", tags, querystring: recipientQuery },
    },
    async (request) => page(undefined, request.query),
  );

  app.get<{ Params: { id: number }; Querystring: { status?: RecipientStatus } }>(
    "/api/campaigns/:id/recipients.csv",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "The email log of a campaign as CSV",
        tags,
        params: idParams,
        querystring: {
          type: "object",
          properties: { status: { type: "string", enum: ALL_RECIPIENT_STATUSES } },
        },
      },
    },
    async (request, reply) => {
      const campaignId = request.params.id;
      if (!(await getCampaign(db, campaignId))) throw notFound(`campaign ${campaignId}`);
      const status = request.query.status;
      async function* lines() {
        yield "id,line,email,name,status,attempts,queued_at,last_attempt_at,sent_at,message_id,last_response,last_error\n";
        let afterId: number | undefined;
        for (;;) {
          const rows = await listRecipients(db, { campaignId, status, afterId, limit: 5000 });
          if (rows.length === 0) return;
          yield rows
            .map((r) =>
              [
                r.id,
                r.line,
                r.email,
                r.fields.name ?? "",
                r.status,
                r.attempts,
                r.queuedAt?.toISOString() ?? "",
                r.lastAttemptAt?.toISOString() ?? "",
                r.sentAt?.toISOString() ?? "",
                r.messageId ?? "",
                r.lastResponse ?? "",
                r.lastError ?? "",
              ]
                .map(csvCell)
                .join(","),
            )
            .join("\n")
            .concat("\n");
          afterId = rows[rows.length - 1]!.id;
        }
      }
      return reply
        .header("content-type", "text/csv; charset=utf-8")
        .header("content-disposition", `attachment; filename="campaign-${campaignId}-recipients.csv"`)
        .send(Readable.from(lines()));
    },
  );

  async function act(id: number, answer: Promise<LifecycleAnswer>) {
    const done = await answer;
    if (!done.ok)
      throw done.problem === "not_found"
        ? notFound(`campaign ${id}`)
        : new ApiError("conflict", done.message);
    deps.dispatcher?.wake();
    return campaignView(id);
  }

  app.post<{ Params: { id: number } }>(
    "/api/campaigns/:id/pause",
    {
      config: { access: "signed-in" },
      schema: { summary: "Stop sending; queued recipients go back to pending", tags, params: idParams },
    },
    async (request) => act(request.params.id, pauseCampaign(campaigns, request.params.id)),
  );

  app.post<{ Params: { id: number } }>(
    "/api/campaigns/:id/resume",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Resume a paused campaign: only recipients not yet sent are sent",
        tags,
        params: idParams,
      },
    },
    async (request) => act(request.params.id, resumeCampaign(campaigns, request.params.id)),
  );

  app.post<{ Params: { id: number } }>(
    "/api/campaigns/:id/cancel",
    {
      config: { access: "signed-in" },
      schema: { summary: "Cancel: recipients not yet sent are skipped", tags, params: idParams },
    },
    async (request) => act(request.params.id, cancelCampaign(campaigns, request.params.id)),
  );

  app.post<{ Params: { id: number }; Body: { statuses?: ("failed" | "unknown")[] } | null }>(
    "/api/campaigns/:id/retry",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Send again to failed recipients, or to unknown ones (which may then receive it twice)",
        tags,
        params: idParams,
        body: {
          type: ["object", "null"],
          properties: {
            statuses: { type: "array", items: { type: "string", enum: ["failed", "unknown"] }, minItems: 1 },
          },
        },
      },
    },
    async (request) =>
      act(request.params.id, retryCampaign(campaigns, request.params.id, request.body?.statuses)),
  );
}

function csvCell(value: string | number): string {
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
