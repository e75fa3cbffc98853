/** Campaigns and their email log: create (JSON or a file), read, follow, pause, resume, cancel, retry. */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { getCampaign, listCampaigns } from "../../db/campaigns.js";
import {
  ALL_RECIPIENT_STATUSES,
  getRecipient,
  listAttempts,
  listRecipients,
  type RecipientStatus,
} from "../../db/recipients.js";
import {
  cancelCampaign,
  pauseCampaign,
  resumeCampaign,
  retryCampaign,
  type LifecycleAnswer,
} from "../../mail/campaign-lifecycle.js";
import {
  checkUnsubscribePlaceholder,
  createCampaign,
  validateCampaignInput,
  type CampaignInput,
} from "../../mail/campaigns.js";
import type { MessageSettings } from "../../mail/message.js";
import { createTokens } from "../../mail/tokens.js";
import { InvalidSampleError, previewMessage, sampleMessage, testSend } from "../../mail/preview.js";
import { createCampaignStore } from "../../stores.js";
import { parseJsonRecipients, parseUpload, type ParseItem } from "../../mail/recipients/parse.js";
import type { AppDeps } from "../app.js";
import { ApiError, notFound, tooLarge } from "../errors.js";
import { MAX_ID, findUnstorable, idParams, noBody, noQuery, unstorableError } from "../input.js";
import { listSmtpEvents } from "../../db/smtp.js";
import { presentAttempt, presentCampaigns, presentRecipient, presentSmtpEvent } from "../present.js";

const optionalText = { type: ["string", "null"] } as const;

/** The fields of a new campaign; multipart takes the same ones as text, and a "file". */
const campaignFields = {
  name: { ...optionalText, description: "at most 200 characters; default: the subject" },
  from: { ...optionalText, description: 'an address or "Name <address>"; default: LOVAGE_DEFAULT_FROM' },
  subject: { ...optionalText, description: "required; at most 998 characters" },
  text: optionalText,
  html: optionalText,
  priority: { type: ["integer", "null"], description: "-100 to 100, default 0" },
  sendAt: {
    ...optionalText,
    description: "ISO 8601 with a zone (2026-12-01T09:00:00Z), from a year ago to 10 years ahead",
  },
  replyTo: {
    ...optionalText,
    description: 'an address or "Name <address>" for replies; default: none (replies go to from)',
  },
  headers: {
    type: ["object", "string", "null"],
    description:
      "extra headers, {name: value}: X-… (not X-Lovage-…), List-Id, List-Help, List-Owner, List-Subscribe, List-Post, List-Archive, Precedence, Auto-Submitted, Feedback-ID, Organization, Keywords, Comments, Importance, Priority; one line each. In a multipart form, as JSON text",
  },
  listUnsubscribe: {
    type: ["boolean", "null"],
    description:
      "default true: List-Unsubscribe and one-click unsubscribe (with LOVAGE_PUBLIC_URL); false for transactional mail",
  },
  ignoreManualSuppressions: {
    type: ["boolean", "null"],
    description:
      "default false: true sends to addresses suppressed by hand (reason manual), never to unsubscribed, bounced or complained ones",
  },
  servers: {
    type: ["array", "string", "null"],
    items: { type: "string", maxLength: 64 },
    maxItems: 100,
    description:
      "the names (name= in LOVAGE_SMTP_URL) of the SMTP servers it must use, failing over only among them; default: any. An unknown name is a 400 listing the configured ones. In a multipart form, names separated by commas or a JSON array",
  },
  errorBudget: {
    type: ["object", "boolean", "string", "null"],
    additionalProperties: false,
    properties: {
      share: { type: "number", description: "above 0 and below 1: 0.1 pauses at more than 10%" },
      window: { type: "integer", description: "the last N attempts, 1 to 100000" },
      minimum: { type: "integer", description: "no pause before this many attempts, at most window" },
    },
    description:
      'its own error budget, {share, window, minimum} (like {"share": 0.05, "window": 100, "minimum": 20}), or false for none; default: LOVAGE_ERROR_BUDGET. Also the setting\'s text, "5%/100/20" or "off"; in a multipart form, JSON or that text',
  },
  recipients: {
    type: ["string", "array"],
    description:
      'one per line ("email", "Name <email>", "email,name"), or an array of such strings or of {"email", …fields}',
  },
} as const;
const MULTIPART_FIELDS = new Set(Object.keys(campaignFields));

