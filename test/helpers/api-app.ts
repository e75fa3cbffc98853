/**
 * The HTTP API in-process over a real embedded store and broker, as test/integration/api.test.ts
 * builds it: PGlite in a temporary directory, BullMQ on it, the `add` example task, a signed-in
 * admin. `small` shares the store with tiny body and upload limits, for the 413 answers.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import { add } from "../../examples/add/tasks.js";
import { buildApp, type AppDeps } from "../../src/api/app.js";
import { openDatabase, type Store } from "../../src/db/open.js";
import { createUserIfMissing } from "../../src/db/users.js";
import { openBroker } from "../../src/queue/connection.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry, type AnyTask } from "../../src/queue/task.js";

export const PASSWORD = "integration-password-1";
export const SMALL_BODY_BYTES = 2048;
export const SMALL_UPLOAD_BYTES = 4096;

export interface ErrorBody {
  error: { code: string; message: string; details: unknown };
}

export interface TestApi {
  app: FastifyInstance;
  small: FastifyInstance;
  store: Extract<Store, { kind: "embedded" }>;
  deps: AppDeps;
  token: string;
  /** A request signed in as admin, to `app` unless another app is given. */
  call(options: InjectOptions, target?: FastifyInstance): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function openTestApi(): Promise<TestApi> {
  const dataDir = mkdtempSync(join(tmpdir(), "lovage-api-"));
  // Closed in reverse order, also when opening fails half-way.
  const closers: (() => Promise<void>)[] = [async () => rmSync(dataDir, { recursive: true, force: true })];
  const close = async () => {
    for (const closer of closers.reverse()) await closer();
  };
  try {
    const store = await openDatabase({ dataDir });
    closers.push(() => store.close());
    const broker = await openBroker({ kind: "embedded", pool: store.pool });
    closers.push(() => broker.close());
    await createUserIfMissing(store.db, "admin", PASSWORD);
    const deps: AppDeps = {
      db: store.db,
      broker,
      producer: createProducer(broker),
      registry: new TaskRegistry().register(add),
      jwtSecret: "an-integration-test-secret-of-at-least-32-chars",
      maxBodyBytes: 10 * 1024 * 1024,
      maxUploadBytes: 100 * 1024 * 1024,
      defaultFrom: "Lovage <no-reply@lovage.test>",
      catcherEnabled: true,
      ping: { database: store.ping, broker: broker.ping },
    };
    const app = await buildApp(deps);
    closers.push(() => app.close());
    const small = await buildApp({
      ...deps,
      maxBodyBytes: SMALL_BODY_BYTES,
      maxUploadBytes: SMALL_UPLOAD_BYTES,
    });
    closers.push(() => small.close());
    const login = await app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { username: "admin", password: PASSWORD },
    });
    expect(login.statusCode, login.body).toBe(200);
    const token = login.json<{ token: string }>().token;
    return {
      app,
      small,
      store,
      deps,
      token,
      call: (options, target = app) =>
        target.inject({ ...options, headers: { authorization: `Bearer ${token}`, ...options.headers } }),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Checks the one error shape of docs/api.md and returns it. */
export function expectError(
  response: LightMyRequestResponse,
  status: number,
  code: string,
): ErrorBody["error"] {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  const body = response.json<ErrorBody>();
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "details", "message"]);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}

export type Part =
  [name: string, value: string] | [name: string, file: { filename: string; content: string | Uint8Array }];

/** A multipart/form-data body with the parts in the given order, as a browser would send it. */
export async function multipart(parts: Part[]): Promise<Pick<InjectOptions, "payload" | "headers">> {
  const form = new FormData();
  for (const [name, value] of parts) {
    if (typeof value === "string") form.append(name, value);
    else form.append(name, new Blob([value.content], { type: "text/plain" }), value.filename);
  }
  const encoded = new Response(form);
  return {
    payload: Buffer.from(await encoded.arrayBuffer()),
    headers: { "content-type": encoded.headers.get("content-type")! },
  };
}

/**
 * The HTTP API in-process on a backend a suite already opened, with the tasks it may send and
 * a signed-in admin: for the suites that run on every backend (tasks, schedules).
 */
export async function openSignedInApp(
  backend: { store: Store; broker: AppDeps["broker"] },
  producer: AppDeps["producer"],
  tasks: AnyTask[],
): Promise<{
  app: FastifyInstance;
  token: string;
  call: (options: InjectOptions) => Promise<LightMyRequestResponse>;
}> {
  await createUserIfMissing(backend.store.db, "admin", PASSWORD);
  const app = await buildApp({
    db: backend.store.db,
    broker: backend.broker,
    producer,
    registry: new TaskRegistry().register(...tasks),
    jwtSecret: "a-test-secret-of-at-least-32-characters-long",
    maxBodyBytes: 1024 * 1024,
    maxUploadBytes: 1024 * 1024,
    defaultFrom: "Lovage <no-reply@lovage.test>",
    catcherEnabled: true,
    ping: { database: backend.store.ping, broker: backend.broker.ping },
  });
  const login = await app.inject({
    method: "POST",
    url: "/api/auth/login",
    payload: { username: "admin", password: PASSWORD },
  });
  const token = login.json<{ token: string }>().token;
  const call = (options: InjectOptions) =>
    app.inject({ ...options, headers: { authorization: `Bearer ${token}`, ...options.headers } });
  return { app, token, call };
}
