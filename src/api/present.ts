/** The JSON shapes of docs/api.md, built from store rows. */
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
    lastResponse: row.lastResponse,
    lastError: row.lastError,
    messageId: row.messageId,
    queuedAt: iso(row.queuedAt),
    lastAttemptAt: iso(row.lastAttemptAt),
    sentAt: iso(row.sentAt),
  };
}
