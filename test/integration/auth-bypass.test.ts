/**
 * No route answers without a token, however its path is spelt. Every operation of the OpenAPI
 * document is sent without a token in many spellings the router may decode, fold or refuse
 * (percent-encoded letters, doubled slashes, `;` parameters, `..` segments, an encoded `?` or
 * `/`…); each must get 401 (the route matched and refused) or 404 (no route), never the route's
 * answer. The same spellings go through `app.inject()` and over a real socket: inject parses the
 * URL with WHATWG URL, which folds `..` and `%2e%2e` before Fastify sees them, while a client on
 * the wire sends the bytes as written. Then: a route that declares no access stops the server
 * from starting, and the security headers are on pages and API answers.
 *
 * Over a real embedded store and broker (PGlite in a temporary directory), like api.test.ts,
 * with the built dashboard (dist/web) served, so its files and the not-found handler are covered.
 */
import { addSuppressions } from "../../src/db/suppressions.js";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { add } from "../../examples/add/tasks.js";
import { buildApp, type AppDeps } from "../../src/api/app.js";
import { listCaughtMessages, saveCaughtMessage } from "../../src/db/caught-messages.js";
import { openDatabase, type Store } from "../../src/db/open.js";
import { createUserIfMissing } from "../../src/db/users.js";
import { recordHeartbeat } from "../../src/db/workers.js";
import { openBroker, type Broker } from "../../src/queue/connection.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry } from "../../src/queue/task.js";

const PASSWORD = "bypass-test-password-1";
const JWT_SECRET = "an-auth-bypass-test-secret-of-at-least-32-chars";
const WEB_ROOT = fileURLToPath(new URL("../../dist/web", import.meta.url));

/** The routes that take the token as `?token=`: an EventSource or an iframe cannot send headers. */
const TOKEN_IN_QUERY = new Set(["/api/events", "/api/messages/{id}/html"]);

type Method = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

interface Operation {
  method: Method;
  /** The OpenAPI path, `/api/campaigns/{id}`. */
  template: string;
  /** The path with its parameters filled with values that exist. */
  path: string;
  /** Whether the document says it needs no token (`security: []`). */
  public: boolean;
}

interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

/** Every way of writing `path` that a router might read as the same route, or trip over. */
function spellings(path: string): string[] {
  const segments = path.split("/").slice(1);
  const join = (parts: string[]) => `/${parts.join("/")}`;
  const withSegment = (i: number, value: string) => join(segments.map((s, k) => (k === i ? value : s)));
  const inserted = (i: number, ...extra: string[]) =>
    join([...segments.slice(0, i), ...extra, ...segments.slice(i)]);
  const hex = (char: string) => char.charCodeAt(0).toString(16).padStart(2, "0");
  const out = new Set<string>([path]);

  segments.forEach((segment, i) => {
    [...segment].forEach((char, j) => {
      for (const code of [hex(char).toLowerCase(), hex(char).toUpperCase()]) {
        out.add(withSegment(i, `${segment.slice(0, j)}%${code}${segment.slice(j + 1)}`));
      }
      // Encoded twice: a router that decodes twice would read the letter.
      out.add(withSegment(i, `${segment.slice(0, j)}%25${hex(char)}${segment.slice(j + 1)}`));
    });
    out.add(withSegment(i, [...segment].map((c) => `%${hex(c).toUpperCase()}`).join("")));
    out.add(withSegment(i, segment.toUpperCase()));
    out.add(withSegment(i, segment.charAt(0).toUpperCase() + segment.slice(1)));
    out.add(withSegment(i, `${segment};`));
    out.add(withSegment(i, `${segment};x=1`));
    out.add(withSegment(i, `${segment}%3F`));
    out.add(withSegment(i, `${segment}%3fx=1`));
    out.add(withSegment(i, `${segment}%00`));
    out.add(withSegment(i, `${segment}%2F`));
    out.add(withSegment(i, `${segment}.`));
    out.add(inserted(i, "x", ".."));
    out.add(inserted(i, "x", "%2e%2e"));
    out.add(inserted(i, "x", "%2E%2E"));
    out.add(inserted(i, "."));
    out.add(inserted(i, "%2e"));
    out.add(inserted(i, ""));
  });
  for (let i = 1; i < segments.length; i += 1) {
    for (const separator of ["%2F", "%2f", "\\", "%5C", "/./", "//"]) {
      out.add(`/${segments.slice(0, i).join("/")}${separator}${segments.slice(i).join("/")}`);
    }
  }
  out.add(`/${path}`);
  out.add(`${path}/`);
  out.add(`${path}//`);
  out.add(`${path}/.`);
  out.add(`${path}/..`);
  out.add(path.toUpperCase());
  out.add(`/x/..${path}`);
  out.add(`/x/%2e%2e${path}`);
  out.add(`/x%2F..${path}`);
  out.add(`${path}?`);
  out.add(`${path}?x=1`);
  out.add(`${path}#x`);
  return [...out];
}

