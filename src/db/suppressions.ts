/**
 * The suppression list: addresses that must not be mailed, with why (unsubscribed, bounced,
 * complained, manual), the campaign that caused it and when. The claim (recipients.ts) reads
 * it; this file writes it. An address is one row: a stronger reason replaces a weaker one
 * (complained > bounced > unsubscribed > manual), never the reverse, so that an import of a
 * "manual" list cannot turn a complaint into something a campaign may ignore.
 */
import { sql } from "kysely";
import type { Db } from "./recipients.js";

export const SUPPRESSION_REASONS = Object.freeze({
  unsubscribed: "unsubscribed",
  bounced: "bounced",
  complained: "complained",
  manual: "manual",
} as const);
export type SuppressionReason = (typeof SUPPRESSION_REASONS)[keyof typeof SUPPRESSION_REASONS];
export const ALL_SUPPRESSION_REASONS = Object.values(SUPPRESSION_REASONS);

export interface NewSuppression {
  /** Lowercased, as recipients.email. */
  email: string;
  reason: SuppressionReason;
  campaignId?: number | null | undefined;
  detail?: string | null | undefined;
}

export interface SuppressionRow {
  email: string;
  reason: SuppressionReason;
  campaignId: number | null;
  detail: string | null;
  createdAt: Date;
}

// The order of strength: array_position gives 1 for manual … 4 for complained.
const STRENGTH = sql`ARRAY['manual', 'unsubscribed', 'bounced', 'complained']`;

/** Adds or strengthens entries; returns how many rows were written (new or strengthened). */
export async function addSuppressions(db: Db, entries: readonly NewSuppression[]): Promise<number> {
  if (entries.length === 0) return 0;
  const result = await sql`
    INSERT INTO lovage.suppressions AS s (email, reason, campaign_id, detail)
    SELECT DISTINCT ON (email) email, reason, campaign_id, detail
    FROM unnest(${entries.map((e) => e.email)}::text[], ${entries.map((e) => e.reason)}::text[],
      ${entries.map((e) => e.campaignId ?? null)}::int[], ${entries.map((e) => e.detail ?? null)}::text[])
      AS t(email, reason, campaign_id, detail)
    ORDER BY email, array_position(${STRENGTH}, reason) DESC
    ON CONFLICT (email) DO UPDATE SET
      reason = EXCLUDED.reason, campaign_id = EXCLUDED.campaign_id, detail = EXCLUDED.detail,
      created_at = now()
    WHERE array_position(${STRENGTH}, EXCLUDED.reason) > array_position(${STRENGTH}, s.reason)`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Suppresses the address of a recipient row (`unsubscribed` from its link, `bounced` or
 * `complained` from a report), with that campaign; returns the address, or undefined when there
 * is no such recipient.
 */
/** The lowercased address and the campaign of a recipient row. */
export async function recipientAddress(
  db: Db,
  recipientId: number,
): Promise<{ email: string; campaignId: number } | undefined> {
  const row = await db
    .selectFrom("lovage.recipients")
    .select(["email", "campaign_id"])
    .where("id", "=", recipientId)
    .executeTakeFirst();
  return row && { email: row.email, campaignId: row.campaign_id };
}

export async function suppressRecipient(
  db: Db,
  recipientId: number,
  reason: SuppressionReason,
  detail: string | null = null,
): Promise<{ email: string; campaignId: number } | undefined> {
  const row = await recipientAddress(db, recipientId);
  if (!row) return undefined;
  await addSuppressions(db, [{ email: row.email, reason, campaignId: row.campaignId, detail }]);
  return row;
}

export async function removeSuppression(db: Db, email: string): Promise<boolean> {
  const result = await db.deleteFrom("lovage.suppressions").where("email", "=", email).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export interface SuppressionQuery {
  reason?: SuppressionReason | undefined;
  /** Matches part of the address. */
  q?: string | undefined;
  /** The last address of the previous page. */
  afterEmail?: string | undefined;
  limit: number;
}

/** A page of the list in address order. */
export async function listSuppressions(db: Db, query: SuppressionQuery): Promise<SuppressionRow[]> {
  let select = db
    .selectFrom("lovage.suppressions")
    .select(["email", "reason", "campaign_id", "detail", "created_at"])
    .orderBy("email")
    .limit(query.limit);
  if (query.reason) select = select.where("reason", "=", query.reason);
  if (query.q)
    select = select.where("email", "like", `%${query.q.toLowerCase().replace(/[\\%_]/g, "\\$&")}%`);
  if (query.afterEmail !== undefined) select = select.where("email", ">", query.afterEmail);
  return (await select.execute()).map((raw) => ({
    email: raw.email,
    reason: raw.reason as SuppressionReason,
    campaignId: raw.campaign_id,
    detail: raw.detail,
    createdAt: raw.created_at,
  }));
}

/** Entries by reason, over the whole list or for one campaign (those it caused). */
export async function countSuppressions(
  db: Db,
  campaignId?: number,
): Promise<Record<SuppressionReason, number>> {
  let select = db
    .selectFrom("lovage.suppressions")
    .select(["reason", sql<number>`count(*)::int`.as("n")])
    .groupBy("reason");
  if (campaignId !== undefined) select = select.where("campaign_id", "=", campaignId);
  const counts: Record<SuppressionReason, number> = { unsubscribed: 0, bounced: 0, complained: 0, manual: 0 };
  for (const row of await select.execute()) counts[row.reason as SuppressionReason] = row.n;
  return counts;
}
