// Periodic tasks: each schedule with its cron or interval, next run and last run's outcome;
// enable, disable, run now, delete; a form for a new one; and a schedule's recent runs (its
// jobs), to see that each tick ran once.
import { type FormEvent, useCallback, useEffect, useState } from "react";
import {
  createSchedule,
  deleteSchedule,
  listSchedules,
  listTasks,
  scheduleAction,
  type ScheduleInfo,
  type TaskDetail,
} from "./api";
import { formatTime } from "./format";
import { href } from "./route";
import { Empty, ErrorBox, StatusBadge } from "./widgets";

const POLL_MS = 2000;

function Runs({ schedule }: { schedule: ScheduleInfo }) {
  const [runs, setRuns] = useState<TaskDetail[] | null>(null);
  useEffect(() => {
    const read = () =>
      listTasks({ name: schedule.task, queue: schedule.queue, limit: 200 }).then(
        (page) => setRuns(page.tasks.filter((t) => t.scheduleId === schedule.id)),
        () => undefined,
      );
    void read();
    const timer = setInterval(() => void read(), POLL_MS);
    return () => clearInterval(timer);
  }, [schedule.id, schedule.task, schedule.queue]);
  if (!runs) return null;
  if (runs.length === 0) return <p className="muted">No run yet.</p>;
  return (
    <ol className="runs" data-testid="schedule-runs" data-count={runs.length}>
      {runs.slice(0, 20).map((run) => (
        <li key={run.id} data-testid="schedule-run" data-started={run.startedAt ?? ""} data-state={run.state}>
          <StatusBadge status={run.state} />{" "}
          {/* A run's job is made as the run before it starts: its own start is its tick. */}
          <a href={href({ view: "tasks", id: run.id })}>
            {run.startedAt
              ? `ran ${formatTime(run.startedAt)}`
              : `next, at ${formatTime(schedule.nextRunAt)}`}
          </a>
        </li>
      ))}
    </ol>
  );
}

function NewSchedule({ onCreated }: { onCreated: () => void }) {
  const [task, setTask] = useState("add");
  const [kind, setKind] = useState<"cron" | "every">("cron");
  const [cron, setCron] = useState("*/5 * * * *");
  const [everyMs, setEveryMs] = useState("60000");
  const [timezone, setTimezone] = useState("");
  const [id, setId] = useState("");
  const [input, setInput] = useState('{"a":1,"b":2}');
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    let parsed: unknown;
    try {
      parsed = input.trim() === "" ? undefined : JSON.parse(input);
    } catch (err) {
      setError(`Input is not valid JSON: ${(err as Error).message}`);
      return;
    }
    try {
      await createSchedule({
        task: task.trim(),
        ...(id.trim() ? { id: id.trim() } : {}),
        ...(kind === "cron" ? { cron: cron.trim() } : { everyMs: Number(everyMs) }),
        ...(kind === "cron" && timezone.trim() ? { timezone: timezone.trim() } : {}),
        ...(parsed === undefined ? {} : { input: parsed }),
      });
      onCreated();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <form className="card schedule-form" onSubmit={(e) => void submit(e)} data-testid="schedule-form">
      <h2>New schedule</h2>
      <div className="form-row">
        <label className="field">
          <span>Task</span>
          <input
            className="mono"
            value={task}
            onChange={(e) => setTask(e.target.value)}
            required
            data-testid="schedule-task"
          />
        </label>
        <label className="field">
          <span>Id (optional)</span>
          <input
            className="mono"
            value={id}
            onChange={(e) => setId(e.target.value)}
            data-testid="schedule-id"
          />
        </label>
        <label className="field">
          <span>Runs</span>
          <select
            value={kind}
            onChange={(e) => setKind(e.target.value as "cron" | "every")}
            data-testid="schedule-kind"
          >
            <option value="cron">on a cron expression</option>
            <option value="every">every N milliseconds</option>
          </select>
        </label>
        {kind === "cron" ? (
          <>
            <label className="field">
              <span>Cron</span>
              <input
                className="mono"
                value={cron}
                onChange={(e) => setCron(e.target.value)}
                data-testid="schedule-cron"
              />
            </label>
            <label className="field">
              <span>Time zone</span>
              <input
                className="mono"
                placeholder="UTC"
                value={timezone}
                onChange={(e) => setTimezone(e.target.value)}
                data-testid="schedule-timezone"
              />
            </label>
          </>
        ) : (
          <label className="field">
            <span>Every (ms)</span>
            <input
              className="mono"
              inputMode="numeric"
              value={everyMs}
              onChange={(e) => setEveryMs(e.target.value)}
              data-testid="schedule-every"
            />
          </label>
        )}
      </div>
      <label className="field">
        <span>Input (JSON)</span>
        <textarea
          className="mono"
          rows={2}
          value={input}
          onChange={(e) => setInput(e.target.value)}
          data-testid="schedule-input"
        />
      </label>
      <ErrorBox message={error} testId="schedule-error" />
      <div className="actions">
        <button className="btn btn-primary" type="submit" data-testid="schedule-submit">
          Create schedule
        </button>
      </div>
    </form>
  );
}

