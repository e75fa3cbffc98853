/**
 * The email log: one row per recipient of a campaign, and its attempts. Every status change of
 * a recipient happens here, in one guarded UPDATE, so that two processes can never move the
 * same row the same way twice. The state machine is drawn in docs/architecture.md.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "./schema.js";

export const RECIPIENT_STATUSES = Object.freeze({
  pending: "pending",
  queued: "queued",
  sending: "sending",
  sent: "sent",
  failed: "failed",
  skipped: "skipped",
  unknown: "unknown",
  /** Never handed to SMTP: the address is on the suppression list (last_error says why). */
  suppressed: "suppressed",
  /** Sent, then bounced (a hard bounce, or soft ones past the limit); the diagnostic is in last_error. */
  bounced: "bounced",
  /** Sent, then reported as spam by the recipient (a feedback-loop report). */
  complained: "complained",
} as const);
export type RecipientStatus = (typeof RECIPIENT_STATUSES)[keyof typeof RECIPIENT_STATUSES];
export const ALL_RECIPIENT_STATUSES = Object.values(RECIPIENT_STATUSES);
/** Statuses that still have work ahead; a campaign with none of them is complete. */
export const OPEN_RECIPIENT_STATUSES: readonly RecipientStatus[] = ["pending", "queued", "sending"];

export type Db = Kysely<Database> | Transaction<Database>;

export interface NewRecipient {
  line: number;
  /** The dedupe key (lowercased). */
  email: string;
  /** The address to send to, when its case differs from `email`. */
  address?: string;
  fields: Record<string, string>;
}

export interface RecipientRow {
  id: number;
  campaignId: number;
  line: number;
  email: string;
  /** What is sent to: the address as typed. */
  address: string;
  fields: Record<string, string>;
  status: RecipientStatus;
  attempts: number;
  lastResponse: string | null;
  lastError: string | null;
  messageId: string | null;
  queuedAt: Date | null;
  lastAttemptAt: Date | null;
  sentAt: Date | null;
  /** When the current attempt budget's age started (first try, or the first try after a retry). */
  retrySince: Date | null;
  /** Attempts made before the last retry: they stay in the log but not in the budget. */
  attemptBase: number;
}

const ROW_COLUMNS = [
  "id",
  "campaign_id",
  "line",
  "email",
  "address",
  "fields",
  "status",
  "attempts",
  "last_response",
  "last_error",
  "message_id",
  "queued_at",
  "last_attempt_at",
  "sent_at",
  "retry_since",
  "attempt_base",
] as const;

type RawRow = {
  id: number;
  campaign_id: number;
  line: number;
  email: string;
  address: string | null;
  fields: Record<string, string>;
  status: string;
  attempts: number;
  last_response: string | null;
  last_error: string | null;
  message_id: string | null;
  queued_at: Date | null;
  last_attempt_at: Date | null;
  sent_at: Date | null;
  retry_since: Date | null;
  attempt_base: number;
};

function toRow(raw: RawRow): RecipientRow {
  return {
    id: raw.id,
    campaignId: raw.campaign_id,
    line: raw.line,
    email: raw.email,
    address: raw.address ?? raw.email,
    fields: raw.fields,
    status: raw.status as RecipientStatus,
    attempts: raw.attempts,
    lastResponse: raw.last_response,
    lastError: raw.last_error,
    messageId: raw.message_id,
    queuedAt: raw.queued_at,
    lastAttemptAt: raw.last_attempt_at,
    sentAt: raw.sent_at,
    retrySince: raw.retry_since,
    attemptBase: raw.attempt_base,
  };
}

/**
 * Inserts recipients, dropping addresses the campaign already has. Returns how many were
 * inserted and, for each dropped one, its line and the line of the address kept. One statement
 * per call whatever its size (the columns go as arrays), so a million-line upload costs a few
 * hundred round trips.
 */
