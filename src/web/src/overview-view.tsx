// The overview: workers online, queue depth, campaigns sending, emails and jobs per minute over
// the last hour or day with their failure rate, from the store's durable figures (they survive
// restarts), and the breakdown by SMTP server and recipient domain group.
import { useCallback, useEffect, useMemo, useState } from "react";
import { type EmailBreakdown, type FigureRange, type Figures, getFigures } from "./api";
import { Chart, onAxis, timeAxis } from "./chart";
import { formatNumber } from "./format";
import { useCampaigns } from "./live-campaigns";
import { useQueues, useWorkers } from "./live-monitor";
import { ErrorBox } from "./widgets";

const FIGURES_POLL_MS = 10_000;
const COLORS = { good: "#23804a", bad: "#c2362f", warn: "#b86e00", info: "#2563a8", muted: "#66736c" };

function useFigures(range: FigureRange): { figures: Figures | null; error: string | null } {
  const [state, setState] = useState<{ figures: Figures | null; error: string | null }>({
    figures: null,
    error: null,
  });
  const read = useCallback(async () => {
    try {
      setState({ figures: await getFigures(range), error: null });
    } catch (e) {
      setState((s) => ({ ...s, error: (e as Error).message }));
    }
  }, [range]);
  useEffect(() => {
    void read();
    const timer = setInterval(() => void read(), FIGURES_POLL_MS);
    return () => clearInterval(timer);
  }, [read]);
  return state;
}

function Stat({
  label,
  value,
  testId,
  hint,
}: {
  label: string;
  value: string;
  testId: string;
  hint?: string;
}) {
  return (
    <div className="kpi card">
      <div className="stat-label">{label}</div>
      <div className="stat-value" data-testid={testId}>
        {value}
      </div>
      {hint && <div className="muted kpi-hint">{hint}</div>}
    </div>
  );
}

