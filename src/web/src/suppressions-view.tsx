// The suppression list: addresses no campaign mails (unsubscribed, bounced, complained, or
// added by hand), searchable, with an import of manual entries, the CSV export and removal.
// Not yet in the navigation: the route belongs with the dashboard's pages (issue 10).
import { type FormEvent, useCallback, useEffect, useState } from "react";
import {
  downloadSuppressionsCsv,
  importSuppressions,
  listSuppressions,
  removeSuppression,
  type Rejected,
  type SuppressionPage,
} from "./api";
import { formatNumber, formatTime } from "./format";
import { Empty, ErrorBox, RejectedTable } from "./widgets";

export function SuppressionsView() {
  const [q, setQ] = useState("");
  const [page, setPage] = useState<SuppressionPage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [text, setText] = useState("");
  const [rejected, setRejected] = useState<Rejected[]>([]);
  const [note, setNote] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      setPage(await listSuppressions({ q: q.trim() || undefined }));
      setError(null);
    } catch (err) {
      setError((err as Error).message);
    }
  }, [q]);

  useEffect(() => {
    void load();
  }, [load]);

  const add = async (e: FormEvent) => {
    e.preventDefault();
    setNote(null);
    try {
      const result = await importSuppressions(text);
      setRejected(result.rejected);
      setNote(
        `${formatNumber(result.accepted)} accepted, ${formatNumber(result.written)} added or strengthened`,
      );
      setText("");
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  const remove = async (email: string) => {
    try {
      await removeSuppression(email);
      await load();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section className="page" data-testid="suppressions-view">
      <div className="page-head">
        <h1>Suppression list</h1>
        <button className="btn" type="button" onClick={() => void downloadSuppressionsCsv()}>
          Export CSV
        </button>
      </div>
      {page && (
        <p className="muted" data-testid="suppression-counts">
          {formatNumber(page.counts.unsubscribed)} unsubscribed · {formatNumber(page.counts.bounced)} bounced
          · {formatNumber(page.counts.complained)} complained · {formatNumber(page.counts.manual)} manual
        </p>
      )}
      <ErrorBox message={error} testId="suppressions-error" />
      <form className="card" onSubmit={(e) => void add(e)}>
        <label className="field">
          <span>Add addresses (one per line, or a CSV with an email column)</span>
          <textarea
            rows={4}
            value={text}
            onChange={(e) => setText(e.target.value)}
            data-testid="suppressions-add"
          />
        </label>
        <div className="actions">
          <button className="btn btn-primary" type="submit" disabled={text.trim() === ""}>
            Add as manual
          </button>
          {note && <span className="hint">{note}</span>}
        </div>
        <RejectedTable rejected={rejected} />
      </form>
      <input
        type="search"
        value={q}
        onChange={(e) => setQ(e.target.value)}
        placeholder="Search addresses"
        aria-label="Search addresses"
      />
      {page && page.suppressions.length === 0 ? (
        <Empty>No suppressed address{q ? " matches" : ""}.</Empty>
      ) : (
        <table className="table" data-testid="suppressions-table">
          <thead>
            <tr>
              <th>Address</th>
              <th>Reason</th>
              <th>Campaign</th>
              <th>Detail</th>
              <th>Since</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {page?.suppressions.map((s) => (
              <tr key={s.email}>
                <td className="mono">{s.email}</td>
                <td>{s.reason}</td>
                <td>{s.campaignId ?? "—"}</td>
                <td>{s.detail ?? ""}</td>
                <td>{formatTime(s.createdAt)}</td>
                <td>
                  <button className="btn" type="button" onClick={() => void remove(s.email)}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
