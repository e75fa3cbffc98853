// One campaign: live counts, rate and ETA, the pause/resume/cancel/retry controls, the
// import report right after creation, and the per-email log with filter, search, paging and
// CSV export.
import { useCallback, useEffect, useRef, useState } from "react";
import {
  type Campaign,
  type CampaignAction,
  campaignAction,
  type CreateCampaignResult,
  downloadRecipientsCsv,
  getCampaign,
  getRecipientAttempts,
  getSmtpServers,
  type SmtpServer,
  type Attempt,
  listRecipients,
  RECIPIENT_STATUSES,
  type Recipient,
  type RecipientStatus,
  retryCampaign,
  type SmtpEvent,
} from "./api";
import { formatDuration, formatNumber, formatRate, formatTime } from "./format";
import { useCampaign } from "./live-campaigns";
import { href } from "./route";
import { doneCount, Empty, ErrorBox, ProgressBar, RejectedTable, StatusBadge } from "./widgets";

const PAGE_SIZE = 50;
/** While the campaign moves, the first page of the log is re-read at most this often. */
const LOG_REFRESH_MS = 1000;

interface Props {
  id: number;
  importResult: CreateCampaignResult | null;
  onDismissImport: () => void;
}

export function CampaignDetailView({ id, importResult, onDismissImport }: Props) {
  const live = useCampaign(id);
  const campaign = live.data ?? importResult?.campaign ?? null;

  if (!campaign) {
    return (
      <section className="page">
        <Breadcrumb id={id} />
        <ErrorBox message={live.error} />
        {!live.error && <Empty>Loading…</Empty>}
      </section>
    );
  }

  return (
    <section className="page" data-testid="campaign-detail" data-campaign-id={id}>
      <Breadcrumb id={id} />
      <div className="page-head">
        <div>
          <h1 className="title-with-badge">
            <span data-testid="campaign-title">{campaign.name || campaign.subject}</span>
            <StatusBadge status={campaign.status} testId="campaign-status" />
          </h1>
          <div className="muted">
            From <span className="strong-ish">{campaign.from}</span> · Subject “{campaign.subject}” · created{" "}
            {formatTime(campaign.createdAt)}
            <span data-testid="campaign-send-at">
              {" "}
              · sends {campaign.sendAt ? formatTime(campaign.sendAt) : "at once"}
            </span>
            <span data-testid="campaign-priority"> · priority {campaign.priority}</span>
            {campaign.servers && (
              <span data-testid="campaign-servers"> · through {campaign.servers.join(", ")}</span>
            )}
            {campaign.errorBudget === false && (
              <span data-testid="campaign-error-budget"> · no error budget</span>
            )}
            {campaign.errorBudget && (
              <span data-testid="campaign-error-budget">
                {" "}
                · pauses above {campaign.errorBudget.share * 100}% of the last {campaign.errorBudget.window}{" "}
                attempts (after {campaign.errorBudget.minimum})
              </span>
            )}
            {campaign.completedAt && <> · finished {formatTime(campaign.completedAt)}</>}
          </div>
        </div>
        <Controls campaign={campaign} onChange={live.set} />
      </div>
      {campaign.statusReason && (
        <div className="alert alert-warn" data-testid="campaign-status-reason">
          {campaign.statusReason}
        </div>
      )}
      <ErrorBox message={live.error} />
      {importResult && <ImportReport result={importResult} onDismiss={onDismissImport} />}
      <Stats campaign={campaign} />
      <PaceEvents campaign={campaign} />
      <EmailLog campaign={campaign} />
    </section>
  );
}