export function SchedulesView() {
  const [schedules, setSchedules] = useState<ScheduleInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const read = useCallback(async () => {
    try {
      setSchedules(await listSchedules());
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);
  useEffect(() => {
    void read();
    const timer = setInterval(() => void read(), POLL_MS);
    return () => clearInterval(timer);
  }, [read]);
  const act = async (work: () => Promise<unknown>) => {
    try {
      await work();
      await read();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <section className="page" data-testid="schedules">
      <div className="page-head">
        <div>
          <h1>Schedules</h1>
          <div className="muted">Periodic tasks: one run per tick across every worker and API process.</div>
        </div>
      </div>
      <ErrorBox message={error} />
      {schedules && schedules.length === 0 && <Empty>No schedule yet.</Empty>}
      {schedules && schedules.length > 0 && (
        <div className="card table-wrap">
          <table className="table" data-testid="schedules-table">
            <thead>
              <tr>
                <th>Schedule</th>
                <th>Task</th>
                <th>When</th>
                <th>Next run</th>
                <th>Last run</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {schedules.map((s) => (
                <tr key={s.id} data-testid="schedule-row" data-schedule={s.id} data-enabled={s.enabled}>
                  <td>
                    <button
                      className="btn btn-ghost btn-small mono"
                      onClick={() => setOpen(open === s.id ? null : s.id)}
                      data-testid="schedule-open"
                    >
                      {s.id}
                    </button>
                    {!s.enabled && <StatusBadge status="paused" />}
                    {s.source === "code" && <span className="muted"> (code)</span>}
                  </td>
                  <td className="mono">{s.task}</td>
                  <td className="mono">
                    {s.cron ? `${s.cron}${s.timezone ? ` (${s.timezone})` : ""}` : `every ${s.everyMs} ms`}
                  </td>
                  <td>{formatTime(s.nextRunAt)}</td>
                  <td>
                    {s.lastRun ? (
                      <>
                        <StatusBadge status={s.lastRun.outcome} /> {formatTime(s.lastRun.finishedAt)}
                      </>
                    ) : (
                      "—"
                    )}
                  </td>
                  <td>
                    <span className="btn-row">
                      {s.enabled ? (
                        <button
                          className="btn btn-small"
                          onClick={() => void act(() => scheduleAction(s.id, "disable"))}
                          data-testid="schedule-disable"
                        >
                          Disable
                        </button>
                      ) : (
                        <button
                          className="btn btn-small"
                          onClick={() => void act(() => scheduleAction(s.id, "enable"))}
                          data-testid="schedule-enable"
                        >
                          Enable
                        </button>
                      )}
                      <button
                        className="btn btn-small"
                        onClick={() => void act(() => scheduleAction(s.id, "run"))}
                        data-testid="schedule-run-now"
                      >
                        Run now
                      </button>
                      <button
                        className="btn btn-small btn-danger"
                        onClick={() => void act(() => deleteSchedule(s.id))}
                        data-testid="schedule-delete"
                      >
                        Delete
                      </button>
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {open && schedules?.find((s) => s.id === open) && (
        <div className="card" data-testid="schedule-detail">
          <h2>
            Runs of <span className="mono">{open}</span>
          </h2>
          <Runs schedule={schedules.find((s) => s.id === open)!} />
        </div>
      )}
      <NewSchedule onCreated={() => void read()} />
    </section>
  );
}