export async function insertRecipients(
  db: Db,
  campaignId: number,
  recipients: readonly NewRecipient[],
): Promise<{ inserted: number; duplicates: { line: number; email: string; firstLine: number }[] }> {
  if (recipients.length === 0) return { inserted: 0, duplicates: [] };
  const inserted = await sql<{ line: number }>`
    INSERT INTO lovage.recipients (campaign_id, line, email, address, fields)
    SELECT ${campaignId}, line, email, address, fields::jsonb
    FROM unnest(${recipients.map((r) => r.line)}::int[], ${recipients.map((r) => r.email)}::text[],
      ${recipients.map((r) => r.address ?? null)}::text[],
      ${recipients.map((r) => JSON.stringify(r.fields))}::text[]) AS t(line, email, address, fields)
    ON CONFLICT (campaign_id, email) DO NOTHING
    RETURNING line`.execute(db);
  if (inserted.rows.length === recipients.length) return { inserted: inserted.rows.length, duplicates: [] };
  const insertedLines = new Set(inserted.rows.map((row) => row.line));
  const dropped = recipients.filter((r) => !insertedLines.has(r.line));
  const kept = await sql<{ email: string; line: number }>`
    SELECT email, line FROM lovage.recipients
    WHERE campaign_id = ${campaignId} AND email = ANY(${dropped.map((r) => r.email)}::text[])`.execute(db);
  const firstLineOf = new Map(kept.rows.map((row) => [row.email, row.line]));
  return {
    inserted: inserted.rows.length,
    duplicates: dropped.map((r) => ({
      line: r.line,
      email: r.email,
      firstLine: firstLineOf.get(r.email) ?? 0,
    })),
  };
}

/**
 * Takes up to `limit` due pending recipients of one campaign and marks them queued under
 * `batchJobId`; returns their ids. SKIP LOCKED lets several dispatchers run at once without
 * claiming the same row.
 */
export async function claimPendingForBatch(
  db: Db,
  campaignId: number,
  batchJobId: string,
  limit: number,
): Promise<number[]> {
  const result = await sql<{ id: number }>`
    WITH picked AS (
      SELECT id FROM lovage.recipients
      WHERE campaign_id = ${campaignId} AND status = 'pending'
        AND (next_attempt_at IS NULL OR next_attempt_at <= now())
      ORDER BY id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    )
    UPDATE lovage.recipients r
    SET status = 'queued', queued_at = now(), batch_job_id = ${batchJobId}
    FROM picked WHERE r.id = picked.id
    RETURNING r.id`.execute(db);
  return result.rows.map((row) => row.id).sort((a, b) => a - b);
}

/**
 * Refreshes the planner's statistics of the log. After a large upload they are stale (PGlite
 * has no autovacuum at all, PostgreSQL's comes a while later), and with stale ones the planner
 * sorts every pending row of a campaign to claim fifty.
 */
export async function analyzeRecipients(db: Db): Promise<void> {
  await sql`ANALYZE lovage.recipients`.execute(db);
}