/** The attempts count; a click shows the recipient's attempts log (each SMTP transaction tried). */
function AttemptsCell({ campaignId, recipient }: { campaignId: number; recipient: Recipient }) {
  const [log, setLog] = useState<Attempt[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (recipient.attempts === 0) return <>0</>;
  const toggle = () => {
    if (log) return setLog(null);
    getRecipientAttempts(campaignId, recipient.id).then(setLog, (err: Error) => setError(err.message));
  };
  return (
    <>
      <button className="btn btn-link" onClick={toggle} data-testid="recipient-attempts">
        {recipient.attempts}
      </button>
      {error && <div className="text-bad">{error}</div>}
      {log && (
        <ol className="attempts-log" data-testid="attempts-log">
          {log.map((a) => (
            <li key={a.attempt}>
              #{a.attempt} {formatTime(a.startedAt)} {a.outcome}
              {a.smtpCode !== null ? ` ${a.smtpCode}` : ""} {a.error ?? a.response ?? ""}
            </li>
          ))}
        </ol>
      )}
    </>
  );
}

/** Servers taken out or back, rates lowered, suspensions while it sent; re-read every 5 s while it moves. */
function PaceEvents({ campaign }: { campaign: Campaign }) {
  const [events, setEvents] = useState<SmtpEvent[]>([]);
  const [servers, setServers] = useState<SmtpServer[]>([]);
  const moving = campaign.status === "sending" || campaign.status === "paused";
  useEffect(() => {
    let stopped = false;
    const read = () =>
      Promise.all([getCampaign(campaign.id), moving ? getSmtpServers() : Promise.resolve([])]).then(
        ([full, now]) => {
          if (stopped) return;
          setEvents(full.smtpEvents ?? []);
          setServers(now);
        },
        () => undefined,
      );
    void read();
    const timer = moving ? setInterval(() => void read(), 5000) : undefined;
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [campaign.id, moving]);
  if (events.length === 0 && servers.length === 0) return null;
  return (
    <div className="card" data-testid="pace-events">
      <h2>SMTP pace</h2>
      {servers.length > 0 && (
        <table className="table" data-testid="smtp-servers">
          <thead>
            <tr>
              <th>Server</th>
              <th>State</th>
              <th className="num">Sent</th>
              <th className="num">Failed</th>
              <th className="num">Deferred</th>
              <th className="num">Rate</th>
              <th className="num">Connections</th>
            </tr>
          </thead>
          <tbody>
            {servers.map((server) => (
              <tr key={server.name}>
                <td>{server.name}</td>
                <td>
                  {server.state}
                  {server.until ? ` until ${formatTime(server.until)}` : ""}
                </td>
                <td className="num">{formatNumber(server.sent)}</td>
                <td className="num">{formatNumber(server.failed)}</td>
                <td className="num">{formatNumber(server.deferred)}</td>
                <td className="num">{server.rate}/s</td>
                <td className="num">{server.connections}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {events.length > 0 && (
        <table className="table">
          <thead>
            <tr>
              <th>When</th>
              <th>Server</th>
              <th>Event</th>
              <th>Rate</th>
              <th>Until</th>
              <th>Reply</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e, i) => (
              <tr key={i}>
                <td>{formatTime(e.at)}</td>
                <td>{e.name}</td>
                <td>{e.kind}</td>
                <td>{e.rate === null ? "" : `${e.rate}/s`}</td>
                <td>{e.until ? formatTime(e.until) : ""}</td>
                <td className="muted">{e.reply ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Breadcrumb({ id }: { id: number }) {
  return (
    <div className="breadcrumb">
      <a href={href({ view: "campaigns" })}>Campaigns</a> <span aria-hidden="true">›</span> #{id}
    </div>
  );
}

function ImportReport({ result, onDismiss }: { result: CreateCampaignResult; onDismiss: () => void }) {
  const rejected = Math.max(result.rejectedCount ?? 0, result.rejected.length);
  return (
    <div className="card import-report" data-testid="import-report">
      <div className="import-report-head">
        <div>
          <strong className="text-good" data-testid="accepted-count">
            Accepted {formatNumber(result.accepted)}
          </strong>{" "}
          {result.accepted === 1 ? "recipient" : "recipients"}
          {rejected > 0 ? (
            <>
              , <strong className="text-bad">rejected {formatNumber(rejected)}</strong>{" "}
              {rejected === 1 ? "line" : "lines"}
            </>
          ) : (
            ", no line rejected"
          )}
          .
        </div>
        <button className="btn btn-ghost btn-small" onClick={onDismiss} data-testid="import-dismiss">
          Dismiss
        </button>
      </div>
      <RejectedTable rejected={result.rejected} total={rejected} />
    </div>
  );
}

function Controls({ campaign, onChange }: { campaign: Campaign; onChange: (c: Campaign) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const s = campaign.status;
  const finished = s === "completed" || s === "cancelled";

  const run = async (action: () => Promise<Campaign>) => {
    setBusy(true);
    setError(null);
    try {
      onChange(await action());
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const act = (a: CampaignAction) => () => void run(() => campaignAction(campaign.id, a));
  const retry = (statuses: RecipientStatus[]) => () => void run(() => retryCampaign(campaign.id, statuses));

  return (
    <div className="controls">
      <div className="btn-row">
        {(s === "sending" || s === "scheduled") && (
          <button className="btn" disabled={busy} onClick={act("pause")} data-testid="action-pause">
            Pause
          </button>
        )}
        {s === "paused" && (
          <button
            className="btn btn-primary"
            disabled={busy}
            onClick={act("resume")}
            data-testid="action-resume"
          >
            Resume
          </button>
        )}
        {campaign.counts.failed > 0 && (
          <button
            className="btn"
            disabled={busy}
            onClick={retry(["failed"])}
            data-testid="action-retry-failed"
          >
            Retry failed ({formatNumber(campaign.counts.failed)})
          </button>
        )}
        {campaign.counts.unknown > 0 && (
          <button
            className="btn"
            disabled={busy}
            onClick={retry(["unknown"])}
            title="These may or may not have been delivered: retrying can send them twice."
            data-testid="action-retry-unknown"
          >
            Retry unknown ({formatNumber(campaign.counts.unknown)})
          </button>
        )}
        {!finished && (
          <button
            className="btn btn-danger"
            disabled={busy}
            onClick={() => {
              if (window.confirm("Cancel this campaign? Recipients not yet sent will not be sent.")) {
                act("cancel")();
              }
            }}
            data-testid="action-cancel"
          >
            Cancel
          </button>
        )}
      </div>
      <ErrorBox message={error} testId="action-error" />
    </div>
  );
}

function Stats({ campaign: c }: { campaign: Campaign }) {
  const inFlight = c.counts.pending + c.counts.queued + c.counts.sending;
  const tiles: { label: string; value: string; testId: string; tone?: string }[] = [
    { label: "Total", value: formatNumber(c.total), testId: "count-total" },
    { label: "Sent", value: formatNumber(c.counts.sent), testId: "count-sent", tone: "good" },
    {
      label: "Failed",
      value: formatNumber(c.counts.failed),
      testId: "count-failed",
      tone: c.counts.failed ? "bad" : undefined,
    },
    { label: "Waiting", value: formatNumber(inFlight), testId: "count-waiting" },
    { label: "Skipped", value: formatNumber(c.counts.skipped), testId: "count-skipped" },
    {
      label: "Unknown",
      value: formatNumber(c.counts.unknown),
      testId: "count-unknown",
      tone: c.counts.unknown ? "warn" : undefined,
    },
    {
      label: "Suppressed",
      value: formatNumber(c.counts.suppressed ?? 0),
      testId: "count-suppressed",
    },
    {
      label: "Bounced",
      value: formatNumber(c.counts.bounced ?? 0),
      testId: "count-bounced",
      tone: c.counts.bounced ? "warn" : undefined,
    },
    {
      label: "Complained",
      value: formatNumber(c.counts.complained ?? 0),
      testId: "count-complained",
      tone: c.counts.complained ? "bad" : undefined,
    },
    { label: "Rate", value: formatRate(c.ratePerMinute), testId: "campaign-rate" },
    {
      label: "ETA",
      value: c.status === "sending" && doneCount(c) < c.total ? formatDuration(c.etaSeconds) : "—",
      testId: "campaign-eta",
    },
  ];
  return (
    <div className="card stats-card">
      <ProgressBar campaign={c} testId="campaign-progress" />
      <div className="stats">
        {tiles.map((t) => (
          <div className="stat" key={t.testId}>
            <div className="stat-label">{t.label}</div>
            <div className={t.tone ? `stat-value text-${t.tone}` : "stat-value"} data-testid={t.testId}>
              {t.value}
            </div>
          </div>
        ))}
      </div>
      <div className="legend">
        <span className="legend-item">
          <i className="seg-sent" /> sent
        </span>
        <span className="legend-item">
          <i className="seg-failed" /> failed
        </span>
        <span className="legend-item">
          <i className="seg-unknown" /> unknown
        </span>
        <span className="legend-item">
          <i className="seg-skipped" /> skipped
        </span>
      </div>
    </div>
  );
}

interface LogState {
  rows: Recipient[];
  nextCursor: string | null;
  pages: number;
  loading: boolean;
  error: string | null;
}

function EmailLog({ campaign }: { campaign: Campaign }) {
  const [status, setStatus] = useState<RecipientStatus | "">("");
  const [search, setSearch] = useState("");
  const [q, setQ] = useState("");
  const [log, setLog] = useState<LogState>({
    rows: [],
    nextCursor: null,
    pages: 0,
    loading: true,
    error: null,
  });
  const [exportError, setExportError] = useState<string | null>(null);
  const [exporting, setExporting] = useState(false);
  // Answers to superseded requests (an older filter) are dropped.
  const seq = useRef(0);
  const pagesRef = useRef(0);
  pagesRef.current = log.pages;

  const loadFirst = useCallback(async () => {
    const mine = ++seq.current;
    setLog((l) => ({ ...l, loading: true }));
    try {
      const page = await listRecipients(campaign.id, { status, q, limit: PAGE_SIZE });
      if (mine !== seq.current) return;
      setLog({ rows: page.recipients, nextCursor: page.nextCursor, pages: 1, loading: false, error: null });
    } catch (err) {
      if (mine !== seq.current) return;
      setLog((l) => ({ ...l, loading: false, error: (err as Error).message }));
    }
  }, [campaign.id, status, q]);

  const loadMore = async () => {
    if (!log.nextCursor) return;
    const mine = ++seq.current;
    setLog((l) => ({ ...l, loading: true }));
    try {
      const page = await listRecipients(campaign.id, { status, q, cursor: log.nextCursor, limit: PAGE_SIZE });
      if (mine !== seq.current) return;
      setLog((l) => ({
        rows: [...l.rows, ...page.recipients],
        nextCursor: page.nextCursor,
        pages: l.pages + 1,
        loading: false,
        error: null,
      }));
    } catch (err) {
      if (mine !== seq.current) return;
      setLog((l) => ({ ...l, loading: false, error: (err as Error).message }));
    }
  };

  // Debounce typing in the search box.
  useEffect(() => {
    const t = setTimeout(() => setQ(search.trim()), 300);
    return () => clearTimeout(t);
  }, [search]);

  useEffect(() => {
    void loadFirst();
  }, [loadFirst]);

  // Follow the campaign: when its counts move, re-read the first page, at most once per
  // LOG_REFRESH_MS and always once after the last change. Not once the user paged further,
  // which would throw away the rows they loaded.
  const progressKey = `${campaign.status}:${Object.values(campaign.counts).join(",")}`;
  const firstKey = useRef(progressKey);
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  const loadFirstRef = useRef(loadFirst);
  loadFirstRef.current = loadFirst;
  useEffect(() => {
    if (progressKey === firstKey.current) return;
    firstKey.current = progressKey;
    if (pending.current || pagesRef.current > 1) return;
    pending.current = setTimeout(() => {
      pending.current = null;
      void loadFirstRef.current();
    }, LOG_REFRESH_MS);
  }, [progressKey]);
  useEffect(
    () => () => {
      if (pending.current) clearTimeout(pending.current);
    },
    [],
  );

  const exportCsv = async () => {
    setExporting(true);
    setExportError(null);
    try {
      await downloadRecipientsCsv(campaign.id);
    } catch (err) {
      setExportError((err as Error).message);
    } finally {
      setExporting(false);
    }
  };

  return (
    <div className="card log-card">
      <div className="log-head">
        <h2>Email log</h2>
        <div className="toolbar">
          <select
            value={status}
            onChange={(e) => setStatus(e.target.value as RecipientStatus | "")}
            aria-label="Filter by status"
            data-testid="log-status-filter"
          >
            <option value="">All statuses</option>
            {RECIPIENT_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s} ({formatNumber(campaign.counts[s] ?? 0)})
              </option>
            ))}
          </select>
          <input
            type="search"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="Search address or name"
            aria-label="Search the email log"
            data-testid="log-search"
          />
          <button className="btn" onClick={() => void loadFirst()} data-testid="log-refresh">
            Refresh
          </button>
          <button
            className="btn"
            onClick={() => void exportCsv()}
            disabled={exporting}
            data-testid="export-csv"
            title="Download every recipient of this campaign as CSV"
          >
            {exporting ? "Exporting…" : "Export CSV"}
          </button>
        </div>
      </div>
      <ErrorBox message={log.error ?? exportError} testId="log-error" />
      <div className="table-wrap">
        <table className="table" data-testid="log-table">
          <thead>
            <tr>
              <th>Address</th>
              <th>Status</th>
              <th className="num">Attempts</th>
              <th>Last attempt</th>
              <th>Sent</th>
              <th>Last response or error</th>
            </tr>
          </thead>
          <tbody>
            {log.rows.map((r) => (
              <tr key={r.id} data-testid="recipient-row" data-status={r.status}>
                <td>
                  <div className="address">{r.email}</div>
                  {typeof r.fields?.name === "string" && r.fields.name && (
                    <div className="muted small">{r.fields.name}</div>
                  )}
                </td>
                <td>
                  <StatusBadge status={r.status} testId="recipient-status" />
                </td>
                <td className="num">
                  <AttemptsCell campaignId={campaign.id} recipient={r} />
                </td>
                <td className="nowrap">{formatTime(r.lastAttemptAt)}</td>
                <td className="nowrap">{formatTime(r.sentAt)}</td>
                <td className={r.lastError ? "response text-bad" : "response"}>
                  {r.lastError ?? r.lastResponse ?? "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {log.rows.length === 0 && !log.loading && (
        <Empty>{q || status ? "No recipient matches." : "No recipients."}</Empty>
      )}
      <div className="log-foot">
        <span className="muted">
          {formatNumber(log.rows.length)} shown{log.loading ? " · loading…" : ""}
        </span>
        {log.nextCursor && (
          <button
            className="btn"
            onClick={() => void loadMore()}
            disabled={log.loading}
            data-testid="load-more"
          >
            Load more
          </button>
        )}
      </div>
    </div>
  );
}
