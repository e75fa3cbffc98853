/**
 * Users and roles over the HTTP API: admin (everything, users), sender (campaigns, tasks),
 * viewer (read only: every mutating route of the OpenAPI document answers 403 naming the role
 * needed). Tokens are revoked by signing out, by a new password and by deleting the user, at
 * once; they expire after the configured time. Over a real embedded store (openTestApi).
 */
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/api/app.js";
import { expectError, openTestApi, type TestApi } from "../helpers/api-app.js";

describe("users and roles", () => {
  let api: TestApi;
  const tokens: Record<string, string> = {};
  const ids: Record<string, number> = {};

  async function login(username: string, password: string): Promise<string> {
    const response = await api.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { username, password },
    });
    expect(response.statusCode, response.body).toBe(200);
    return response.json<{ token: string }>().token;
  }

  const as = (token: string, options: InjectOptions) =>
    api.app.inject({ ...options, headers: { ...options.headers, authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    api = await openTestApi();
    for (const role of ["sender", "viewer"] as const) {
      const created = await api.call({
        method: "POST",
        url: "/api/users",
        payload: { username: `${role}-1`, password: `${role}-password`, role },
      });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ username: `${role}-1`, role });
      ids[role] = created.json<{ id: number }>().id;
      tokens[role] = await login(`${role}-1`, `${role}-password`);
    }
  }, 60_000);

  afterAll(async () => {
    await api?.close();
  });

  it("says who a token belongs to", async () => {
    const me = await as(tokens.viewer!, { method: "GET", url: "/api/auth/me" });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toEqual({ id: ids.viewer, username: "viewer-1", role: "viewer" });
  });

  it("answers 403 to a viewer on every mutating route, and lets it read", async () => {
    const document = api.app.swagger() as { paths: Record<string, Record<string, { security?: unknown[] }>> };
    const mutating = Object.entries(document.paths).flatMap(([template, methods]) =>
      Object.entries(methods)
        .filter(([method, op]) => method !== "get" && op.security?.length !== 0)
        .map(([method]) => ({ method: method.toUpperCase(), template })),
    );
    // Signing out and changing one's own password are for every role.
    const ownAccount = new Set(["POST /api/auth/logout", "POST /api/auth/password"]);
    const checked = mutating.filter(({ method, template }) => !ownAccount.has(`${method} ${template}`));
    expect(checked.length).toBeGreaterThan(15);
    for (const { method, template } of checked) {
      const url = template.replace(/\{id\}/g, "1").replace(/\{name\}/g, "add");
      const response = await as(tokens.viewer!, {
        method: method,
        url,
        payload: {},
      });
      const error = expectError(response, 403, "forbidden");
      expect(error.message, `${method} ${template}`).toMatch(
        /needs the role (sender or admin|admin); viewer-1 is viewer/,
      );
    }
    for (const url of ["/api/campaigns", "/api/tasks", "/api/schedules", "/api/auth/me"]) {
      const response = await as(tokens.viewer!, { method: "GET", url });
      expect(response.statusCode, `${url}: ${response.body}`).toBe(200);
    }
  });

  it("lets a sender send campaigns and tasks but not manage users", async () => {
    const campaign = await as(tokens.sender!, {
      method: "POST",
      url: "/api/campaigns",
      payload: { subject: "Roles", text: "Hi", recipients: "roles@example.com" },
    });
    expect(campaign.statusCode, campaign.body).toBe(202);
    const task = await as(tokens.sender!, {
      method: "POST",
      url: "/api/tasks/add",
      payload: { input: { a: 1, b: 2 } },
    });
    expect(task.statusCode, task.body).toBe(202);
    const error = expectError(
      await as(tokens.sender!, { method: "GET", url: "/api/users" }),
      403,
      "forbidden",
    );
    expect(error.message).toBe("GET /api/users needs the role admin; sender-1 is sender");
    expectError(
      await as(tokens.sender!, {
        method: "POST",
        url: "/api/users",
        payload: { username: "x", password: "password-x", role: "admin" },
      }),
      403,
      "forbidden",
    );
  });

  it("applies a role change at the next request, without a new token", async () => {
    const temp = await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "promoted", password: "promoted-pw", role: "viewer" },
    });
    const id = temp.json<{ id: number }>().id;
    const token = await login("promoted", "promoted-pw");
    expectError(await as(token, { method: "GET", url: "/api/users" }), 403, "forbidden");
    const patched = await api.call({ method: "PATCH", url: `/api/users/${id}`, payload: { role: "admin" } });
    expect(patched.statusCode, patched.body).toBe(200);
    expect((await as(token, { method: "GET", url: "/api/users" })).statusCode).toBe(200);
  });

  it("revokes every token of a user that signs out, and only that user's", async () => {
    await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "leaver", password: "leaver-password", role: "sender" },
    });
    const first = await login("leaver", "leaver-password");
    const second = await login("leaver", "leaver-password");
    const out = await as(first, { method: "POST", url: "/api/auth/logout" });
    expect(out.statusCode, out.body).toBe(204);
    for (const token of [first, second]) {
      const error = expectError(
        await as(token, { method: "GET", url: "/api/campaigns" }),
        401,
        "unauthorized",
      );
      expect(error.message).toMatch(/revoked/);
    }
    expect((await as(tokens.sender!, { method: "GET", url: "/api/campaigns" })).statusCode).toBe(200);
    // Signing in again works.
    const again = await login("leaver", "leaver-password");
    expect((await as(again, { method: "GET", url: "/api/campaigns" })).statusCode).toBe(200);
  });

  it("revokes a user's tokens when its password changes, and answers a new one", async () => {
    await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "changer", password: "changer-password", role: "viewer" },
    });
    const old = await login("changer", "changer-password");
    const other = await login("changer", "changer-password");
    const wrong = await as(old, {
      method: "POST",
      url: "/api/auth/password",
      payload: { currentPassword: "nope", newPassword: "changer-password-2" },
    });
    expect(expectError(wrong, 400, "bad_request").message).toBe("body.currentPassword: wrong password");
    const changed = await as(old, {
      method: "POST",
      url: "/api/auth/password",
      payload: { currentPassword: "changer-password", newPassword: "changer-password-2" },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    const fresh = changed.json<{ token: string }>().token;
    for (const token of [old, other]) {
      expectError(await as(token, { method: "GET", url: "/api/campaigns" }), 401, "unauthorized");
    }
    expect((await as(fresh, { method: "GET", url: "/api/campaigns" })).statusCode).toBe(200);
    const refused = await api.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { username: "changer", password: "changer-password" },
    });
    expect(refused.statusCode).toBe(401);

    // An admin setting the password revokes too.
    const byAdmin = await api.call({
      method: "PATCH",
      url: `/api/users/${(await as(fresh, { method: "GET", url: "/api/auth/me" })).json<{ id: number }>().id}`,
      payload: { password: "changer-password-3" },
    });
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
    expectError(await as(fresh, { method: "GET", url: "/api/campaigns" }), 401, "unauthorized");
  });

  it("refuses the token of a deleted user", async () => {
    const created = await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "gone", password: "gone-password", role: "sender" },
    });
    const token = await login("gone", "gone-password");
    const deleted = await api.call({
      method: "DELETE",
      url: `/api/users/${created.json<{ id: number }>().id}`,
    });
    expect(deleted.statusCode, deleted.body).toBe(204);
    expectError(await as(token, { method: "GET", url: "/api/campaigns" }), 401, "unauthorized");
    expectError(await api.call({ method: "DELETE", url: "/api/users/999999" }), 404, "not_found");
  });

  it("keeps the last admin: it can be neither deleted nor demoted", async () => {
    const users = (await api.call({ method: "GET", url: "/api/users" })).json<{
      users: { id: number; username: string; role: string }[];
    }>().users;
    // "promoted" became an admin above: demote it first, so that one admin is left.
    for (const user of users.filter((u) => u.role === "admin" && u.username !== "admin")) {
      expect(
        (await api.call({ method: "PATCH", url: `/api/users/${user.id}`, payload: { role: "sender" } }))
          .statusCode,
      ).toBe(200);
    }
    const adminId = users.find((u) => u.username === "admin")!.id;
    const demote = await api.call({
      method: "PATCH",
      url: `/api/users/${adminId}`,
      payload: { role: "viewer" },
    });
    expect(expectError(demote, 409, "conflict").message).toMatch(/last admin/);
    expectError(await api.call({ method: "DELETE", url: `/api/users/${adminId}` }), 409, "conflict");
  });

  it("refuses bad user input, naming the field", async () => {
    const duplicate = await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "viewer-1", password: "whatever-1", role: "viewer" },
    });
    expect(expectError(duplicate, 409, "conflict").message).toMatch(
      /body.username: a user named viewer-1 exists/,
    );
    const badRole = await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "x2", password: "whatever-1", role: "root" },
    });
    expect(expectError(badRole, 400, "bad_request").message).toMatch(/role/);
    const short = await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "x3", password: "short", role: "viewer" },
    });
    expect(expectError(short, 400, "bad_request").message).toMatch(/password/);
    const unknown = await api.call({
      method: "POST",
      url: "/api/users",
      payload: { username: "x4", password: "whatever-1", role: "viewer", admin: true },
    });
    expect(expectError(unknown, 400, "bad_request").message).toMatch(/admin/);
  });

  it("refuses a token signed before roles, and an expired one", async () => {
    const legacy = api.app.jwt.sign({ sub: "admin" });
    expect(
      expectError(await as(legacy, { method: "GET", url: "/api/campaigns" }), 401, "unauthorized").message,
    ).toMatch(/revoked|login/);
    const shortLived = await buildApp({ ...api.deps, tokenTtlMs: 1_000 });
    try {
      const login = await shortLived.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { username: "viewer-1", password: "viewer-password" },
      });
      expect(login.json()).toMatchObject({ expiresInSeconds: 1, role: "viewer" });
      const token = login.json<{ token: string }>().token;
      const get = () =>
        shortLived.inject({
          method: "GET",
          url: "/api/campaigns",
          headers: { authorization: `Bearer ${token}` },
        });
      expect((await get()).statusCode).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      expectError(await get(), 401, "unauthorized");
    } finally {
      await shortLived.close();
    }
  });
});
