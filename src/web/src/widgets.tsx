// Small presentational pieces shared by the views: badges, the progress bar, error boxes,
// the rejected-lines table. No fetching here.
import type { ReactNode } from "react";
import type { Campaign, Rejected } from "./api";
import { formatNumber } from "./format";

export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return (
    <span className={`badge badge-${status}`} data-testid={testId}>
      {status}
    </span>
  );
}

/** Done = sent + failed + skipped + unknown: every recipient that will not be tried again by itself. */
export function doneCount(c: Campaign): number {
  return c.counts.sent + c.counts.failed + c.counts.skipped + c.counts.unknown;
}

export function ProgressBar({ campaign, testId }: { campaign: Campaign; testId?: string }) {
  const total = campaign.total || 0;
  const done = doneCount(campaign);
  const pct = (n: number) => (total > 0 ? (100 * n) / total : 0);
  const percent = Math.floor(pct(done));
  return (
    <div
      className="progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={total}
      aria-valuenow={done}
      aria-label={`${done} of ${total} done`}
      data-testid={testId}
    >
      <div className="progress-track">
        <span className="seg seg-sent" style={{ width: `${pct(campaign.counts.sent)}%` }} />
        <span className="seg seg-failed" style={{ width: `${pct(campaign.counts.failed)}%` }} />
        <span className="seg seg-unknown" style={{ width: `${pct(campaign.counts.unknown)}%` }} />
        <span className="seg seg-skipped" style={{ width: `${pct(campaign.counts.skipped)}%` }} />
      </div>
      <span className="progress-label">
        {formatNumber(done)} / {formatNumber(total)} · {percent}%
      </span>
    </div>
  );
}

export function ErrorBox({ message, testId }: { message: string | null; testId?: string }) {
  if (!message) return null;
  return (
    <div className="alert alert-error" role="alert" data-testid={testId ?? "error"}>
      {message}
    </div>
  );
}

const REJECTED_SHOWN = 500;

/** The rejected lines; `total` counts those the server did not list too. */
export function RejectedTable({ rejected, total }: { rejected: Rejected[]; total?: number }) {
  if (rejected.length === 0) return null;
  const shown = rejected.slice(0, REJECTED_SHOWN);
  const count = Math.max(total ?? 0, rejected.length);
  return (
    <div className="rejected">
      <h3>
        Rejected lines <span className="muted">({formatNumber(count)})</span>
      </h3>
      <div className="table-wrap">
        <table className="table" data-testid="rejected-table">
          <thead>
            <tr>
              <th className="num col-line">Line</th>
              <th>Value</th>
              <th>Reason</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r, i) => (
              <tr key={`${r.line}-${i}`} data-testid="rejected-row" data-line={r.line}>
                <td className="num" data-testid="rejected-line">
                  {r.line}
                </td>
                <td className="rejected-value">{r.value}</td>
                <td>{r.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {count > shown.length && (
        <p className="muted">
          …and {formatNumber(count - shown.length)} more, not listed here: the first{" "}
          {formatNumber(shown.length)} are shown.
        </p>
      )}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}
