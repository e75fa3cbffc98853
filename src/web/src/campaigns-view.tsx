// The campaigns list, newest first, with live progress (SSE plus a 3-second re-fetch).
import { useCampaigns } from "./live-campaigns";
import { formatNumber, formatRate, formatTime } from "./format";
import { href, navigate } from "./route";
import { Empty, ErrorBox, ProgressBar, StatusBadge } from "./widgets";

export function CampaignsView() {
  const { data: campaigns, error } = useCampaigns();

  return (
    <section className="page">
      <div className="page-head">
        <h1>Campaigns</h1>
        <a className="btn btn-primary" href={href({ view: "new-campaign" })}>
          New campaign
        </a>
      </div>
      <ErrorBox message={error} />
      {campaigns === null ? (
        !error && <Empty>Loading…</Empty>
      ) : campaigns.length === 0 ? (
        <Empty>
          No campaigns yet. <a href={href({ view: "new-campaign" })}>Create the first one</a>.
        </Empty>
      ) : (
        <div className="card table-wrap">
          <table className="table table-hover" data-testid="campaigns-table">
            <thead>
              <tr>
                <th>Campaign</th>
                <th>Status</th>
                <th className="col-progress">Progress</th>
                <th className="num">Sent</th>
                <th className="num">Failed</th>
                <th className="num">Rate</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {campaigns.map((c) => (
                <tr
                  key={c.id}
                  className="clickable"
                  onClick={() => navigate({ view: "campaign", id: c.id })}
                  data-testid="campaign-row"
                  data-campaign-id={c.id}
                >
                  <td>
                    <a
                      className="strong"
                      href={href({ view: "campaign", id: c.id })}
                      onClick={(e) => e.stopPropagation()}
                    >
                      {c.name || c.subject}
                    </a>
                    <div className="muted small">
                      #{c.id} · {c.name && c.name !== c.subject ? c.subject : c.from}
                    </div>
                  </td>
                  <td>
                    <StatusBadge status={c.status} testId="campaign-status" />
                  </td>
                  <td className="col-progress">
                    <ProgressBar campaign={c} testId="campaign-progress" />
                  </td>
                  <td className="num">{formatNumber(c.counts.sent)}</td>
                  <td className={c.counts.failed > 0 ? "num text-bad" : "num"}>
                    {formatNumber(c.counts.failed)}
                  </td>
                  <td className="num">{c.status === "sending" ? formatRate(c.ratePerMinute) : "—"}</td>
                  <td className="nowrap">{formatTime(c.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