/** The spellings that name the route exactly: a route that matched must refuse them with 401. */
function isExact(spelling: string, path: string): boolean {
  return spelling === path || spelling === `${path}?` || spelling === `${path}?x=1`;
}

/** A valid body for each operation, so that a request let through would do its work, visibly. */
function bodyFor(operation: Operation): unknown {
  if (operation.method !== "POST") return undefined;
  if (operation.template === "/api/campaigns")
    return { subject: "Bypass", text: "Hi", recipients: "bypass@example.com" };
  if (operation.template === "/api/tasks/{name}") return { input: { a: 1, b: 2 } };
  if (operation.template === "/api/queues/{name}/clean")
    return { state: "completed", olderThanMs: 3_600_000 };
  if (operation.template === "/api/auth/login") return { username: "admin", password: "not-the-password" };
  return {};
}

describe("authorization by the matched route", () => {
  let dataDir: string;
  let store: Extract<Store, { kind: "embedded" }>;
  let broker: Broker;
  let deps: AppDeps;
  let app: FastifyInstance;
  let address: URL;
  let token: string;
  let operations: Operation[];
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });

  beforeAll(async () => {
    // The dashboard's files are part of what must be covered; they come from `npm run build`.
    expect(existsSync(join(WEB_ROOT, "index.html")), `${WEB_ROOT} is missing: run npm run build`).toBe(true);
    dataDir = mkdtempSync(join(tmpdir(), "lovage-bypass-"));
    store = await openDatabase({ dataDir });
    broker = await openBroker({ kind: "embedded", pool: store.pool });
    await createUserIfMissing(store.db, "admin", PASSWORD);
    const producer = createProducer(broker);
    deps = {
      db: store.db,
      broker,
      producer,
      registry: new TaskRegistry().register(add),
      jwtSecret: JWT_SECRET,
      maxBodyBytes: 1024 * 1024,
      maxUploadBytes: 1024 * 1024,
      defaultFrom: "Lovage <no-reply@lovage.test>",
      catcherEnabled: true,
      ping: { database: store.ping, broker: broker.ping },
      webRoot: WEB_ROOT,
      // The fixture worker below beats once: it must stay listed for the whole file.
      workerTimeoutMs: 3_600_000,
    };
    app = await buildApp(deps);
    address = new URL(await app.listen({ host: "127.0.0.1", port: 0 }));

    const login = await app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { username: "admin", password: PASSWORD },
    });
    expect(login.statusCode, login.body).toBe(200);
    token = login.json<{ token: string }>().token;

    // Parameters that exist, so that a request let through would answer 2xx, not 404.
    const created = await app.inject({
      method: "POST",
      url: "/api/campaigns",
      headers: { authorization: `Bearer ${token}` },
      payload: {
        subject: "Fixture",
        text: "Hi",
        recipients: "fixture@example.com",
        sendAt: new Date(Date.now() + 86_400_000).toISOString(),
      },
    });
    expect(created.statusCode, created.body).toBe(202);
    const campaignId = created.json<{ campaign: { id: number } }>().campaign.id;
    await saveCaughtMessage(store.db, {
      receivedAt: new Date(),
      envelopeFrom: "a@example.com",
      envelopeTo: ["b@example.com"],
      messageId: "<fixture@lovage.test>",
      subject: "Fixture",
      from: "a@example.com",
      to: ["b@example.com"],
      text: "Hi",
      html: '<p style="color: red">Hi</p>',
      headers: {},
      sizeBytes: 2,
    });
    const [message] = await listCaughtMessages(store.db, 1);
    const schedule = await app.inject({
      method: "POST",
      url: "/api/schedules",
      headers: { authorization: `Bearer ${token}` },
      payload: { id: "fixture", task: "add", cron: "0 3 * * *", input: { a: 1, b: 2 }, enabled: false },
    });
    expect(schedule.statusCode, schedule.body).toBe(201);
    const job = await producer.send(add, { a: 1, b: 2 });
    const worker = {
      id: "fixture-host:1:abc",
      host: "fixture-host",
      pid: 1,
      queues: ["default"],
      concurrency: 1,
      startedAt: new Date(),
      processed: 0,
      failed: 0,
      active: 0,
      watchdogRestarts: 0,
      lastJobAt: null,
      running: [],
    };
    await recordHeartbeat(store.db, worker);
    await addSuppressions(store.db, [{ email: "someone@example.com", reason: "manual" }]);
    const values: Record<string, string> = {
      "/api/queues/{name}": "default",
      "/api/workers/{id}": worker.id,
      "/api/campaigns/{id}": String(campaignId),
      "/api/messages/{id}": String(message!.id),
      "/api/schedules/{id}": "fixture",
      "/api/tasks/{id}": job.id,
      "/api/tasks/{name}": "add",
      "/api/users/{id}": "1",
      "/api/suppressions/{email}": "someone@example.com",
    };

    const document = app.swagger() as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
      security?: unknown[];
    };
    operations = Object.entries(document.paths).flatMap(([template, methods]) =>
      Object.entries(methods).flatMap(([method, op]) => {
        const prefix = Object.keys(values).find((p) => template.startsWith(p));
        const path = template.replace(/\{(\w+)\}/g, (_, name: string) => {
          if (!prefix) throw new Error(`no value for {${name}} in ${template}: add one to the test`);
          return values[prefix]!;
        });
        const isPublic = (op.security ?? document.security ?? []).length === 0;
        const upper = method.toUpperCase() as Method;
        const operation = { method: upper, template, path, public: isPublic };
        return upper === "GET" ? [operation, { ...operation, method: "HEAD" as const }] : [operation];
      }),
    );
  }, 120_000);

  afterAll(async () => {
    agent.destroy();
    await app?.close();
    await broker?.close();
    await store?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** Sends the path's bytes as written, and reads the answer's head (a stream is then hung up). */
  function wire(method: Method, path: string, body: unknown, headers: Record<string, string> = {}) {
    return new Promise<Answer>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = httpRequest(
        {
          host: address.hostname,
          port: address.port,
          method,
          path,
          agent,
          headers: payload ? { "content-type": "application/json", ...headers } : headers,
        },
        (res) => {
          const answer = { status: res.statusCode!, headers: res.headers, body: "" };
          if (String(res.headers["content-type"]).startsWith("text/event-stream")) {
            res.destroy();
            return resolve(answer);
          }
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => (answer.body += chunk));
          res.on("end", () => resolve(answer));
          res.on("error", reject);
        },
      );
      // Refusals are immediate; a request let through to the events stream may never answer.
      req.setTimeout(3_000, () => {
        req.destroy();
        resolve({ status: 0, headers: {}, body: "no answer in 3 s" });
      });
      req.on("error", (error) => (req.destroyed ? undefined : reject(error)));
      req.end(payload);
    });
  }

  async function inject(method: Method, path: string, body: unknown, headers: Record<string, string> = {}) {
    const response = await app.inject({ method, url: path, payload: body as object | undefined, headers });
    return { status: response.statusCode, headers: response.headers, body: response.body };
  }

  /** What is wrong with an answer to a request without a valid token, or null. */
  function refusal(operation: Operation, spelling: string, answer: Answer): string | null {
    if (answer.status === 0) return "no answer: let through to a stream?";
    if (answer.status >= 500) return "a server error";
    if (operation.public) return null;
    if (isExact(spelling, operation.path)) return answer.status === 401 ? null : "not 401";
    if (answer.status === 401 || answer.status === 404) return null;
    // The router refuses a malformed escape (`%00` is fine, `%zz` is not) before any route.
    if (answer.status === 400 && answer.body.includes("FST_ERR_BAD_URL")) return null;
    // A NUL anywhere in the path is refused as bad input before any route runs (src/api/input.ts);
    // a HEAD answer has no body to say so.
    if (
      answer.status === 400 &&
      spelling.includes("%00") &&
      (answer.body === "" || answer.body.includes("NUL"))
    )
      return null;
    return "neither 401 nor 404";
  }

  it("finds every API route in the OpenAPI document, and only the login needs no token", () => {
    const routes = operations.map((o) => `${o.method} ${o.template}`);
    expect(routes).toEqual(
      expect.arrayContaining([
        "POST /api/auth/login",
        "POST /api/campaigns",
        "GET /api/campaigns/{id}",
        "POST /api/tasks/{name}",
        "GET /api/tasks/{id}",
        "GET /api/events",
        "GET /api/messages/{id}",
      ]),
    );
    // SNS cannot send a token: the SES webhook's proof is the SNS signature (or its ?secret=).
    expect(operations.filter((o) => o.public).map((o) => `${o.method} ${o.template}`)).toEqual([
      "POST /api/auth/login",
      "POST /api/webhooks/ses",
    ]);
  });

  it("answers each route's own path when signed in, so the values below reach the handler", async () => {
    const unreached: string[] = [];
    // HEAD on the events stream is left out: its head is never flushed, as nothing is written.
    // Signing out is left out: it would revoke the token the other tests use (roles.test.ts).
    const reachable = operations.filter(
      (o) => !o.public && o.method !== "HEAD" && o.template !== "/api/auth/logout",
    );
    for (const operation of reachable) {
      const answer = await wire(operation.method, operation.path, bodyFor(operation), {
        authorization: `Bearer ${token}`,
      });
      // 409 is a pause on a campaign that is not sending: the handler ran.
      if (answer.status === 401 || answer.status === 404 || answer.status >= 500)
        unreached.push(`${operation.method} ${operation.path} → ${answer.status} ${answer.body}`);
    }
    expect(unreached).toEqual([]);
  });

  it("answers 401 or 404 to every route in every spelling without a token, never the route's answer", async () => {
    const wrong: string[] = [];
    let sent = 0;
    for (const operation of operations) {
      for (const spelling of spellings(operation.path)) {
        const body = bodyFor(operation);
        const transports: [string, (m: Method, p: string, b: unknown) => Promise<Answer>][] = [
          ["wire", wire],
        ];
        // inject waits for the end of the answer, and a stream let through never ends.
        if (operation.template !== "/api/events") transports.push(["inject", inject]);
        for (const [name, send] of transports) {
          const answer = await send(operation.method, spelling, body);
          sent += 1;
          const problem = refusal(operation, spelling, answer);
          if (problem) wrong.push(`${name}: ${operation.method} ${spelling} → ${answer.status} (${problem})`);
        }
      }
    }
    expect(sent).toBeGreaterThan(2000);
    expect(wrong).toEqual([]);
  }, 300_000);

  it("refuses a token in ?token= on every route but those that declare it", async () => {
    const wrong: string[] = [];
    for (const operation of operations.filter((o) => !o.public && !TOKEN_IN_QUERY.has(o.template))) {
      for (const query of [`?token=${token}`, `?%74oken=${token}`, `?token=${token}&token=${token}`]) {
        const answer = await wire(operation.method, operation.path + query, bodyFor(operation));
        if (answer.status !== 401)
          wrong.push(`${operation.method} ${operation.path}${query} → ${answer.status}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("takes the token in ?token= where declared, and refuses a bad one there", async () => {
    for (const template of TOKEN_IN_QUERY) {
      const operation = operations.find((o) => o.method === "GET" && o.template === template)!;
      expect((await wire("GET", `${operation.path}?token=${token}`, undefined)).status).toBe(200);
      expect((await wire("GET", `${operation.path}?token=${token}x`, undefined)).status).toBe(401);
    }
  });

  it("serves the health checks, metrics, API docs and dashboard files without a token", async () => {
    const assets = readdirSync(join(WEB_ROOT, "assets")).map((file) => `/assets/${file}`);
    for (const path of ["/healthz", "/readyz", "/metrics", "/api/docs", "/api/docs/json", "/", ...assets]) {
      const answer = await wire("GET", path, undefined);
      expect(answer.status, `GET ${path}`).toBe(200);
    }
  });

  it("refuses to start with a route that declares no access, naming its method and path", async () => {
    const fresh = await buildApp(deps);
    try {
      expect(() => fresh.get("/api/undeclared", async () => "let through")).toThrow(/GET \/api\/undeclared/);
      expect(() =>
        fresh.route({
          method: ["GET", "POST"],
          url: "/api/undeclared-too",
          config: {},
          handler: async () => "let through",
        }),
      ).toThrow(/GET,POST \/api\/undeclared-too/);
      // A plugin's route is held to the same rule.
      void fresh.register(async (scope) => {
        scope.post("/api/from-a-plugin", async () => "let through");
      });
      await expect(fresh.ready()).rejects.toThrow(/POST \/api\/from-a-plugin/);
    } finally {
      await fresh.close().catch(() => undefined);
    }
  });

  it("refuses to start with an access it does not know, naming it", async () => {
    const fresh = await buildApp(deps);
    try {
      for (const access of ["everyone", { signedIn: true, roles: ["admin"] }, { tokenInQuery: true }, null]) {
        expect(
          () =>
            fresh.get(
              "/api/odd",
              // Deliberately outside the type: a JavaScript caller or a typo gets the same check.
              { config: { access: access as never } },
              async () => "let through",
            ),
          JSON.stringify(access),
        ).toThrow(/GET \/api\/odd: access must be/);
      }
    } finally {
      await fresh.close().catch(() => undefined);
    }
  });

  describe("security headers", () => {
    function expectCommonHeaders(answer: Answer, what: string) {
      expect(answer.headers["x-content-type-options"], what).toBe("nosniff");
      expect(answer.headers["x-frame-options"], what).toBe("DENY");
      expect(answer.headers["referrer-policy"], what).toBe("no-referrer");
      const csp = String(answer.headers["content-security-policy"]);
      expect(csp, what).toContain("frame-ancestors 'none'");
      expect(csp, what).toMatch(/(^|;)\s*default-src 'self'/);
    }

    /** The CSP's directives by name. */
    function directives(answer: Answer): Map<string, string[]> {
      const csp = String(answer.headers["content-security-policy"]);
      return new Map(
        csp
          .split(";")
          .map((d) => d.trim().split(/\s+/))
          .filter((d) => d[0])
          .map(([name, ...values]) => [name!, values]),
      );
    }

    it("puts a strict CSP on the dashboard: scripts and styles from the server only", async () => {
      const page = await wire("GET", "/", undefined);
      expect(page.status).toBe(200);
      expect(page.headers["content-type"]).toMatch(/^text\/html/);
      expectCommonHeaders(page, "GET /");
      const csp = directives(page);
      expect(csp.get("script-src")).toEqual(["'self'"]);
      expect(csp.get("style-src")).toEqual(["'self'"]);
      expect(csp.get("object-src")).toEqual(["'none'"]);
      expect(csp.get("base-uri")).toEqual(["'none'"]);
      expect(csp.has("upgrade-insecure-requests")).toBe(false);
    });

    it("builds a dashboard page with nothing inline that the CSP would refuse", () => {
      const html = readFileSync(join(WEB_ROOT, "index.html"), "utf8");
      const scripts = [...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
      expect(scripts.length).toBeGreaterThan(0);
      for (const tag of scripts) expect(tag).toMatch(/\ssrc="\/assets\//);
      expect(html).not.toMatch(/<style\b/i);
      expect(html).not.toMatch(/\sstyle=/i);
      expect(html).not.toMatch(/\son[a-z]+=/i);
    });

    it("puts the headers on API answers, refused or not, and on the dashboard's files", async () => {
      expectCommonHeaders(await wire("GET", "/api/campaigns", undefined), "401 GET /api/campaigns");
      const signedIn = await wire("GET", "/api/campaigns", undefined, { authorization: `Bearer ${token}` });
      expect(signedIn.status).toBe(200);
      expectCommonHeaders(signedIn, "200 GET /api/campaigns");
      expectCommonHeaders(await wire("GET", "/api/nosuch", undefined), "404 GET /api/nosuch");
      expectCommonHeaders(await wire("GET", "/healthz", undefined), "GET /healthz");
      const [asset] = readdirSync(join(WEB_ROOT, "assets"));
      expectCommonHeaders(await wire("GET", `/assets/${asset}`, undefined), `GET /assets/${asset}`);
    });

    it("serves a caught message's HTML under a policy of its own: its styles, no script, framed only here", async () => {
      const operation = operations.find((o) => o.template === "/api/messages/{id}/html")!;
      const answer = await wire("GET", `${operation.path}?token=${token}`, undefined);
      expect(answer.status).toBe(200);
      expect(answer.body).toBe('<p style="color: red">Hi</p>');
      expect(answer.headers["content-type"]).toMatch(/^text\/html/);
      expect(answer.headers["x-frame-options"]).toBe("SAMEORIGIN");
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      const csp = directives(answer);
      expect(csp.get("default-src")).toEqual(["'none'"]);
      expect(csp.get("style-src")).toEqual(["'unsafe-inline'"]);
      expect(csp.has("sandbox")).toBe(true);
      expect(csp.has("script-src")).toBe(false);
      expect(csp.get("frame-ancestors")).toEqual(["'self'"]);
    });

    it("gives the API docs their own CSP, still unframeable, without inline scripts", async () => {
      const docs = await wire("GET", "/api/docs", undefined);
      expect(docs.status).toBe(200);
      expectCommonHeaders(docs, "GET /api/docs");
      expect(directives(docs).get("script-src")).toEqual(["'self'"]);
      const dashboard = directives(await wire("GET", "/", undefined));
      expect(dashboard.get("style-src")).toEqual(["'self'"]);
    });
  });
});
