// The sign-in form: trades username and password for a token (kept by api.ts).
import { type FormEvent, useState } from "react";
import { login } from "./api";
import { ErrorBox } from "./widgets";

export function LoginView({ onLoggedIn }: { onLoggedIn: () => void }) {
  const [username, setUsername] = useState("admin");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
      onLoggedIn();
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };

  return (
    <div className="login-page">
      <form className="card login-card" onSubmit={(e) => void submit(e)} data-testid="login-form">
        <div className="login-brand">
          <span className="logo-mark" aria-hidden="true" />
          <h1>Lovage</h1>
        </div>
        <p className="muted">Sign in to send campaigns and watch your queues.</p>
        <label className="field">
          <span>Username</span>
          <input
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            autoComplete="username"
            required
            data-testid="login-username"
          />
        </label>
        <label className="field">
          <span>Password</span>
          <input
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            autoComplete="current-password"
            autoFocus
            required
            data-testid="login-password"
          />
        </label>
        <ErrorBox message={error} testId="login-error" />
        <button
          className="btn btn-primary btn-block"
          type="submit"
          disabled={busy}
          data-testid="login-submit"
        >
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
