/**
 * The send-batch task: for each recipient id of a batch, claim it (queued → sending), render
 * the campaign for it, hand it to SMTP, and record what happened. A recipient that is not
 * `queued` any more is skipped, so a batch that runs twice sends nothing twice.
 *
 * It must never mark a recipient it could not record: when the store is down it keeps trying
 * to write the outcome, and if it cannot before the lease ends the row becomes `unknown`.
 */
import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import { getCampaign, type CampaignRow } from "../db/campaigns.js";
import { claimForSending, recordOutcome, type Outcome, type RecipientRow } from "../db/recipients.js";
import type { Database } from "../db/schema.js";
import { defineTask, type TaskDefinition } from "../queue/task.js";
import { compileTemplate, type Template } from "./render.js";
import type { SendResult, Transport } from "./transport-pool.js";

export const EMAIL_QUEUE = "email";
export const SEND_BATCH_TASK = "lovage.send-batch";

export interface SendBatchInput {
  campaignId: number;
  recipientIds: number[];
}

export interface SendBatchResult {
  sent: number;
  retried: number;
  failed: number;
  unknown: number;
  skipped: number;
}

export interface SendBatchDeps {
  db: Kysely<Database>;
  transport: Transport;
  workerId: string;
  maxAttempts: number;
  retryBaseMs: number;
  leaseMs: number;
  logger: { warn(obj: object, msg: string): void };
}

interface CompiledCampaign {
  campaign: CampaignRow;
  subject: Template;
  text: Template | undefined;
  html: Template | undefined;
  domain: string;
}

export const sendBatchInput = {
  parse(input: unknown): SendBatchInput {
    const value = input as Partial<SendBatchInput> | null;
    if (
      !value ||
      !Number.isInteger(value.campaignId) ||
      !Array.isArray(value.recipientIds) ||
      !value.recipientIds.every((id) => Number.isInteger(id))
    ) {
      throw new Error("send-batch input must be {campaignId: integer, recipientIds: integer[]}");
    }
    return { campaignId: value.campaignId!, recipientIds: value.recipientIds };
  },
};

/** Exponential backoff with full jitter on the upper half: base·2^(n-1)·[0.5, 1). */
export function retryDelayMs(attempt: number, baseMs: number, random = Math.random): number {
  const ceiling = baseMs * 2 ** Math.max(0, attempt - 1);
  return Math.round(ceiling * (0.5 + random() / 2));
}

export function outcomeOf(
  result: SendResult,
  attempt: number,
  deps: Pick<SendBatchDeps, "maxAttempts" | "retryBaseMs">,
  messageId: string,
): Outcome {
  if (result.ok) return { kind: "sent", messageId, response: result.response };
  const error = `${result.server}: ${result.error}`;
  switch (result.kind) {
    case "permanent":
      return { kind: "failed", code: result.code, error };
    case "ambiguous":
      return { kind: "unknown", code: result.code, error: `${error} (the message may have been delivered)` };
    case "temporary":
      if (attempt >= deps.maxAttempts) {
        return { kind: "failed", code: result.code, error: `${error} (gave up after ${attempt} attempts)` };
      }
      return {
        kind: "retry",
        code: result.code,
        error,
        retryAt: new Date(Date.now() + retryDelayMs(attempt, deps.retryBaseMs)),
      };
  }
}

export function createSendBatchTask(deps: SendBatchDeps): TaskDefinition<SendBatchInput, SendBatchResult> {
  const compiled = new Map<number, CompiledCampaign>();

  async function campaignFor(id: number): Promise<CompiledCampaign | undefined> {
    const cached = compiled.get(id);
    if (cached) return cached;
    const campaign = await getCampaign(deps.db, id);
    if (!campaign) return undefined;
    const entry = {
      campaign,
      subject: compileTemplate(campaign.subject),
      text: campaign.text ? compileTemplate(campaign.text) : undefined,
      html: campaign.html ? compileTemplate(campaign.html) : undefined,
      domain: campaign.from.split("@").pop()?.replace(/>.*$/, "") || "lovage.local",
    };
    // Templates never change after creation; a bounded cache keeps a long-running worker small.
    if (compiled.size > 1000) compiled.clear();
    compiled.set(id, entry);
    return entry;
  }

  async function record(recipient: RecipientRow, startedAt: Date, outcome: Outcome, signal: AbortSignal) {
    const deadline = startedAt.getTime() + deps.leaseMs;
    let delayMs = 200;
    for (;;) {
      try {
        await recordOutcome(
          deps.db,
          { id: recipient.id, campaignId: recipient.campaignId, attempt: recipient.attempts, startedAt },
          outcome,
          deps.workerId,
        );
        return;
      } catch (error) {
        // The store is down: the outcome lives only here until it is written. Keep trying until
        // the lease ends; after that the row is `unknown` and the attempt is reported by the job.
        if (Date.now() + delayMs > deadline || signal.aborted) {
          throw new Error(`could not record the outcome of recipient ${recipient.id}`, { cause: error });
        }
        deps.logger.warn(
          { recipient: recipient.id, outcome: outcome.kind, err: (error as Error).message },
          "store unavailable; retrying the write",
        );
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  return defineTask<SendBatchInput, SendBatchResult>(SEND_BATCH_TASK, {
    queue: EMAIL_QUEUE,
    input: sendBatchInput,
    handler: async ({ campaignId, recipientIds }, context) => {
      const result: SendBatchResult = { sent: 0, retried: 0, failed: 0, unknown: 0, skipped: 0 };
      const entry = await campaignFor(campaignId);
      if (!entry) return { ...result, skipped: recipientIds.length };
      for (const id of recipientIds) {
        if (context.signal.aborted) break;
        // Mark sending before DATA: a crash after this must not resend.
        const recipient = await claimForSending(deps.db, id, deps.leaseMs);
        if (!recipient) {
          result.skipped++;
          continue;
        }
        const startedAt = new Date();
        const fields: Record<string, string> = { ...recipient.fields, email: recipient.email };
        const name = fields.name;
        const messageId = `<${campaignId}.${recipient.id}.${recipient.attempts}.${randomBytes(6).toString("hex")}@${entry.domain}>`;
        const sendResult = await deps.transport.send({
          from: entry.campaign.from,
          to: name ? `"${name.replace(/["\\]/g, "")}" <${recipient.email}>` : recipient.email,
          subject: entry.subject.render(fields),
          text: entry.text?.render(fields),
          html: entry.html?.render(fields, { escapeHtml: true }),
          messageId,
        });
        const outcome = outcomeOf(sendResult, recipient.attempts, deps, messageId);
        await record(recipient, startedAt, outcome, context.signal);
        if (outcome.kind === "sent") result.sent++;
        else if (outcome.kind === "retry") result.retried++;
        else if (outcome.kind === "failed") result.failed++;
        else result.unknown++;
      }
      return result;
    },
  });
}
