// Queues, as Bull Board steers them: counts by state, pause and resume (every worker stops
// taking the queue's jobs), retry every failed job, clean finished jobs older than an age.
import { useState } from "react";
import { cleanQueue, queueAction, type QueueInfo, retryFailedJobs } from "./api";
import { formatNumber } from "./format";
import { useQueues } from "./live-monitor";
import { href } from "./route";
import { ErrorBox, StatusBadge } from "./widgets";

const AGES: { label: string; ms: number }[] = [
  { label: "any age", ms: 0 },
  { label: "older than 1 hour", ms: 3600_000 },
  { label: "older than 1 day", ms: 24 * 3600_000 },
  { label: "older than 7 days", ms: 7 * 24 * 3600_000 },
];

function QueueRow({
  queue,
  onChange,
}: {
  queue: QueueInfo;
  onChange: (q: QueueInfo, note?: string) => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [cleanState, setCleanState] = useState<"completed" | "failed">("completed");
  const [age, setAge] = useState(AGES[1]!.ms);
  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const c = queue.counts;
  return (
    <div
      className="card queue-card"
      data-testid="queue-card"
      data-queue={queue.name}
      data-paused={queue.paused}
    >
      <div className="page-head">
        <div className="title-with-badge">
          <h2 className="mono">{queue.name}</h2>
          {queue.paused && <StatusBadge status="paused" testId="queue-paused" />}
        </div>
        <div className="btn-row">
          {queue.paused ? (
            <button
              className="btn btn-small btn-primary"
              disabled={busy}
              data-testid="queue-resume"
              onClick={() => void run(async () => onChange(await queueAction(queue.name, "resume")))}
            >
              Resume
            </button>
          ) : (
            <button
              className="btn btn-small"
              disabled={busy}
              data-testid="queue-pause"
              onClick={() => void run(async () => onChange(await queueAction(queue.name, "pause")))}
            >
              Pause
            </button>
          )}
          <button
            className="btn btn-small"
            disabled={busy || c.failed === 0}
            data-testid="queue-retry-failed"
            onClick={() =>
              void run(async () => {
                const answer = await retryFailedJobs(queue.name);
                onChange(answer.queue, `${answer.retried} failed job(s) of ${queue.name} run again`);
              })
            }
          >
            Retry failed
          </button>
        </div>
      </div>
      <dl className="queue-counts">
        {(["waiting", "active", "delayed", "completed", "failed"] as const).map((state) => (
          <div key={state}>
            <dt>
              <a href={href({ view: "tasks", queue: queue.name, state })}>{state}</a>
            </dt>
            <dd data-testid={`queue-count-${state}`}>{formatNumber(c[state])}</dd>
          </div>
        ))}
      </dl>
      <div className="btn-row clean-row">
        <select
          value={cleanState}
          onChange={(e) => setCleanState(e.target.value as "completed" | "failed")}
          aria-label="Jobs to clean"
          data-testid="queue-clean-state"
        >
          <option value="completed">completed jobs</option>
          <option value="failed">failed jobs</option>
        </select>
        <select
          value={age}
          onChange={(e) => setAge(Number(e.target.value))}
          aria-label="Age"
          data-testid="queue-clean-age"
        >
          {AGES.map((a) => (
            <option key={a.ms} value={a.ms}>
              {a.label}
            </option>
          ))}
        </select>
        <button
          className="btn btn-small btn-danger"
          disabled={busy}
          data-testid="queue-clean"
          onClick={() =>
            void run(async () => {
              const answer = await cleanQueue(queue.name, cleanState, age);
              onChange(answer.queue, `${answer.removed} ${cleanState} job(s) of ${queue.name} removed`);
            })
          }
        >
          Clean
        </button>
      </div>
      <ErrorBox message={error} />
    </div>
  );
}

export function QueuesView() {
  const queues = useQueues();
  const [note, setNote] = useState<string | null>(null);
  return (
    <section className="page" data-testid="queues">
      <div className="page-head">
        <div>
          <h1>Queues</h1>
          <div className="muted">
            A paused queue's jobs wait: no worker on any host takes them until it is resumed.
          </div>
        </div>
      </div>
      <ErrorBox message={queues.error} />
      {note && (
        <div className="alert alert-ok" role="status" data-testid="queue-note">
          {note}
        </div>
      )}
      <div className="queue-grid">
        {(queues.data ?? []).map((q) => (
          <QueueRow
            key={q.name}
            queue={q}
            onChange={(changed, message) => {
              queues.set(changed);
              setNote(message ?? null);
            }}
          />
        ))}
      </div>
    </section>
  );
}