export function BreakdownTable({
  title,
  rows,
  testId,
}: {
  title: string;
  rows: EmailBreakdown[];
  testId: string;
}) {
  return (
    <div className="card table-wrap">
      <table className="table" data-testid={testId}>
        <thead>
          <tr>
            <th>{title}</th>
            <th className="num">Sent</th>
            <th className="num">Failed</th>
            <th className="num">Deferred</th>
            <th className="num">SMTP p50</th>
            <th className="num">p95</th>
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No email in this range.
              </td>
            </tr>
          )}
          {rows.map((r) => (
            <tr key={r.key} data-testid={`${testId}-row`} data-key={r.key}>
              <td className="mono">{r.key}</td>
              <td className="num">{formatNumber(r.sent)}</td>
              <td className="num">{formatNumber(r.failed)}</td>
              <td className="num">{formatNumber(r.deferred)}</td>
              <td className="num">{r.smtpP50Ms === null ? "—" : `${Math.round(r.smtpP50Ms)} ms`}</td>
              <td className="num">{r.smtpP95Ms === null ? "—" : `${Math.round(r.smtpP95Ms)} ms`}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function OverviewView() {
  const [range, setRange] = useState<FigureRange>("hour");
  const { figures, error } = useFigures(range);
  const workers = useWorkers();
  const queues = useQueues();
  const campaigns = useCampaigns();

  const charts = useMemo(() => {
    if (!figures) return null;
    const axis = timeAxis(figures.since, figures.until, figures.stepMinutes);
    const perMinute = (n: number) => n / figures.stepMinutes;
    const depthByTime = new Map<string, number>();
    for (const q of figures.queues)
      depthByTime.set(q.at, (depthByTime.get(q.at) ?? 0) + q.waiting + q.delayed);
    return {
      axis,
      emails: [
        {
          label: "sent/min",
          color: COLORS.good,
          values: onAxis(axis, figures.emails, (p) => perMinute(p.sent)),
        },
        {
          label: "failed/min",
          color: COLORS.bad,
          values: onAxis(axis, figures.emails, (p) => perMinute(p.failed)),
        },
        {
          label: "deferred/min",
          color: COLORS.warn,
          values: onAxis(axis, figures.emails, (p) => perMinute(p.deferred)),
        },
      ],
      jobs: [
        {
          label: "completed/min",
          color: COLORS.good,
          values: onAxis(axis, figures.jobs, (p) => perMinute(p.completed)),
        },
        {
          label: "failed/min",
          color: COLORS.bad,
          values: onAxis(axis, figures.jobs, (p) => perMinute(p.failed)),
        },
      ],
      runTimes: [
        { label: "run p50", color: COLORS.info, values: onAxis(axis, figures.jobs, (p) => p.runP50Ms, null) },
        { label: "run p95", color: COLORS.warn, values: onAxis(axis, figures.jobs, (p) => p.runP95Ms, null) },
        {
          label: "wait p95",
          color: COLORS.muted,
          values: onAxis(axis, figures.jobs, (p) => p.waitP95Ms, null),
        },
      ],
      depth: [
        {
          label: "waiting",
          color: COLORS.info,
          values: axis.map((t) => depthByTime.get(new Date(t * 1000).toISOString()) ?? null),
        },
      ],
    };
  }, [figures]);

  const sent = figures?.emails.reduce((n, p) => n + p.sent, 0) ?? 0;
  const failed = figures?.emails.reduce((n, p) => n + p.failed, 0) ?? 0;
  const jobsDone = figures?.jobs.reduce((n, p) => n + p.completed, 0) ?? 0;
  const jobsFailed = figures?.jobs.reduce((n, p) => n + p.failed, 0) ?? 0;
  const depth = (queues.data ?? []).reduce((n, q) => n + q.counts.waiting + q.counts.delayed, 0);
  const sending = (campaigns.data ?? []).filter((c) => c.status === "sending").length;
  const rate = (bad: number, good: number) =>
    bad + good === 0 ? "—" : `${((100 * bad) / (bad + good)).toFixed(bad + good > 100 ? 1 : 0)}%`;
  const label = range === "hour" ? "last hour" : "last day";

  return (
    <section className="page" data-testid="overview">
      <div className="page-head">
        <div>
          <h1>Overview</h1>
          <div className="muted">Figures kept in the store: they survive restarts.</div>
        </div>
        <div className="segmented" role="group" aria-label="Range">
          {(["hour", "day"] as const).map((r) => (
            <button
              key={r}
              className={r === range ? "btn btn-small btn-primary" : "btn btn-small"}
              onClick={() => setRange(r)}
              data-testid={`range-${r}`}
            >
              Last {r}
            </button>
          ))}
        </div>
      </div>
      <ErrorBox message={error ?? workers.error ?? queues.error} />
      <div className="stat-grid">
        <Stat
          label="Workers online"
          value={workers.data ? String(workers.data.length) : "…"}
          testId="stat-workers"
        />
        <Stat
          label="Queue depth"
          value={formatNumber(depth)}
          testId="stat-depth"
          hint="waiting and delayed"
        />
        <Stat label="Campaigns sending" value={String(sending)} testId="stat-sending" />
        <Stat label={`Emails sent, ${label}`} value={formatNumber(sent)} testId="stat-emails" />
        <Stat label="Email failure rate" value={rate(failed, sent)} testId="stat-email-failures" />
        <Stat
          label={`Jobs done, ${label}`}
          value={formatNumber(jobsDone)}
          testId="stat-jobs"
          hint={`failure rate ${rate(jobsFailed, jobsDone)}`}
        />
      </div>
      {charts && (
        <div className="chart-grid">
          <Chart title="Emails per minute" x={charts.axis} series={charts.emails} testId="chart-emails" />
          <Chart title="Jobs per minute" x={charts.axis} series={charts.jobs} testId="chart-jobs" />
          <Chart
            title="Job run and wait time (ms)"
            x={charts.axis}
            series={charts.runTimes}
            testId="chart-run-time"
            sparse
          />
          <Chart title="Queue depth" x={charts.axis} series={charts.depth} testId="chart-depth" sparse />
        </div>
      )}
      {figures && (
        <div className="row-2">
          <BreakdownTable title="SMTP server" rows={figures.byServer} testId="by-server" />
          <BreakdownTable title="Domain group" rows={figures.byDomainGroup} testId="by-domain" />
        </div>
      )}
    </section>
  );
}
