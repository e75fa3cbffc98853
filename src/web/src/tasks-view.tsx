// Tasks, as Flower and Bull Board show them: run a task by name (the dashboard's form of
// `lovage call add '{"a":10,"b":20}' --wait`), the jobs newest first filtered by state, queue,
// task name and text, and a job's detail with its input, result, error stack and attempts,
// with retry and cancel. The list follows the queues' live events.
import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";
import {
  listQueues,
  listTasks,
  getTaskDetail,
  sendTask,
  subscribeEvents,
  taskAction,
  type TaskDetail,
  type TaskInfo,
  getTask,
} from "./api";
import { formatTime } from "./format";
import { href, navigate } from "./route";
import { Empty, ErrorBox, StatusBadge } from "./widgets";

const POLL_MS = 500;
const LIST_POLL_MS = 5000;
const FINAL_STATES = new Set(["completed", "failed", "cancelled"]);
const STATES = ["waiting", "delayed", "active", "completed", "failed", "cancelled"];

function RunForm() {
  const [name, setName] = useState("add");
  const [input, setInput] = useState('{"a":10,"b":20}');
  const [delay, setDelay] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [task, setTask] = useState<TaskInfo | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  useEffect(() => () => clearTimeout(timer.current), []);

  const follow = (id: string) => {
    const tick = async () => {
      try {
        const info = await getTask(id);
        setTask(info);
        if (FINAL_STATES.has(info.state)) {
          setBusy(false);
          return;
        }
      } catch (err) {
        setError((err as Error).message);
        setBusy(false);
        return;
      }
      timer.current = setTimeout(() => void tick(), POLL_MS);
    };
    void tick();
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    clearTimeout(timer.current);
    setError(null);
    setTask(null);
    let parsed: unknown;
    try {
      parsed = input.trim() === "" ? {} : JSON.parse(input);
    } catch (err) {
      setError(`Input is not valid JSON: ${(err as Error).message}`);
      return;
    }
    const delayMs = delay.trim() === "" ? undefined : Number(delay);
    if (delayMs !== undefined && !(Number.isInteger(delayMs) && delayMs >= 0)) {
      setError("Delay: a whole number of milliseconds");
      return;
    }
    setBusy(true);
    try {
      const { id } = await sendTask(name.trim(), parsed, delayMs ? { delayMs } : {});
      setTask({ id, name: name.trim(), state: delayMs ? "delayed" : "waiting", result: null, error: null });
      follow(id);
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <div className="tasks-layout">
      <form className="card" onSubmit={(e) => void submit(e)} data-testid="task-form">
        <h2>Run a task</h2>
        <label className="field">
          <span>Task name</span>
          <input
            className="mono"
            value={name}
            onChange={(e) => setName(e.target.value)}
            required
            data-testid="task-name"
          />
        </label>
        <label className="field">
          <span>Input (JSON)</span>
          <textarea
            className="mono"
            rows={4}
            value={input}
            onChange={(e) => setInput(e.target.value)}
            spellCheck={false}
            data-testid="task-input"
          />
        </label>
        <label className="field">
          <span>Delay (ms, optional)</span>
          <input
            className="mono"
            inputMode="numeric"
            value={delay}
            onChange={(e) => setDelay(e.target.value)}
            data-testid="task-delay"
          />
        </label>
        <ErrorBox message={error} testId="task-error" />
        <div className="actions">
          <button className="btn btn-primary" type="submit" disabled={busy} data-testid="task-submit">
            {busy ? "Running…" : "Run task"}
          </button>
        </div>
      </form>
      <div className="card task-result" data-testid="task-panel">
        <h2>Result</h2>
        {task ? (
          <>
            <dl className="message-meta">
              <dt>Task</dt>
              <dd className="mono">{task.name}</dd>
              <dt>Job id</dt>
              <dd className="mono" data-testid="task-id">
                <a href={href({ view: "tasks", id: task.id })}>{task.id}</a>
              </dd>
              <dt>State</dt>
              <dd>
                <StatusBadge status={task.state} testId="task-state" />
              </dd>
            </dl>
            {task.state === "completed" && (
              <pre className="code result" data-testid="task-result">
                {JSON.stringify(task.result, null, 2)}
              </pre>
            )}
            {task.state === "failed" && (
              <pre className="code result text-bad" data-testid="task-failure">
                {typeof task.error === "string" ? task.error : JSON.stringify(task.error, null, 2)}
              </pre>
            )}
          </>
        ) : (
          <p className="muted">
            Try <code>add</code> with <code>{'{"a":10,"b":20}'}</code>: the result is <code>30</code>.
          </p>
        )}
      </div>
    </div>
  );
}

function TaskList({ queue, state }: { queue?: string; state?: string }) {
  const [filters, setFilters] = useState({ state: state ?? "", queue: queue ?? "", name: "", q: "" });
  const [queues, setQueues] = useState<string[]>([]);
  const [tasks, setTasks] = useState<TaskDetail[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => setFilters((f) => ({ ...f, state: state ?? "", queue: queue ?? "" })), [queue, state]);
  useEffect(() => {
    listQueues().then(
      (list) => setQueues(list.map((q) => q.name)),
      () => undefined,
    );
  }, []);
  const read = useCallback(async () => {
    try {
      const page = await listTasks({ ...filters, limit: 100 });
      setTasks(page.tasks);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [filters]);
  useEffect(() => {
    void read();
    const timer = setInterval(() => void read(), LIST_POLL_MS);
    // A queue's counts moved: some job changed state.
    const stop = subscribeEvents({ queue: () => void read() });
    return () => {
      clearInterval(timer);
      stop();
    };
  }, [read]);

  return (
    <div className="card" data-testid="task-list">
      <div className="filters">
        <select
          value={filters.state}
          onChange={(e) => setFilters({ ...filters, state: e.target.value })}
          aria-label="State"
          data-testid="tasks-state"
        >
          <option value="">every state</option>
          {STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <select
          value={filters.queue}
          onChange={(e) => setFilters({ ...filters, queue: e.target.value })}
          aria-label="Queue"
          data-testid="tasks-queue"
        >
          <option value="">every queue</option>
          {queues.map((q) => (
            <option key={q} value={q}>
              {q}
            </option>
          ))}
        </select>
        <input
          className="mono"
          placeholder="task name"
          value={filters.name}
          onChange={(e) => setFilters({ ...filters, name: e.target.value.trim() })}
          aria-label="Task name"
          data-testid="tasks-name"
        />
        <input
          placeholder="search input, result, error"
          value={filters.q}
          onChange={(e) => setFilters({ ...filters, q: e.target.value })}
          aria-label="Search"
          data-testid="tasks-search"
        />
      </div>
      <ErrorBox message={error} />
      {tasks && tasks.length === 0 && <Empty>No job matches.</Empty>}
      {tasks && tasks.length > 0 && (
        <div className="table-wrap">
          <table className="table" data-testid="tasks-table">
            <thead>
              <tr>
                <th>Task</th>
                <th>State</th>
                <th>Queue</th>
                <th>Created</th>
                <th className="num">Attempts</th>
                <th>Worker</th>
              </tr>
            </thead>
            <tbody>
              {tasks.map((t) => (
                <tr
                  key={t.id}
                  className="row-link"
                  data-testid="task-row"
                  data-id={t.id}
                  data-name={t.name}
                  data-state={t.state}
                  data-created={t.createdAt}
                  data-schedule={t.scheduleId ?? ""}
                  onClick={() => navigate({ view: "tasks", id: t.id })}
                >
                  <td>
                    <a className="mono" href={href({ view: "tasks", id: t.id })}>
                      {t.name}
                    </a>
                  </td>
                  <td>
                    <StatusBadge status={t.state} />
                  </td>
                  <td className="mono">{t.queue}</td>
                  <td>{formatTime(t.createdAt)}</td>
                  <td className="num">
                    {t.attemptsMade}/{t.maxAttempts}
                  </td>
                  <td className="mono muted">{t.worker ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

const show = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));

function TaskDetailView({ id }: { id: string }) {
  const [task, setTask] = useState<TaskDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const read = useCallback(async () => {
    try {
      setTask(await getTaskDetail(id));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [id]);
  useEffect(() => {
    void read();
    const timer = setInterval(() => void read(), 1000);
    return () => clearInterval(timer);
  }, [read]);
  const act = async (action: "retry" | "cancel") => {
    setBusy(true);
    try {
      setTask({ ...(task as TaskDetail), ...(await taskAction(id, action)) });
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="card" data-testid="task-detail">
      <div className="page-head">
        <div>
          <div className="breadcrumb">
            <a href={href({ view: "tasks" })}>Tasks</a> <span aria-hidden="true">›</span>{" "}
            <span className="mono">{id}</span>
          </div>
          <div className="title-with-badge">
            <h2 className="mono">{task?.name ?? "…"}</h2>
            {task && <StatusBadge status={task.state} testId="task-detail-state" />}
          </div>
        </div>
        {task && (
          <div className="btn-row">
            {(task.state === "failed" || task.state === "cancelled") && (
              <button
                className="btn btn-small btn-primary"
                disabled={busy}
                onClick={() => void act("retry")}
                data-testid="task-retry"
              >
                Retry
              </button>
            )}
            {(task.state === "waiting" || task.state === "delayed" || task.state === "active") && (
              <button
                className="btn btn-small btn-danger"
                disabled={busy}
                onClick={() => void act("cancel")}
                data-testid="task-cancel"
              >
                Cancel
              </button>
            )}
          </div>
        )}
      </div>
      <ErrorBox message={error} />
      {task && (
        <>
          <dl className="message-meta">
            <dt>Queue</dt>
            <dd className="mono">{task.queue}</dd>
            <dt>Created</dt>
            <dd>{formatTime(task.createdAt)}</dd>
            <dt>Started</dt>
            <dd>{formatTime(task.startedAt)}</dd>
            <dt>Finished</dt>
            <dd>{formatTime(task.finishedAt)}</dd>
            <dt>Attempts</dt>
            <dd>
              {task.attemptsMade} of {task.maxAttempts}
            </dd>
            <dt>Worker</dt>
            <dd className="mono">{task.worker ?? "—"}</dd>
            {task.scheduleId && (
              <>
                <dt>Schedule</dt>
                <dd className="mono">{task.scheduleId}</dd>
              </>
            )}
          </dl>
          <h3>Input</h3>
          <pre className="code" data-testid="task-detail-input">
            {show(task.input)}
          </pre>
          {task.state === "completed" && (
            <>
              <h3>Result</h3>
              <pre className="code result" data-testid="task-detail-result">
                {show(task.result)}
              </pre>
            </>
          )}
          {task.error && (
            <>
              <h3>Error</h3>
              <pre className="code text-bad" data-testid="task-detail-error">
                {task.stack ?? task.error}
              </pre>
            </>
          )}
          {(task.attempts?.length ?? 0) > 0 && (
            <>
              <h3>Failed attempts</h3>
              <ol className="timeline" data-testid="task-attempts">
                {task.attempts!.map((a) => (
                  <li key={a.attempt}>
                    <div>
                      <strong>Attempt {a.attempt}</strong> <span className="muted">on</span>{" "}
                      <span className="mono">{a.worker}</span>
                    </div>
                    <div className="muted">
                      {formatTime(a.startedAt)} → {formatTime(a.finishedAt)}
                    </div>
                    <div className="text-bad mono">{a.error}</div>
                  </li>
                ))}
              </ol>
            </>
          )}
        </>
      )}
    </div>
  );
}

export function TasksView({ id, queue, state }: { id?: string | null; queue?: string; state?: string }) {
  return (
    <section className="page">
      <div className="page-head">
        <div>
          <h1>Tasks</h1>
          <div className="muted">
            Jobs newest first, on every queue; run a task, retry a failed one, cancel one.
          </div>
        </div>
      </div>
      {id ? <TaskDetailView id={id} /> : <TaskList queue={queue} state={state} />}
      <RunForm />
    </section>
  );
}
