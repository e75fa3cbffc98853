/**
 * Campaigns: what is sent, and where the whole send stands. Status moves:
 *   sending ──(no pending, queued or sending recipient left)──▶ completed
 *   scheduled ──(send_at reached)──▶ sending
 *   sending ⇄ paused (user, or the error budget), any open status ──▶ cancelled (user)
 *   completed ──(user retries failed or unknown recipients)──▶ sending
 */
import { sql } from "kysely";
import type { Db } from "./recipients.js";

export const CAMPAIGN_STATUSES = Object.freeze({
  draft: "draft",
  scheduled: "scheduled",
  sending: "sending",
  paused: "paused",
  completed: "completed",
  cancelled: "cancelled",
} as const);
export type CampaignStatus = (typeof CAMPAIGN_STATUSES)[keyof typeof CAMPAIGN_STATUSES];

export interface NewCampaign {
  name: string;
  from: string;
  subject: string;
  text: string | null;
  html: string | null;
  priority: number;
  sendAt: Date | null;
  /** A `Name <address>` or an address, as from is; null: replies go to From. */
  replyTo: string | null;
  /** Extra headers, checked against the list of what a campaign may set (mail/message.ts). */
  headers: Record<string, string>;
  /** Whether messages carry List-Unsubscribe (when LOVAGE_PUBLIC_URL is set); false for transactional mail. */
  listUnsubscribe: boolean;
  /** Sends to addresses suppressed with reason `manual` (never to unsubscribed, bounced or complained ones). */
  ignoreManualSuppressions: boolean;
  /** The names of the SMTP servers it must use; null or absent: any. */
  servers?: readonly string[] | null;
  /** Its error budget's thresholds, false for none; null or absent: the deployment's (LOVAGE_ERROR_BUDGET). */
  errorBudget?: CampaignErrorBudget | false | null;
}

/** As mail/send-batch.ts's ErrorBudget; declared here so that db/ imports nothing from mail/. */
export interface CampaignErrorBudget {
  share: number;
  window: number;
  minimum: number;
}

export interface CampaignRow extends NewCampaign {
  id: number;
  status: CampaignStatus;
  statusReason: string | null;
  total: number;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
}

const COLUMNS = [
  "id",
  "name",
  "from_address",
  "subject",
  "text_body",
  "html_body",
  "priority",
  "status",
  "status_reason",
  "send_at",
  "total",
  "created_at",
  "started_at",
  "completed_at",
  "reply_to",
  "headers",
  "list_unsubscribe",
  "ignore_manual_suppressions",
  "servers",
  "error_budget",
] as const;

function toRow(raw: {
  id: number;
  name: string;
  from_address: string;
  subject: string;
  text_body: string | null;
  html_body: string | null;
  priority: number;
  status: string;
  status_reason: string | null;
  send_at: Date | null;
  total: number;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
  reply_to: string | null;
  headers: Record<string, string>;
  list_unsubscribe: boolean;
  ignore_manual_suppressions: boolean;
  servers: string[] | null;
  error_budget: CampaignErrorBudget | false | null;
}): CampaignRow {
  return {
    id: raw.id,
    name: raw.name,
    from: raw.from_address,
    subject: raw.subject,
    text: raw.text_body,
    html: raw.html_body,
    priority: raw.priority,
    status: raw.status as CampaignStatus,
    statusReason: raw.status_reason,
    sendAt: raw.send_at,
    total: raw.total,
    createdAt: raw.created_at,
    startedAt: raw.started_at,
    completedAt: raw.completed_at,
    replyTo: raw.reply_to,
    headers: raw.headers,
    listUnsubscribe: raw.list_unsubscribe,
    ignoreManualSuppressions: raw.ignore_manual_suppressions,
    servers: raw.servers,
    errorBudget: raw.error_budget,
  };
}

