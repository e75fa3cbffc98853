/**
 * Bounces and complaints that arrive after a message was handed over: they move the recipient
 * row (`sent` or `unknown` → `bounced` or `complained`), keep the report in its attempts as a
 * row of its own, and put the address on the suppression list. Soft bounces are counted on the
 * row; past the limit they count as a hard one.
 */
import { sql } from "kysely";
import type { Db } from "./recipients.js";
import { addSuppressions } from "./suppressions.js";

export type FeedbackKind = "hard" | "soft" | "complaint";

export interface FeedbackTarget {
  recipientId: number;
  campaignId: number;
  email: string;
}

/** The recipient a report names: by id, by the Message-ID it was sent with, or the last sent to the address. */
export async function findFeedbackTarget(
  db: Db,
  by: { recipientId?: number | undefined; messageId?: string | undefined; email?: string | undefined },
): Promise<FeedbackTarget | undefined> {
  let query = db
    .selectFrom("lovage.recipients")
    .select(["id", "campaign_id", "email"])
    .orderBy("id", "desc")
    .limit(1);
  if (by.recipientId !== undefined) query = query.where("id", "=", by.recipientId);
  else if (by.messageId !== undefined) query = query.where("message_id", "=", by.messageId);
  else if (by.email !== undefined)
    query = query
      .where("email", "=", by.email)
      .where("status", "in", ["sent", "bounced", "complained", "unknown"]);
  else return undefined;
  const row = await query.executeTakeFirst();
  return row && { recipientId: row.id, campaignId: row.campaign_id, email: row.email };
}

/**
 * Applies one report to its recipient; returns what the row became and whether the address was
 * suppressed. `softLimit`: soft bounces of one recipient that make a hard one.
 */
export async function recordFeedback(
  db: Db,
  target: FeedbackTarget,
  report: { kind: FeedbackKind; diagnostic: string; source: string },
  softLimit: number,
): Promise<{ status: string; suppressed: boolean }> {
  const counted = await sql<{ soft_bounces: number; attempts: number }>`
    UPDATE lovage.recipients SET soft_bounces = soft_bounces + ${report.kind === "soft" ? 1 : 0}
    WHERE id = ${target.recipientId} RETURNING soft_bounces, attempts`.execute(db);
  const row = counted.rows[0];
  if (!row) return { status: "gone", suppressed: false };
  const final =
    report.kind === "complaint"
      ? "complained"
      : report.kind === "hard" || row.soft_bounces >= softLimit
        ? "bounced"
        : undefined;
  const outcome =
    report.kind === "complaint" ? "complained" : report.kind === "hard" ? "bounced" : "soft-bounce";
  await sql`
    INSERT INTO lovage.attempts (recipient_id, campaign_id, attempt, outcome, error, worker, started_at)
    VALUES (${target.recipientId}, ${target.campaignId}, ${row.attempts}, ${outcome},
      ${report.diagnostic.slice(0, 2000)}, ${report.source}, now())`.execute(db);
  if (final === undefined) return { status: "sent", suppressed: false };
  // A complaint outranks a bounce; neither moves a row that was never handed over.
  await sql`
    UPDATE lovage.recipients SET status = ${final}, last_error = ${report.diagnostic.slice(0, 2000)}
    WHERE id = ${target.recipientId}
      AND (status IN ('sent', 'unknown') OR (status = 'bounced' AND ${final} = 'complained'))`.execute(db);
  await addSuppressions(db, [
    {
      email: target.email,
      reason: final,
      campaignId: target.campaignId,
      detail:
        final === "bounced" && report.kind === "soft"
          ? `${row.soft_bounces} soft bounces; last: ${report.diagnostic}`.slice(0, 1000)
          : report.diagnostic.slice(0, 1000),
    },
  ]);
  return { status: final, suppressed: true };
}