/** Puts the rows of a batch the broker does not have back to pending; returns how many. */
export async function releaseBatch(db: Db, batchJobId: string): Promise<number> {
  const result = await db
    .updateTable("lovage.recipients")
    .set({ status: "pending", batch_job_id: null, queued_at: null })
    .where("batch_job_id", "=", batchJobId)
    .where("status", "=", "queued")
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** The addresses of the given rows that are still queued (what a batch reads before it claims). */
export async function queuedEmails(
  db: Db,
  recipientIds: readonly number[],
): Promise<{ id: number; email: string }[]> {
  if (recipientIds.length === 0) return [];
  return db
    .selectFrom("lovage.recipients")
    .select(["id", "email"])
    .where("id", "=", sql<number>`ANY(${[...recipientIds]}::int[])`)
    .where("status", "=", "queued")
    .orderBy("id")
    .execute();
}

/**
 * Puts queued rows back to pending until `retryAt`, spending nothing: they were never claimed
 * (their domain's limit held them before). Returns how many moved.
 */
export async function postponeQueued(
  db: Db,
  recipientIds: readonly number[],
  retryAt: Date,
): Promise<number> {
  if (recipientIds.length === 0) return 0;
  const result = await db
    .updateTable("lovage.recipients")
    .set({ status: "pending", batch_job_id: null, queued_at: null, next_attempt_at: retryAt })
    .where("id", "=", sql<number>`ANY(${[...recipientIds]}::int[])`)
    .where("status", "=", "queued")
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Batches whose rows have been queued for longer than `olderThanMs`, for the lost-batch check. */
export async function staleQueuedBatches(db: Db, olderThanMs: number, limit = 500): Promise<string[]> {
  const result = await sql<{ batch_job_id: string }>`
    SELECT batch_job_id FROM lovage.recipients
    WHERE status = 'queued' AND batch_job_id IS NOT NULL
      AND queued_at < now() - make_interval(secs => ${olderThanMs / 1000})
    GROUP BY batch_job_id
    LIMIT ${limit}`.execute(db);
  return result.rows.map((row) => row.batch_job_id);
}

/** Recipients queued across every campaign, from the counters (no scan of the log). */
export async function countQueued(db: Db): Promise<number> {
  const row = await sql<{ n: number }>`
    SELECT coalesce(sum(n), 0)::int AS n FROM lovage.campaign_counts WHERE status = 'queued'`.execute(db);
  return row.rows[0]?.n ?? 0;
}

/**
 * Moves the given queued recipients of a sending campaign to `sending` with a lease, just
 * before their SMTP transactions, and counts the attempt. Returns the rows it moved, in id
 * order; an id that is not queued any more (sent by another batch, paused, cancelled) is left
 * out: nothing must be sent to it.
 */
export async function claimForSending(
  db: Db,
  recipientIds: readonly number[],
  leaseMs: number,
): Promise<RecipientRow[]> {
  if (recipientIds.length === 0) return [];
  // The suppression list is read in the same statement as the claim, so no worker can send to
  // an address suppressed before it: a suppressed row ends `suppressed` with the reason.
  const result = await sql<RawRow>`
    WITH claimable AS (
      SELECT r.id, (
        SELECT s.reason FROM lovage.suppressions s
        WHERE s.email = r.email AND NOT (s.reason = 'manual' AND c.ignore_manual_suppressions)
      ) AS suppressed_for
      FROM lovage.recipients r JOIN lovage.campaigns c ON c.id = r.campaign_id
      WHERE r.id = ANY(${[...recipientIds]}::int[]) AND r.status = 'queued' AND c.status = 'sending'
      ORDER BY r.id
      FOR UPDATE OF r
    ), moved AS (
      UPDATE lovage.recipients r SET
        status = CASE WHEN k.suppressed_for IS NULL THEN 'sending' ELSE 'suppressed' END,
        attempts = CASE WHEN k.suppressed_for IS NULL THEN r.attempts + 1 ELSE r.attempts END,
        last_attempt_at = CASE WHEN k.suppressed_for IS NULL THEN now() ELSE r.last_attempt_at END,
        lease_expires_at = CASE WHEN k.suppressed_for IS NULL
          THEN now() + make_interval(secs => ${leaseMs / 1000}) END,
        last_error = CASE WHEN k.suppressed_for IS NULL THEN r.last_error
          ELSE 'suppressed: the address is on the suppression list (' || k.suppressed_for || ')' END
      FROM claimable k WHERE r.id = k.id
      RETURNING ${sql.join(ROW_COLUMNS.map((column) => sql.ref(`r.${column}`)))}
    )
    SELECT * FROM moved WHERE status = 'sending'`.execute(db);
  return result.rows.map(toRow).sort((a, b) => a.id - b.id);
}

export type Outcome =
  | { kind: "sent"; messageId: string; response: string }
  | { kind: "retry"; code: number | null; error: string; retryAt: Date }
  | { kind: "failed"; code: number | null; error: string }
  | { kind: "unknown"; code: number | null; error: string }
  /**
   * Not tried: no SMTP transaction for this recipient began (every server out, a limit or a
   * suspension held it, the connection was refused). Back to pending at `retryAt`, and the
   * attempt the claim counted is given back; no attempt row is written.
   */
  | { kind: "deferred"; error: string; retryAt: Date };

export interface AttemptRecord {
  recipientId: number;
  campaignId: number;
  attempt: number;
  startedAt: Date;
  outcome: Outcome;
  /** The SMTP server it went to, by its name (the figures count per server). */
  server: string;
}

/**
 * Records the outcomes of a chunk of SMTP attempts and their attempt rows in one statement
 * (atomic without a transaction, and one round trip per chunk). Only a row its attempt holds
 * (`sending`, or `unknown` if its lease ran out meanwhile) is changed; the attempt is always
 * kept.
 */
export async function recordOutcomes(
  db: Db,
  records: readonly AttemptRecord[],
  worker: string,
): Promise<void> {
  if (records.length === 0) return;
  const column = <T>(pick: (record: AttemptRecord) => T) => records.map(pick);
  const code = (o: Outcome) => (o.kind === "sent" ? 250 : o.kind === "deferred" ? null : o.code);
  const later = (o: Outcome) =>
    o.kind === "retry" || o.kind === "deferred" ? o.retryAt.toISOString() : null;
  await sql`
    WITH input AS (
      SELECT * FROM unnest(
        ${column((r) => r.recipientId)}::int[], ${column((r) => r.campaignId)}::int[],
        ${column((r) => r.attempt)}::int[], ${column((r) => r.outcome.kind)}::text[],
        ${column((r) => code(r.outcome))}::int[],
        ${column((r) => (r.outcome.kind === "sent" ? r.outcome.response : null))}::text[],
        ${column((r) => (r.outcome.kind === "sent" ? null : r.outcome.error))}::text[],
        ${column((r) => (r.outcome.kind === "sent" ? r.outcome.messageId : null))}::text[],
        ${column((r) => later(r.outcome))}::timestamptz[],
        ${column((r) => r.startedAt.toISOString())}::timestamptz[],
        ${column((r) => r.server)}::text[]
      ) AS t(recipient_id, campaign_id, attempt, kind, smtp_code, response, error, message_id, retry_at, started_at, server)
    ), changed AS (
      UPDATE lovage.recipients r SET
        status = CASE WHEN i.kind IN ('retry', 'deferred') THEN 'pending' ELSE i.kind END,
        attempts = CASE WHEN i.kind = 'deferred' THEN greatest(r.attempts - 1, 0) ELSE r.attempts END,
        retry_since = coalesce(r.retry_since, i.started_at),
        sent_at = CASE WHEN i.kind = 'sent' THEN now() ELSE r.sent_at END,
        message_id = CASE WHEN i.kind = 'sent' THEN i.message_id ELSE r.message_id END,
        last_response = i.response,
        last_error = i.error,
        batch_job_id = CASE WHEN i.kind IN ('retry', 'deferred') THEN NULL ELSE r.batch_job_id END,
        next_attempt_at = CASE WHEN i.kind IN ('retry', 'deferred') THEN i.retry_at ELSE r.next_attempt_at END,
        lease_expires_at = NULL
      FROM input i
      WHERE r.id = i.recipient_id AND r.status IN ('sending', 'unknown')
    )
    INSERT INTO lovage.attempts
      (recipient_id, campaign_id, attempt, outcome, smtp_code, response, error, worker, started_at, server)
    SELECT recipient_id, campaign_id, attempt, kind, smtp_code, response, error, ${worker}, started_at, server
    FROM input WHERE kind <> 'deferred'`.execute(db);
}

/**
 * A user's retry: the recipients in `from` go back to pending with a fresh attempt budget (its
 * age starts again at their next try; the attempts made so far stay in the log and are no
 * longer counted against it). Returns how many moved.
 */
export async function retryRecipients(
  db: Db,
  campaignId: number,
  from: readonly RecipientStatus[],
): Promise<number> {
  const result = await sql`
    UPDATE lovage.recipients SET status = 'pending', batch_job_id = NULL, queued_at = NULL,
      next_attempt_at = NULL, retry_since = NULL, attempt_base = attempts
    WHERE campaign_id = ${campaignId} AND status = ANY(${[...from]}::text[])`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

export async function getRecipient(
  db: Db,
  campaignId: number,
  id: number,
): Promise<RecipientRow | undefined> {
  const raw = await db
    .selectFrom("lovage.recipients")
    .select(ROW_COLUMNS)
    .where("id", "=", id)
    .where("campaign_id", "=", campaignId)
    .executeTakeFirst();
  return raw ? toRow(raw) : undefined;
}

export interface AttemptWindow {
  /** Attempts in the window (the most recent `size` since `since`). */
  total: number;
  /** Of them, failed with a 5xx. */
  permanent: number;
  /** The most common reply among the permanent failures, with its count. */
  topReply: { text: string; count: number } | undefined;
}

/** The last `size` attempts of a campaign (since `since`, when given), for its error budget. */
export async function recentAttemptWindow(
  db: Db,
  campaignId: number,
  size: number,
  since: Date | null,
): Promise<AttemptWindow> {
  const rows = await sql<{ total: number; permanent: number; reply: string | null; n: number | null }>`
    WITH recent AS (
      SELECT outcome, smtp_code, error FROM lovage.attempts
      WHERE campaign_id = ${campaignId}
        AND (${since?.toISOString() ?? null}::timestamptz IS NULL OR finished_at > ${since?.toISOString() ?? null}::timestamptz)
      ORDER BY finished_at DESC LIMIT ${size}
    ), failed AS (
      SELECT error FROM recent WHERE outcome = 'failed' AND smtp_code >= 500
    ), top AS (
      SELECT error AS reply, count(*)::int AS n FROM failed GROUP BY error ORDER BY n DESC LIMIT 1
    )
    SELECT (SELECT count(*)::int FROM recent) AS total, (SELECT count(*)::int FROM failed) AS permanent,
      top.reply, top.n
    FROM (SELECT 1) one LEFT JOIN top ON true`.execute(db);
  const row = rows.rows[0]!;
  return {
    total: row.total,
    permanent: row.permanent,
    topReply: row.reply !== null && row.n !== null ? { text: row.reply, count: row.n } : undefined,
  };
}

/**
 * Rows left `sending` past their lease belong to a worker that died mid-transaction: the
 * message may or may not have been delivered, so they become `unknown`, never re-sent by
 * themselves. `all` expires every `sending` row (embedded start-up: no other process exists).
 */
export async function expireLeases(db: Db, options: { all?: boolean } = {}): Promise<number> {
  let query = db
    .updateTable("lovage.recipients")
    .set({
      status: "unknown",
      last_error:
        "the worker stopped during the SMTP transaction; not re-sent automatically (retry unknown to resend)",
      lease_expires_at: null,
    })
    .where("status", "=", "sending");
  if (!options.all) query = query.where("lease_expires_at", "<", new Date());
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Counts by status per campaign, from the counters the triggers keep (migration 0003). */
export async function countsByCampaign(
  db: Db,
  campaignIds: readonly number[],
): Promise<Map<number, Record<RecipientStatus, number>>> {
  const counts = new Map<number, Record<RecipientStatus, number>>();
  for (const id of campaignIds) counts.set(id, emptyCounts());
  if (campaignIds.length === 0) return counts;
  const rows = await sql<{ campaign_id: number; status: string; n: number }>`
    SELECT campaign_id, status, n FROM lovage.campaign_counts
    WHERE campaign_id = ANY(${[...campaignIds]}::int[])`.execute(db);
  for (const row of rows.rows) {
    const forCampaign = counts.get(row.campaign_id);
    if (forCampaign && row.status in forCampaign) forCampaign[row.status as RecipientStatus] = row.n;
  }
  return counts;
}

/** Counts by status across every campaign, from the counters. */
export async function countsByStatus(db: Db): Promise<Record<RecipientStatus, number>> {
  const rows = await sql<{ status: string; n: number }>`
    SELECT status, sum(n)::int AS n FROM lovage.campaign_counts GROUP BY status`.execute(db);
  const counts = emptyCounts();
  for (const row of rows.rows) if (row.status in counts) counts[row.status as RecipientStatus] = row.n;
  return counts;
}

export function emptyCounts(): Record<RecipientStatus, number> {
  return {
    pending: 0,
    queued: 0,
    sending: 0,
    sent: 0,
    failed: 0,
    skipped: 0,
    unknown: 0,
    suppressed: 0,
    bounced: 0,
    complained: 0,
  };
}

/**
 * Each campaign's recent sends (recipients that reached sent, failed or unknown), per whole second
 * back from now over the last `horizonSeconds`, and how long ago the first of them was: what an
 * exponentially weighted rate needs (src/monitor/rate.ts). Read from the attempts index: the
 * rows read are bounded by the rate, not by the campaign's size.
 */
export async function recentSends(
  db: Db,
  campaignIds: readonly number[],
  horizonSeconds = 60,
): Promise<Map<number, { perSecond: Map<number, number>; sinceFirstSeconds: number }>> {
  const result = new Map<number, { perSecond: Map<number, number>; sinceFirstSeconds: number }>();
  if (campaignIds.length === 0) return result;
  const rows = await sql<{ campaign_id: number; age: number; n: number; first_s: number }>`
    SELECT campaign_id, floor(extract(epoch FROM now() - finished_at))::int AS age, count(*)::int AS n,
      max(extract(epoch FROM now() - finished_at))::float8 AS first_s
    FROM lovage.attempts
    WHERE campaign_id = ANY(${[...campaignIds]}::int[]) AND outcome IN ('sent', 'failed', 'unknown')
      AND finished_at > now() - make_interval(secs => ${horizonSeconds})
    GROUP BY 1, 2`.execute(db);
  for (const row of rows.rows) {
    const entry = result.get(row.campaign_id) ?? {
      perSecond: new Map<number, number>(),
      sinceFirstSeconds: 0,
    };
    entry.perSecond.set(Math.max(0, row.age), row.n);
    entry.sinceFirstSeconds = Math.max(entry.sinceFirstSeconds, row.first_s);
    result.set(row.campaign_id, entry);
  }
  return result;
}

export interface RecipientQuery {
  campaignId?: number;
  status?: RecipientStatus;
  /** Matches part of the address. */
  q?: string;
  /** The last id of the previous page. */
  afterId?: number;
  limit: number;
}

/** A page of the log in id order, filtered; ids make the cursor stable while rows change. */
export async function listRecipients(db: Db, query: RecipientQuery): Promise<RecipientRow[]> {
  let select = db.selectFrom("lovage.recipients").select(ROW_COLUMNS).orderBy("id").limit(query.limit);
  if (query.campaignId !== undefined) select = select.where("campaign_id", "=", query.campaignId);
  if (query.status) select = select.where("status", "=", query.status);
  if (query.q)
    select = select.where("email", "like", `%${query.q.toLowerCase().replace(/[\\%_]/g, "\\$&")}%`);
  if (query.afterId !== undefined) select = select.where("id", ">", query.afterId);
  return (await select.execute()).map(toRow);
}

export async function listAttempts(db: Db, recipientId: number) {
  return db
    .selectFrom("lovage.attempts")
    .selectAll()
    .where("recipient_id", "=", recipientId)
    .orderBy("id")
    .execute();
}

/** Campaign-wide moves a user asks for (pause, cancel, retry); returns how many rows moved. */
export async function moveRecipients(
  db: Db,
  campaignId: number,
  from: readonly RecipientStatus[],
  to: RecipientStatus,
): Promise<number> {
  const result = await db
    .updateTable("lovage.recipients")
    .set(
      to === "pending"
        ? { status: to, batch_job_id: null, queued_at: null, next_attempt_at: null }
        : { status: to, batch_job_id: null },
    )
    .where("campaign_id", "=", campaignId)
    .where("status", "in", [...from])
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
