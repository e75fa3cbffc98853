/** The JSON shapes of docs/api.md, built from store rows. */
import { liveServerFigures, type SmtpEventRow } from "../db/smtp.js";
import type { CampaignRow } from "../db/campaigns.js";
import { ewmaRatePerMinute } from "../monitor/rate.js";
import {
  countsByCampaign,
  recentSends,
  type Db,
  type RecipientRow,
  type RecipientStatus,
} from "../db/recipients.js";

export interface CampaignView {
  id: number;
  name: string;
  from: string;
  subject: string;
  text: string | null;
  html: string | null;
  priority: number;
  replyTo: string | null;
  headers: Record<string, string>;
  listUnsubscribe: boolean;
  ignoreManualSuppressions: boolean;
  /** The SMTP servers it must use; null: any. */
  servers: readonly string[] | null;
  /** Its own error budget (false: none); null: the deployment's, LOVAGE_ERROR_BUDGET. */
  errorBudget: { share: number; window: number; minimum: number } | false | null;
  status: string;
  statusReason: string | null;
  sendAt: string | null;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  total: number;
  counts: Record<RecipientStatus, number>;
  ratePerMinute: number;
  etaSeconds: number | null;
}

const iso = (date: Date | null) => (date ? date.toISOString() : null);

export async function presentCampaigns(db: Db, rows: CampaignRow[]): Promise<CampaignView[]> {
  const ids = rows.map((row) => row.id);
  const [counts, sends] = await Promise.all([countsByCampaign(db, ids), recentSends(db, ids)]);
  return rows.map((row) => {
    const c = counts.get(row.id)!;
    const recent = sends.get(row.id);
    const sending = row.status === "sending";
    // Only a sending campaign has a rate now; a paused one has neither a rate nor an ETA.
    const ratePerMinute =
      sending && recent ? Math.round(ewmaRatePerMinute(recent.perSecond, recent.sinceFirstSeconds)) : 0;
    const remaining = c.pending + c.queued + c.sending;
    return {
      id: row.id,
      name: row.name,
      from: row.from,
      subject: row.subject,
      text: row.text,
      html: row.html,
      priority: row.priority,
      replyTo: row.replyTo,
      headers: row.headers,
      listUnsubscribe: row.listUnsubscribe,
      ignoreManualSuppressions: row.ignoreManualSuppressions,
      servers: row.servers ?? null,
      errorBudget: row.errorBudget ?? null,
      status: row.status,
      statusReason: row.statusReason,
      sendAt: iso(row.sendAt),
      createdAt: row.createdAt.toISOString(),
      startedAt: iso(row.startedAt),
      completedAt: iso(row.completedAt),
      total: row.total,
      counts: c,
      ratePerMinute,
      etaSeconds:
        remaining === 0
          ? 0
          : sending && ratePerMinute > 0
            ? Math.ceil((remaining / ratePerMinute) * 60)
            : null,
    };
  });
}

export function presentRecipient(row: RecipientRow) {
  return {
    id: row.id,
    campaignId: row.campaignId,
    line: row.line,
    email: row.address,
    fields: row.fields,
    status: row.status,
    attempts: row.attempts,
    /** Attempts that count against the current budget (those since the last retry). */
    attemptsInBudget: row.attempts - row.attemptBase,
    retrySince: iso(row.retrySince),
    lastResponse: row.lastResponse,
    lastError: row.lastError,
    messageId: row.messageId,
    queuedAt: iso(row.queuedAt),
    lastAttemptAt: iso(row.lastAttemptAt),
    sentAt: iso(row.sentAt),
  };
}

export function presentAttempt(row: {
  attempt: number;
  outcome: string;
  smtp_code: number | null;
  response: string | null;
  error: string | null;
  worker: string | null;
  started_at: Date;
  finished_at: Date;
}) {
  return {
    attempt: row.attempt,
    outcome: row.outcome,
    smtpCode: row.smtp_code,
    response: row.response,
    error: row.error,
    worker: row.worker,
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at.toISOString(),
  };
}

export function presentSmtpEvent(row: SmtpEventRow & { worker?: string | null }) {
  return {
    at: row.at.toISOString(),
    scope: row.scope,
    name: row.name,
    kind: row.kind,
    reply: row.reply,
    rate: row.rate,
    connections: row.connections,
    until: iso(row.until),
    worker: row.worker ?? null,
  };
}

const STATE_ORDER = ["in", "probing", "suspended", "out"];

/**
 * Each server's figures summed over the live workers; its state is the best any worker has
 * (a server one worker can reach is in), each worker's own view alongside.
 */
export async function smtpServers(db: Db, freshMs: number) {
  const rows = await liveServerFigures(db, freshMs);
  const byName = new Map<string, typeof rows>();
  for (const row of rows) byName.set(row.name, [...(byName.get(row.name) ?? []), row]);
  return [...byName.entries()].map(([name, views]) => {
    const best = views.reduce((a, b) =>
      STATE_ORDER.indexOf(a.state) <= STATE_ORDER.indexOf(b.state) ? a : b,
    );
    return {
      name,
      state: best.state,
      until: iso(best.until),
      sent: views.reduce((n, v) => n + v.sent, 0),
      failed: views.reduce((n, v) => n + v.failed, 0),
      deferred: views.reduce((n, v) => n + v.deferred, 0),
      rate: Math.round(views.reduce((n, v) => n + v.rate, 0) * 10) / 10,
      connections: views.reduce((n, v) => n + v.connections, 0),
      workers: views.map((v) => ({
        worker: v.workerId,
        state: v.state,
        until: iso(v.until),
        rate: v.rate,
        limitRate: v.limitRate,
        connections: v.connections,
        reply: v.reply,
      })),
    };
  });
}