interface ParsedCreate {
  fields: CampaignInput;
  items: Iterable<ParseItem> | AsyncIterable<ParseItem>;
  cleanup: () => Promise<void>;
}

/**
 * Reads a multipart campaign. The file is spooled to a temporary file as it arrives, so the
 * text fields may come before or after it and the upload is never held in memory. Nothing is cut
 * short: a text field, or all of them together, over the body limit is a 413 naming it, as is a
 * file over the upload limit; an unknown or repeated field is a 400 naming it.
 */
async function readMultipart(
  request: FastifyRequest,
  limits: { maxUploadBytes: number; maxBodyBytes: number },
): Promise<ParsedCreate> {
  const dir = await mkdtemp(join(tmpdir(), "lovage-upload-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const fields: Record<string, unknown> = {};
    let textBytes = 0;
    let file: { path: string; filename: string } | undefined;
    try {
      for await (const part of request.parts({ limits: { fileSize: limits.maxUploadBytes, files: 1 } })) {
        if (part.type === "file") {
          if (part.fieldname !== "file") {
            part.file.resume();
            throw new ApiError(
              "bad_request",
              `unexpected file field "${part.fieldname}": send the list as "file"`,
            );
          }
          const path = join(dir, "upload");
          file = { path, filename: part.filename };
          await pipeline(part.file, createWriteStream(path));
          continue;
        }
        const name = part.fieldname;
        if (!MULTIPART_FIELDS.has(name)) {
          throw new ApiError(
            "bad_request",
            `unknown multipart field "${name}" (known: ${[...MULTIPART_FIELDS].join(", ")}, and a file part "file")`,
            [{ field: name, reason: "unknown field" }],
          );
        }
        if (Object.hasOwn(fields, name)) {
          throw new ApiError("bad_request", `multipart field "${name}" is given twice`, [
            { field: name, reason: "given twice" },
          ]);
        }
        textBytes += typeof part.value === "string" ? Buffer.byteLength(part.value) : 0;
        if (part.valueTruncated) {
          throw tooLarge(`the multipart field "${name}"`, limits.maxBodyBytes, "LOVAGE_MAX_BODY_BYTES");
        }
        if (textBytes > limits.maxBodyBytes) {
          throw tooLarge("the multipart text fields together", limits.maxBodyBytes, "LOVAGE_MAX_BODY_BYTES");
        }
        const problem = findUnstorable(part.value, name);
        if (problem) throw unstorableError(problem);
        fields[name] = part.value;
      }
    } catch (error) {
      throw multipartError(error, file?.filename, limits.maxUploadBytes);
    }
    let items: Iterable<ParseItem> | AsyncIterable<ParseItem>;
    if (file && fields.recipients !== undefined) {
      throw new ApiError(
        "bad_request",
        'give the recipients either as a "file" or as a "recipients" field, not both',
      );
    } else if (file) {
      items = parseUpload(createReadStream(file.path), file.filename);
    } else if (fields.recipients !== undefined) {
      items = recipientsOf(fields.recipients);
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

/**
 * What went wrong while reading the parts, as an answer that names the limit or the problem; a
 * failure of this machine (the disk, say) stays a server error.
 */
function multipartError(error: unknown, filename: string | undefined, maxUploadBytes: number): unknown {
  if (error instanceof ApiError) return error;
  const e = error as { code?: string; syscall?: string; statusCode?: number; message?: string };
  switch (e.code) {
    case "FST_REQ_FILE_TOO_LARGE":
      return tooLarge(
        filename === undefined ? "the file" : `the file "${filename}"`,
        maxUploadBytes,
        "LOVAGE_MAX_UPLOAD_BYTES",
      );
    case "FST_FILES_LIMIT":
      return new ApiError("too_large", 'only one file can be sent, as the field "file"');
    case "FST_FIELDS_LIMIT":
    case "FST_PARTS_LIMIT":
      return new ApiError(
        "too_large",
        `too many multipart fields: at most ${MULTIPART_FIELDS.size} and a file`,
      );
  }
  // A failing disk has a syscall; Fastify's errors have a status the error handler maps.
  if (e.syscall !== undefined || e.statusCode !== undefined) return error;
  // busboy's own errors ("Unexpected end of form", "Malformed part header") carry no code.
  return new ApiError("bad_request", `the multipart body could not be read: ${e.message ?? String(error)}`);
}

function recipientsOf(value: unknown): ParseItem[] {
  try {
    return parseJsonRecipients(value);
  } catch (error) {
    throw new ApiError("bad_request", (error as Error).message);
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
  return { fields, items: recipientsOf(fields.recipients), cleanup: async () => undefined };
}

/** A campaign as given to a preview or test send: its fields, and whom to render it for. */
const { recipients: _recipients, ...messageFields } = campaignFields;
const sampleBody = {
  type: "object",
  additionalProperties: false,
  required: ["to"],
  properties: {
    ...messageFields,
    to: { type: "string", maxLength: 400, description: 'the recipient: an address or "Name <address>"' },
    fields: {
      type: "object",
      additionalProperties: { type: "string", maxLength: 10_000 },
      maxProperties: 100,
      description: "placeholder values beyond name and email",
    },
  },
} as const;
type SampleBody = CampaignInput & { to: string; fields?: Record<string, string> };

/** Main always passes the deployment's settings; a test app without them gets keys of its own. */
export function messageSettingsOf(deps: AppDeps): MessageSettings {
  return deps.messageSettings ?? { tokens: createTokens(deps.jwtSecret), publicUrl: deps.publicUrl };
}

export async function campaignRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;
  const campaigns = createCampaignStore(db);
  const tags = ["campaigns"];

  const messageSettings = messageSettingsOf(deps);
  const serverNames = () => deps.smtpServerNames?.() ?? [];
  const sampleOf = (body: SampleBody) => {
    const { to, fields, ...input } = body;
    const campaign = validateCampaignInput(input, deps.defaultFrom, new Date(), serverNames());
    checkUnsubscribePlaceholder(campaign, deps.publicUrl);
    return { campaign, sample: { to, fields } };
  };

  app.post<{ Body: SampleBody }>(
    "/api/campaigns/preview",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Render a campaign's message for one recipient (headers, text and HTML) without sending",
        tags,
        querystring: noQuery,
        body: sampleBody,
      },
    },
    async (request) => {
      const { campaign, sample } = sampleOf(request.body);
      return sampleAnswer(() => previewMessage(campaign, sample, messageSettings));
    },
  );

  app.post<{ Body: SampleBody }>(
    "/api/campaigns/test-send",
    {
      config: { access: "signed-in" },
      schema: {
        summary:
          "Send one rendered message to a test address through the real transport; answers with the SMTP reply",
        description:
          "Nothing is stored and the suppression list is not consulted. 200 with ok false when the server refused it (its reply in error); 409 when this process has no SMTP server.",
        tags,
        querystring: noQuery,
        body: sampleBody,
      },
    },
    async (request) => {
      const { campaign, sample } = sampleOf(request.body);
      return sampleAnswer(() => {
        // Bad input first (a 400), then whether this process can send at all.
        sampleMessage(campaign, sample, messageSettings);
        const transport = deps.testTransport;
        if (!transport)
          throw new ApiError(
            "conflict",
            "this API process has no SMTP server to send through: set LOVAGE_SMTP_URL, or use lovage start",
          );
        return testSend(campaign, sample, messageSettings, transport);
      });
    },
  );

  app.post(
    "/api/campaigns",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Create a campaign from pasted recipients, a JSON array, or an uploaded CSV/TXT file",
        tags,
        description:
          'JSON with the fields below, or multipart/form-data with the same fields as text and a "file" (CSV or TXT) instead of "recipients". Unknown fields are a 400; a body, text field or file over its limit is a 413 naming the limit in bytes.',
        querystring: noQuery,
        body: {
          content: {
            "application/json": {
              schema: { type: "object", additionalProperties: false, properties: campaignFields },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const parsed = request.isMultipart() ? await readMultipart(request, deps) : readJson(request.body);
      try {
        const campaign = validateCampaignInput(parsed.fields, deps.defaultFrom, new Date(), serverNames());
        checkUnsubscribePlaceholder(campaign, deps.publicUrl);
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
          additionalProperties: false,
          properties: {
            limit: { type: "integer", minimum: 1, maximum: 500 },
            before: { type: "integer", minimum: 1, maximum: MAX_ID },
          },
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
        querystring: noQuery,
      },
    },
    async (request) => {
      const view = await campaignView(request.params.id);
      // The pace events while it was sending: servers taken out, rates lowered, suspensions.
      const events = view.startedAt
        ? await listSmtpEvents(db, {
            from: new Date(view.startedAt),
            to: view.completedAt ? new Date(view.completedAt) : null,
            limit: 100,
          })
        : [];
      return { ...view, smtpEvents: events.map(presentSmtpEvent) };
    },
  );

  const recipientQuery = {
    type: "object",
    additionalProperties: false,
    properties: {
      status: { type: "string", enum: ALL_RECIPIENT_STATUSES },
      q: { type: "string", maxLength: 254 },
      cursor: { type: "integer", minimum: 0, maximum: MAX_ID, description: "nextCursor of the page before" },
      limit: { type: "integer", minimum: 1, maximum: 1000 },
    },
  } as const;
  type RecipientQuerystring = { status?: RecipientStatus; q?: string; cursor?: number; limit?: number };

  async function page(campaignId: number | undefined, query: RecipientQuerystring) {
    const limit = query.limit ?? 100;
    const rows = await listRecipients(db, {
      campaignId,
      status: query.status,
      q: query.q,
      afterId: query.cursor,
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

  app.get<{ Params: { id: number; rid: number } }>(
    "/api/campaigns/:id/recipients/:rid",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "One recipient of a campaign, with every SMTP attempt made for it",
        tags,
        params: {
          type: "object",
          required: ["id", "rid"],
          additionalProperties: false,
          properties: {
            id: { type: "integer", minimum: 1, maximum: MAX_ID },
            rid: { type: "integer", minimum: 1, maximum: MAX_ID },
          },
        },
        querystring: noQuery,
      },
    },
    async (request) => {
      const { id, rid } = request.params;
      const row = await getRecipient(db, id, rid);
      if (!row) throw notFound(`recipient ${rid} of campaign ${id}`);
      return { ...presentRecipient(row), attemptsLog: (await listAttempts(db, rid)).map(presentAttempt) };
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
          additionalProperties: false,
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
      schema: {
        summary: "Stop sending; queued recipients go back to pending",
        tags,
        params: idParams,
        querystring: noQuery,
        body: noBody,
      },
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
        querystring: noQuery,
        body: noBody,
      },
    },
    async (request) => act(request.params.id, resumeCampaign(campaigns, request.params.id)),
  );

  app.post<{ Params: { id: number } }>(
    "/api/campaigns/:id/cancel",
    {
      config: { access: "signed-in" },
      schema: {
        summary: "Cancel: recipients not yet sent are skipped",
        tags,
        params: idParams,
        querystring: noQuery,
        body: noBody,
      },
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
        querystring: noQuery,
        body: {
          content: {
            "application/json": {
              schema: {
                type: ["object", "null"],
                additionalProperties: false,
                properties: {
                  statuses: {
                    type: "array",
                    items: { type: "string", enum: ["failed", "unknown"] },
                    minItems: 1,
                    maxItems: 2,
                    uniqueItems: true,
                  },
                },
              },
            },
          },
        },
      },
    },
    async (request) =>
      act(request.params.id, retryCampaign(campaigns, request.params.id, request.body?.statuses)),
  );
}

async function sampleAnswer<T>(work: () => Promise<T> | T): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof InvalidSampleError)
      throw new ApiError("bad_request", error.message, [{ field: "to", reason: error.reason }]);
    throw error;
  }
}

/**
 * One CSV cell. Text that a spreadsheet would run as a formula (it starts with =, +, -, @, a tab
 * or a CR: `=HYPERLINK(…)` in a recipient's name) starts with a single quote, as OWASP's CSV
 * injection advice says, so the export opens as text.
 */
export function csvCell(value: string | number): string {
  const text = typeof value === "string" && /^[=+\-@\t\r]/.test(value) ? `'${value}` : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
