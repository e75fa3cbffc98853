// Users and their roles, for admins: add a user, change a role or a password, delete. The
// server refuses whatever this page would allow a non-admin; the page only follows it.
import { type FormEvent, useEffect, useState } from "react";
import { createUser, deleteUser, listUsers, ROLES, type Role, updateUser, type User } from "./api";
import { ErrorBox } from "./widgets";

export function UsersView({ me }: { me: string }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("viewer");

  const act = async (work: () => Promise<unknown>) => {
    setError(null);
    try {
      await work();
      setUsers(await listUsers());
    } catch (err) {
      setError((err as Error).message);
    }
  };

  useEffect(() => {
    void act(async () => undefined);
  }, []);

  const add = (e: FormEvent) => {
    e.preventDefault();
    void act(async () => {
      await createUser({ username: username.trim(), password, role });
      setUsername("");
      setPassword("");
    });
  };

  const setNewPassword = (user: User) => {
    const next = window.prompt(
      `New password for ${user.username} (8+ characters); it signs them out everywhere`,
    );
    if (next) void act(() => updateUser(user.id, { password: next }));
  };

  return (
    <section className="page">
      <div className="page-head">
        <h1>Users</h1>
      </div>
      <ErrorBox message={error} testId="users-error" />
      <form className="card users-form" onSubmit={add} data-testid="user-form">
        <label className="field">
          <span>User name</span>
          <input
            value={username}
            onChange={(e) => setUsername(e.currentTarget.value)}
            required
            data-testid="user-name"
          />
        </label>
        <label className="field">
          <span>Password</span>
          <input
            type="password"
            minLength={8}
            value={password}
            onChange={(e) => setPassword(e.currentTarget.value)}
            required
            data-testid="user-password"
          />
        </label>
        <label className="field">
          <span>Role</span>
          <select
            value={role}
            onChange={(e) => setRole(e.currentTarget.value as Role)}
            data-testid="user-role"
          >
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <button className="btn btn-primary" type="submit" data-testid="user-add">
          Add user
        </button>
      </form>
      <div className="card table-wrap">
        <table className="table" data-testid="users-table">
          <thead>
            <tr>
              <th>User</th>
              <th>Role</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(users ?? []).map((user) => (
              <tr key={user.id} data-testid={`user-${user.username}`}>
                <td>
                  {user.username}
                  {user.username === me && <em className="muted"> (you)</em>}
                </td>
                <td>
                  <select
                    value={user.role}
                    aria-label={`Role of ${user.username}`}
                    onChange={(e) =>
                      void act(() => updateUser(user.id, { role: e.currentTarget.value as Role }))
                    }
                    data-testid="user-role-select"
                  >
                    {ROLES.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                </td>
                <td>{new Date(user.createdAt).toLocaleString()}</td>
                <td className="btn-row">
                  <button
                    className="btn btn-small"
                    onClick={() => setNewPassword(user)}
                    data-testid="user-set-password"
                  >
                    Set password
                  </button>
                  <button
                    className="btn btn-danger btn-small"
                    onClick={() => {
                      if (window.confirm(`Delete ${user.username}? Their tokens stop working at once.`))
                        void act(() => deleteUser(user.id));
                    }}
                    data-testid="user-delete"
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