export async function insertCampaign(db: Db, campaign: NewCampaign): Promise<number> {
  const row = await db
    .insertInto("lovage.campaigns")
    .values({
      name: campaign.name,
      from_address: campaign.from,
      subject: campaign.subject,
      text_body: campaign.text,
      html_body: campaign.html,
      priority: campaign.priority,
      send_at: campaign.sendAt,
      reply_to: campaign.replyTo,
      headers: JSON.stringify(campaign.headers),
      list_unsubscribe: campaign.listUnsubscribe,
      ignore_manual_suppressions: campaign.ignoreManualSuppressions,
      servers: campaign.servers ? JSON.stringify(campaign.servers) : null,
      error_budget:
        campaign.errorBudget === undefined || campaign.errorBudget === null
          ? null
          : JSON.stringify(campaign.errorBudget),
      // Recipients are inserted in the same transaction, before anyone can see the campaign.
      status: campaign.sendAt && campaign.sendAt > new Date() ? "scheduled" : "sending",
      started_at: campaign.sendAt && campaign.sendAt > new Date() ? null : new Date(),
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function setCampaignTotal(db: Db, id: number, total: number): Promise<void> {
  await db.updateTable("lovage.campaigns").set({ total }).where("id", "=", id).execute();
}

export async function getCampaign(db: Db, id: number): Promise<CampaignRow | undefined> {
  const raw = await db.selectFrom("lovage.campaigns").select(COLUMNS).where("id", "=", id).executeTakeFirst();
  return raw ? toRow(raw) : undefined;
}

export async function listCampaigns(
  db: Db,
  options: { limit: number; beforeId?: number },
): Promise<CampaignRow[]> {
  let query = db.selectFrom("lovage.campaigns").select(COLUMNS).orderBy("id", "desc").limit(options.limit);
  if (options.beforeId !== undefined) query = query.where("id", "<", options.beforeId);
  return (await query.execute()).map(toRow);
}

/** Campaigns the dispatcher feeds, the most urgent first. */
export async function sendingCampaigns(db: Db): Promise<{ id: number; priority: number }[]> {
  return db
    .selectFrom("lovage.campaigns")
    .select(["id", "priority"])
    .where("status", "=", "sending")
    .orderBy("priority", "desc")
    .orderBy("id")
    .execute();
}

/** Starts scheduled campaigns whose time has come; returns their ids. */
export async function startDueCampaigns(db: Db): Promise<number[]> {
  const rows = await db
    .updateTable("lovage.campaigns")
    .set({ status: "sending", started_at: new Date() })
    .where("status", "=", "scheduled")
    .where("send_at", "<=", new Date())
    .returning("id")
    .execute();
  return rows.map((row) => row.id);
}

/**
 * Marks sending campaigns with no open recipient left as completed; returns their ids. Reads
 * the counters (migration 0003), so a tick costs the same whatever the campaigns' size.
 */
export async function completeFinishedCampaigns(db: Db): Promise<number[]> {
  const result = await sql<{ id: number }>`
    UPDATE lovage.campaigns c SET status = 'completed', completed_at = now()
    WHERE c.status = 'sending' AND NOT EXISTS (
      SELECT 1 FROM lovage.campaign_counts k
      WHERE k.campaign_id = c.id AND k.status IN ('pending', 'queued', 'sending') AND k.n > 0)
    RETURNING c.id`.execute(db);
  return result.rows.map((row) => row.id);
}

/**
 * Pauses a sending campaign on its own (the error budget, or every server suspended), with the
 * reason; `resumeAt` makes it resume by itself then. Returns false if it was not sending.
 */
export async function pauseCampaignFor(
  db: Db,
  id: number,
  reason: string,
  resumeAt: Date | null,
): Promise<boolean> {
  const result = await db
    .updateTable("lovage.campaigns")
    .set({ status: "paused", status_reason: reason, auto_resume_at: resumeAt })
    .where("id", "=", id)
    .where("status", "=", "sending")
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 0) return false;
  await db
    .updateTable("lovage.recipients")
    .set({ status: "pending", batch_job_id: null, queued_at: null })
    .where("campaign_id", "=", id)
    .where("status", "=", "queued")
    .execute();
  return true;
}

/** Resumes campaigns paused with a time to resume that has come; returns their ids. */
export async function resumeDueCampaigns(db: Db): Promise<number[]> {
  const rows = await db
    .updateTable("lovage.campaigns")
    .set({ status: "sending", status_reason: null, auto_resume_at: null, budget_since: new Date() })
    .where("status", "=", "paused")
    .where("auto_resume_at", "<=", new Date())
    .returning("id")
    .execute();
  return rows.map((row) => row.id);
}

/** When the error budget's window of a campaign starts (its last resume), or null. */
export async function budgetSince(db: Db, id: number): Promise<Date | null> {
  const row = await db
    .selectFrom("lovage.campaigns")
    .select("budget_since")
    .where("id", "=", id)
    .executeTakeFirst();
  return row?.budget_since ?? null;
}

/** Moves a campaign from one of `from` to `to`; returns false if it was in none of them. */
export async function transitionCampaign(
  db: Db,
  id: number,
  from: readonly CampaignStatus[],
  to: CampaignStatus,
  reason: string | null = null,
): Promise<boolean> {
  const result = await db
    .updateTable("lovage.campaigns")
    .set({
      status: to,
      status_reason: reason,
      auto_resume_at: null,
      // A resume starts the error budget's window afresh: the failures that paused it are known.
      ...(to === "sending" ? { budget_since: new Date() } : {}),
      ...(to === "completed" || to === "cancelled" ? { completed_at: new Date() } : { completed_at: null }),
    })
    .where("id", "=", id)
    .where("status", "in", [...from])
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}
