// Workers, as Flower shows them: each live worker with its host, pid, queues, concurrency, the
// jobs it runs now, its counters and heartbeat; a worker's detail, and a graceful shutdown
// (it finishes its jobs and leaves; the list follows over the live stream).
import { useState } from "react";
import { shutdownWorker, type WorkerInfo } from "./api";
import { formatNumber, formatTime } from "./format";
import { useWorkers } from "./live-monitor";
import { href } from "./route";
import { Empty, ErrorBox } from "./widgets";

function ShutdownButton({ worker, onDone }: { worker: WorkerInfo; onDone: () => void }) {
  const [armed, setArmed] = useState(false);
  const [error, setError] = useState<string | null>(null);
  if (worker.shutdownRequestedAt)
    return (
      <span className="badge badge-paused" data-testid="worker-stopping">
        stopping
      </span>
    );
  return (
    <span className="btn-row">
      {armed ? (
        <>
          <button
            className="btn btn-small btn-danger"
            data-testid="worker-shutdown-confirm"
            onClick={() => {
              shutdownWorker(worker.id).then(onDone, (e: unknown) => setError((e as Error).message));
            }}
          >
            Confirm shutdown
          </button>
          <button className="btn btn-small btn-ghost" onClick={() => setArmed(false)}>
            Keep
          </button>
        </>
      ) : (
        <button className="btn btn-small" data-testid="worker-shutdown" onClick={() => setArmed(true)}>
          Shut down
        </button>
      )}
      <ErrorBox message={error} />
    </span>
  );
}

function RunningJobs({ worker }: { worker: WorkerInfo }) {
  if (worker.running.length === 0) return <span className="muted">idle</span>;
  return (
    <span className="running-jobs">
      {worker.running.map((job) => (
        <a key={job.id} className="chip mono" href={href({ view: "tasks", id: job.id })} title={job.id}>
          {job.task}
        </a>
      ))}
    </span>
  );
}

export function WorkersView({ id }: { id: string | null }) {
  const workers = useWorkers();
  const list = workers.data ?? [];
  const selected = id ? list.find((w) => w.id === id) : undefined;
  return (
    <section className="page" data-testid="workers">
      <div className="page-head">
        <div>
          <h1>Workers</h1>
          <div className="muted">
            Live worker processes, on every host. A worker silent for 15 s leaves the list.
          </div>
        </div>
      </div>
      <ErrorBox message={workers.error} />
      {workers.data && list.length === 0 && (
        <Empty>No worker is running: start one with `lovage worker`.</Empty>
      )}
      {list.length > 0 && (
        <div className="card table-wrap">
          <table className="table" data-testid="workers-table">
            <thead>
              <tr>
                <th>Worker</th>
                <th>Queues</th>
                <th className="num">Slots</th>
                <th>Running now</th>
                <th className="num">Done</th>
                <th className="num">Failed</th>
                <th className="num">Emails</th>
                <th className="num">Restarts</th>
                <th>Heartbeat</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.map((w) => (
                <tr key={w.id} data-testid="worker-row" data-worker={w.id}>
                  <td>
                    <a className="mono" href={href({ view: "workers", id: w.id })} data-testid="worker-link">
                      {w.host}:{w.pid}
                    </a>
                  </td>
                  <td className="mono">{w.queues.join(", ")}</td>
                  <td className="num">
                    {w.active}/{w.concurrency}
                  </td>
                  <td>
                    <RunningJobs worker={w} />
                  </td>
                  <td className="num">{formatNumber(w.processed)}</td>
                  <td className="num">{formatNumber(w.failed)}</td>
                  <td className="num">{formatNumber(w.emailsSent)}</td>
                  <td className="num">{w.watchdogRestarts}</td>
                  <td>{formatTime(w.heartbeatAt)}</td>
                  <td>
                    <ShutdownButton worker={w} onDone={() => void workers.refresh()} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {id && workers.data && !selected && (
        <div className="alert" data-testid="worker-gone">
          Worker <span className="mono">{id}</span> is not running (it stopped or went silent).
        </div>
      )}
      {selected && (
        <div className="card" data-testid="worker-detail">
          <div className="page-head">
            <h2 className="mono">{selected.id}</h2>
            <ShutdownButton worker={selected} onDone={() => void workers.refresh()} />
          </div>
          <dl className="message-meta">
            <dt>Host</dt>
            <dd className="mono">{selected.host}</dd>
            <dt>Process</dt>
            <dd className="mono">{selected.pid}</dd>
            <dt>Queues</dt>
            <dd className="mono">{selected.queues.join(", ")}</dd>
            <dt>Concurrency</dt>
            <dd>{selected.concurrency}</dd>
            <dt>Started</dt>
            <dd>{formatTime(selected.startedAt)}</dd>
            <dt>Last heartbeat</dt>
            <dd>{formatTime(selected.heartbeatAt)}</dd>
            <dt>Last job</dt>
            <dd>{formatTime(selected.lastJobAt)}</dd>
            <dt>Jobs done / failed</dt>
            <dd>
              {formatNumber(selected.processed)} / {formatNumber(selected.failed)}
            </dd>
            <dt>Emails sent</dt>
            <dd>{formatNumber(selected.emailsSent)}</dd>
            <dt>Watchdog restarts</dt>
            <dd>{selected.watchdogRestarts}</dd>
            <dt>Running now</dt>
            <dd>
              <RunningJobs worker={selected} />
            </dd>
          </dl>
        </div>
      )}
    </section>
  );
}
