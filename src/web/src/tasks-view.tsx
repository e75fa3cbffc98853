// Call any registered task by name with a JSON input, then follow it until it finishes:
// the dashboard's form of `lovage call add '{"a":10,"b":20}' --wait`.
import { type FormEvent, useEffect, useRef, useState } from "react";
import { callTask, getTask, type TaskInfo } from "./api";
import { ErrorBox, StatusBadge } from "./widgets";

const POLL_MS = 500;
const FINAL_STATES = new Set(["completed", "failed", "cancelled"]);

export function TasksView() {
  const [name, setName] = useState("add");
  const [input, setInput] = useState('{"a":10,"b":20}');
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
    setBusy(true);
    try {
      const { id } = await callTask(name.trim(), parsed);
      setTask({ id, name: name.trim(), state: "waiting", result: null, error: null });
      follow(id);
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <section className="page">
      <div className="page-head">
        <div>
          <h1>Tasks</h1>
          <div className="muted">Run a task on the workers and wait for its result.</div>
        </div>
      </div>
      <div className="tasks-layout">
        <form className="card" onSubmit={(e) => void submit(e)} data-testid="task-form">
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
              rows={6}
              value={input}
              onChange={(e) => setInput(e.target.value)}
              spellCheck={false}
              data-testid="task-input"
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
                  {task.id}
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
    </section>
  );
}
