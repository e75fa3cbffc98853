/**
 * The HTTP API in-process (`buildApp` + `app.inject()`) over a real embedded store and broker:
 * PGlite in a temporary directory, BullMQ on it, the `add` example task. One store for the
 * file, because PGlite takes seconds to start; every test creates the campaigns it reads.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { add } from "../../examples/add/tasks.js";
import { buildApp, type AppDeps } from "../../src/api/app.js";
import { openDatabase, type Store } from "../../src/db/open.js";
import { createUserIfMissing } from "../../src/db/users.js";
import { openBroker, type Broker } from "../../src/queue/connection.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { waitFor } from "../helpers/lovage-process.js";

const PASSWORD = "integration-password-1";
const JWT_SECRET = "an-integration-test-secret-of-at-least-32-chars";
const SMALL_BODY_BYTES = 2048;
const SMALL_UPLOAD_BYTES = 4096;

interface ErrorBody {
  error: { code: string; message: string; details: unknown };
}
interface Rejected {
  line: number;
  value: string;
  reason: string;
}
interface CampaignView {
  id: number;
  name: string;
  subject: string;
  text: string | null;
  status: string;
  statusReason: string | null;
  total: number;
  counts: Record<string, number>;
  servers: string[] | null;
  errorBudget: { share: number; window: number; minimum: number } | false | null;
}
interface Created {
  campaign: CampaignView;
  accepted: number;
  rejected: Rejected[];
  rejectedCount: number;
}
interface RecipientView {
  id: number;
  campaignId: number;
  line: number;
  email: string;
  fields: Record<string, string>;
  status: string;
}
interface RecipientPage {
  recipients: RecipientView[];
  nextCursor: string | null;
}

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** Checks the one error shape of docs/api.md and returns it. */
function expectError(response: LightMyRequestResponse, status: number, code: string): ErrorBody["error"] {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  const body = response.json<ErrorBody>();
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "details", "message"]);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}

type Part = [name: string, value: string] | [name: string, file: { filename: string; content: string }];

/** A multipart/form-data body with the parts in the given order, as a browser would send it. */
async function multipart(parts: Part[]): Promise<Pick<InjectOptions, "payload" | "headers">> {
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

describe("the HTTP API", () => {
  let dataDir: string;
  let store: Extract<Store, { kind: "embedded" }>;
  let broker: Broker;
  let deps: AppDeps;
  let app: FastifyInstance;
  let smallApp: FastifyInstance;
  let worker: RunningWorker | undefined;
  let token: string;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lovage-api-"));
    store = await openDatabase({ dataDir });
    broker = await openBroker({ kind: "embedded", pool: store.pool });
    await createUserIfMissing(store.db, "admin", PASSWORD);
    deps = {
      db: store.db,
      broker,
      producer: createProducer(broker),
      registry: new TaskRegistry().register(add),
      jwtSecret: JWT_SECRET,
      maxBodyBytes: 10 * 1024 * 1024,
      maxUploadBytes: 100 * 1024 * 1024,
      defaultFrom: "Lovage <no-reply@lovage.test>",
      catcherEnabled: true,
      smtpServerNames: () => ["relay-a", "relay-b"],
      ping: { database: store.ping, broker: broker.ping },
    };
    app = await buildApp(deps);
    // Same store and secret, small limits: for the 413 answers.
    smallApp = await buildApp({
      ...deps,
      maxBodyBytes: SMALL_BODY_BYTES,
      maxUploadBytes: SMALL_UPLOAD_BYTES,
    });
    const login = await app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { username: "admin", password: PASSWORD },
    });
    expect(login.statusCode, login.body).toBe(200);
    token = login.json<{ token: string }>().token;
  }, 120_000);

  afterAll(async () => {
    await worker?.close({ timeoutMs: 5_000 });
    await smallApp?.close();
    await app?.close();
    await broker?.close();
    await store?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  function call(options: InjectOptions, target = app) {
    return target.inject({
      ...options,
      headers: { authorization: `Bearer ${token}`, ...options.headers },
    });
  }

  async function createCampaign(body: Record<string, unknown>): Promise<Created> {
    const response = await call({ method: "POST", url: "/api/campaigns", payload: body });
    expect(response.statusCode, response.body).toBe(202);
    return response.json<Created>();
  }

  async function campaignCount(): Promise<number> {
    const response = await call({ method: "GET", url: "/api/campaigns?limit=500" });
    return response.json<{ campaigns: CampaignView[] }>().campaigns.length;
  }

  async function recipientsOf(id: number, query = ""): Promise<RecipientPage> {
    const response = await call({ method: "GET", url: `/api/campaigns/${id}/recipients${query}` });
    expect(response.statusCode, response.body).toBe(200);
    return response.json<RecipientPage>();
  }

  describe("authentication", () => {
    it("gives a token for the right password", async () => {
      const response = await app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { username: "admin", password: PASSWORD },
      });
      expect(response.statusCode).toBe(200);
      const body = response.json<{ token: string }>();
      expect(Object.keys(body).sort()).toEqual(["expiresInSeconds", "role", "token"]);
      expect(body.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    });

    it("answers 401 with the error shape for a wrong password or an unknown user", async () => {
      for (const payload of [
        { username: "admin", password: "wrong-password" },
        { username: "nobody", password: PASSWORD },
      ]) {
        const response = await app.inject({ method: "POST", url: "/api/auth/login", payload });
        const error = expectError(response, 401, "unauthorized");
        expect(error.message).toBe("wrong username or password");
        expect(error.details).toBeNull();
      }
    });

    it("answers 400 naming the field when the password is missing", async () => {
      const response = await app.inject({
        method: "POST",
        url: "/api/auth/login",
        payload: { username: "admin" },
      });
      const error = expectError(response, 400, "bad_request");
      expect(error.message).toContain("password");
    });

    const protectedRoutes: [method: "GET" | "POST", url: string][] = [
      ["GET", "/api/campaigns"],
      ["GET", "/api/campaigns/1"],
      ["POST", "/api/campaigns"],
      ["GET", "/api/emails"],
      ["GET", "/api/tasks/x:y"],
      ["POST", "/api/tasks/add"],
      ["GET", "/api/queues"],
      ["GET", "/api/messages"],
      ["GET", "/api/events"],
    ];

    it.each(protectedRoutes)(
      "answers 401 to %s %s without a token or with a bad one",
      async (method, url) => {
        const payload = method === "POST" ? {} : undefined;
        const anonymous = await app.inject({ method, url, payload });
        const error = expectError(anonymous, 401, "unauthorized");
        expect(error.message).toContain("bearer token");

        const forged = await app.inject({
          method,
          url,
          payload,
          headers: { authorization: "Bearer not.a.token" },
        });
        expectError(forged, 401, "unauthorized");
      },
    );

    it("accepts the token in ?token= on the events stream only", async () => {
      await createCampaign({ subject: "Events", text: "Hi", recipients: "events@example.com" });

      expectError(await app.inject({ method: "GET", url: "/api/events?token=bad" }), 401, "unauthorized");
      expectError(
        await app.inject({ method: "GET", url: `/api/campaigns?token=${token}` }),
        401,
        "unauthorized",
      );

      // The stream never ends, so it is read over a real socket and then hung up.
      const address = await app.listen({ host: "127.0.0.1", port: 0 });
      const abort = new AbortController();
      try {
        const response = await fetch(`${address}/api/events?token=${encodeURIComponent(token)}`, {
          signal: abort.signal,
        });
        expect(response.status).toBe(200);
        expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
        const reader = response.body!.getReader();
        const decoder = new TextDecoder();
        let received = "";
        await waitFor(
          async () => {
            const { value, done } = (await reader.read()) as { value?: Uint8Array; done: boolean };
            if (value) received += decoder.decode(value, { stream: true });
            return done || received.includes("event: campaign\ndata: {");
          },
          { message: "an event: campaign on the stream", timeoutMs: 15_000, intervalMs: 0 },
        );
        expect(received).toContain("event: campaign\ndata: {");
      } finally {
        abort.abort();
      }
    });

    it("serves the API documentation without a token", async () => {
      const page = await app.inject({ method: "GET", url: "/api/docs" });
      expect(page.statusCode).toBe(200);
      expect(page.headers["content-type"]).toMatch(/text\/html/);

      const spec = await app.inject({ method: "GET", url: "/api/docs/json" });
      expect(spec.statusCode).toBe(200);
      const document = spec.json<{ openapi: string; paths: Record<string, unknown> }>();
      expect(document.openapi).toMatch(/^3\./);
      expect(Object.keys(document.paths)).toEqual(
        expect.arrayContaining(["/api/campaigns", "/api/tasks/{name}", "/api/auth/login"]),
      );
    });

    it("answers 404 with the error shape for an unknown API route", async () => {
      const error = expectError(await call({ method: "GET", url: "/api/nosuch" }), 404, "not_found");
      expect(error.message).toContain("/api/nosuch");
    });
  });

  describe("creating campaigns", () => {
    it("accepts 1,000 pasted addresses and rejects 10 malformed lines and 5 duplicates by line", async () => {
      const malformed = new Map<number, { value: string; reason: string | RegExp }>([
        [5, { value: "bob@", reason: "missing domain" }],
        [50, { value: "no-at-sign.example.com", reason: "missing @" }],
        [100, { value: "@example.com", reason: "missing local part" }],
        [200, { value: "a@b@example.com", reason: "more than one @" }],
        [300, { value: "carol@localhost", reason: "domain needs a dot, like localhost.com" }],
        [400, { value: "dave@example..com", reason: /^invalid domain label: empty/ }],
        [500, { value: "eve@192.168.0.1", reason: /cannot be all digits/ }],
        [600, { value: ".frank@example.com", reason: "local part cannot start or end with a dot" }],
        [700, { value: "gr..ace@example.com", reason: "local part has two dots in a row" }],
        [900, { value: "Ivan <ivan@example.com", reason: /^missing ">" after the address/ }],
      ]);
      // Line → the earlier line it repeats, written differently each time.
      const duplicates = new Map<number, number>([
        [10, 1],
        [20, 2],
        [1003, 3],
        [1008, 999],
        [1015, 1010],
      ]);
      const lines: string[] = [];
      let next = 1;
      for (let line = 1; line <= 1015; line++) {
        const bad = malformed.get(line);
        const firstLine = duplicates.get(line);
        if (bad) lines.push(bad.value);
        else if (firstLine !== undefined) {
          const original = lines[firstLine - 1]!;
          lines.push(line % 2 === 0 ? original.toUpperCase() : `Someone Else <${original}>`);
        } else lines.push(`user${next++}@example.com`);
      }

      const created = await createCampaign({
        subject: "Hello {{name}}",
        text: "Hi {{email}}",
        recipients: lines.join("\n"),
      });

      expect(created.accepted).toBe(1000);
      expect(created.rejectedCount).toBe(15);
      expect(created.rejected.map((r) => r.line)).toEqual(
        [...malformed.keys(), ...duplicates.keys()].sort((a, b) => a - b),
      );
      for (const rejected of created.rejected) {
        const bad = malformed.get(rejected.line);
        if (bad) {
          expect(rejected.value).toBe(bad.value);
          if (typeof bad.reason === "string") expect(rejected.reason).toBe(bad.reason);
          else expect(rejected.reason).toMatch(bad.reason);
        } else {
          const firstLine = duplicates.get(rejected.line)!;
          expect(rejected.reason).toBe(`duplicate of line ${firstLine}`);
          expect(rejected.value).toBe(lines[firstLine - 1]);
        }
      }
      expect(created.campaign).toMatchObject({
        subject: "Hello {{name}}",
        name: "Hello {{name}}",
        status: "sending",
        total: 1000,
        counts: { pending: 1000, queued: 0, sending: 0, sent: 0, failed: 0, skipped: 0, unknown: 0 },
      });
    });

    it("takes a CSV upload with a header and fills {{company}} from its column", async () => {
      const csv = [
        "email,name,company",
        "lan@example.vn,Nguyễn Thị Lan,Công ty Sao Mai",
        "hung@example.vn,Trần Văn Hùng,Hoa Sen Group",
        "ana@example.com,Ana Silva,Acme",
      ].join("\n");
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "News for {{company}}"],
          ["text", "Xin chào {{name}} ({{company}})"],
          ["file", { filename: "list.csv", content: csv }],
        ])),
      });
      expect(response.statusCode, response.body).toBe(202);
      const created = response.json<Created>();
      expect(created).toMatchObject({ accepted: 3, rejected: [], rejectedCount: 0 });
      expect(created.campaign.text).toBe("Xin chào {{name}} ({{company}})");

      const { recipients } = await recipientsOf(created.campaign.id);
      expect(recipients.map((r) => [r.line, r.email, r.fields])).toEqual([
        [2, "lan@example.vn", { name: "Nguyễn Thị Lan", company: "Công ty Sao Mai" }],
        [3, "hung@example.vn", { name: "Trần Văn Hùng", company: "Hoa Sen Group" }],
        [4, "ana@example.com", { name: "Ana Silva", company: "Acme" }],
      ]);
    });

    it("takes a multipart upload whose text fields come after the file", async () => {
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["file", { filename: "list.csv", content: "email,company\nlate@example.com,Late Ltd\n" }],
          ["subject", "Fields after the file"],
          ["text", "Dear {{company}}"],
          ["name", "After-file campaign"],
        ])),
      });
      expect(response.statusCode, response.body).toBe(202);
      const created = response.json<Created>();
      expect(created.accepted).toBe(1);
      expect(created.campaign).toMatchObject({
        name: "After-file campaign",
        subject: "Fields after the file",
      });
      const { recipients } = await recipientsOf(created.campaign.id);
      expect(recipients[0]?.fields).toEqual({ company: "Late Ltd" });
    });

    it("takes a TXT upload with one recipient per line and reports its bad line", async () => {
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "Plain list"],
          ["text", "Hello {{name}}"],
          [
            "file",
            { filename: "list.txt", content: "one@example.com\nTwo Person <two@example.com>\n\nthree@\n" },
          ],
        ])),
      });
      expect(response.statusCode, response.body).toBe(202);
      const created = response.json<Created>();
      expect(created.accepted).toBe(2);
      expect(created.rejected).toEqual([{ line: 4, value: "three@", reason: "missing domain" }]);
      const { recipients } = await recipientsOf(created.campaign.id);
      expect(recipients.map((r) => [r.email, r.fields.name])).toEqual([
        ["one@example.com", undefined],
        ["two@example.com", "Two Person"],
      ]);
    });

    it("refuses a CSV without an email column with 400 naming the columns it found, and stores nothing", async () => {
      const before = await campaignCount();
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "No email column"],
          ["text", "Hello"],
          ["file", { filename: "list.csv", content: "name,mail\nBob,bob@example.com\n" }],
        ])),
      });
      const error = expectError(response, 400, "bad_request");
      expect(error.message).toMatch(/^recipients: CSV header has no "email" column \(found: name, mail\)/);
      expect(await campaignCount()).toBe(before);
    });

    it("refuses an unknown placeholder, naming it, and stores nothing", async () => {
      const before = await campaignCount();
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "Typo"],
          ["text", "Dear {{compny}}"],
          ["file", { filename: "list.csv", content: "email,company\ntypo-check@example.com,Acme\n" }],
        ])),
      });
      const error = expectError(response, 400, "bad_request");
      expect(error.message).toContain("{{compny}}");
      expect(error.details).toEqual({ placeholders: ["compny"] });

      expect(await campaignCount()).toBe(before);
      const search = await call({ method: "GET", url: "/api/emails?q=typo-check" });
      expect(search.json<RecipientPage>().recipients).toEqual([]);
    });

    it("refuses a list with no valid recipient and lists every rejected line in details", async () => {
      const before = await campaignCount();
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        payload: { subject: "Nobody", text: "Hi", recipients: "bob@\n\nnot-an-address" },
      });
      const error = expectError(response, 400, "bad_request");
      expect(error.message).toMatch(/no valid recipient/);
      expect(error.details).toEqual({
        rejected: [
          { line: 1, value: "bob@", reason: "missing domain" },
          { line: 3, value: "not-an-address", reason: "missing @" },
        ],
        rejectedCount: 2,
      });
      expect(await campaignCount()).toBe(before);
    });

    it("refuses a campaign without a subject, naming the field", async () => {
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        payload: { text: "Hi", recipients: ["someone@example.com"] },
      });
      const error = expectError(response, 400, "bad_request");
      expect(error.message).toContain("subject");
      expect(error.details).toEqual([{ field: "subject", reason: "is required" }]);
    });

    it("keeps the SMTP servers and the error budget a campaign names, as JSON and as multipart fields", async () => {
      const json = await createCampaign({
        subject: "Through relay-b",
        text: "Hi",
        servers: ["relay-b"],
        errorBudget: { share: 0.05, window: 100, minimum: 20 },
        recipients: ["b1@example.com"],
      });
      expect(json.campaign).toMatchObject({
        servers: ["relay-b"],
        errorBudget: { share: 0.05, window: 100, minimum: 20 },
      });
      const read = await call({ method: "GET", url: `/api/campaigns/${json.campaign.id}` });
      expect(read.json<CampaignView>()).toMatchObject({
        servers: ["relay-b"],
        errorBudget: { share: 0.05, window: 100, minimum: 20 },
      });

      const form = await call({
        method: "POST",
        url: "/api/campaigns",
        ...(await multipart([
          ["subject", "Through either"],
          ["text", "Hi"],
          ["servers", "relay-a, relay-b"],
          ["errorBudget", "off"],
          ["recipients", "f1@example.com"],
        ])),
      });
      expect(form.statusCode, form.body).toBe(202);
      expect(form.json<Created>().campaign).toMatchObject({
        servers: ["relay-a", "relay-b"],
        errorBudget: false,
      });

      const plain = await createCampaign({ subject: "Any", text: "Hi", recipients: ["p1@example.com"] });
      expect(plain.campaign).toMatchObject({ servers: null, errorBudget: null });
    });

    it("refuses a server that is not configured, listing the known ones, and a bad error budget, and stores nothing", async () => {
      const before = await campaignCount();
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        payload: {
          subject: "Nowhere",
          text: "Hi",
          servers: ["relay-a", "relay-c"],
          errorBudget: { share: 10, window: 200, minimum: 50 },
          recipients: ["n1@example.com"],
        },
      });
      const error = expectError(response, 400, "bad_request");
      const details = error.details as { field: string; reason: string }[];
      expect(details.map((d) => d.field)).toEqual(["servers", "errorBudget"]);
      expect(details[0]!.reason).toMatch(/"relay-c" is not a configured server.*relay-a, relay-b/);
      expect(details[1]!.reason).toMatch(/share above 0 and below 1/);
      // The same names and checks for a preview: it renders what the campaign would send.
      const preview = await call({
        method: "POST",
        url: "/api/campaigns/preview",
        payload: { subject: "Nowhere", text: "Hi", servers: ["relay-c"], to: "x@example.com" },
      });
      expect(expectError(preview, 400, "bad_request").details).toEqual([
        { field: "servers", reason: expect.stringContaining('"relay-c"') as unknown },
      ]);
      const unknownField = await call({
        method: "POST",
        url: "/api/campaigns",
        payload: {
          subject: "Odd budget",
          text: "Hi",
          errorBudget: { share: 0.1, window: 200, minimum: 50, max: 3 },
          recipients: ["o1@example.com"],
        },
      });
      expect(JSON.stringify(expectError(unknownField, 400, "bad_request").details)).toContain(
        "body.errorBudget.max",
      );
      expect(await campaignCount()).toBe(before);
    });

    it("refuses every problem of the message at once", async () => {
      const response = await call({
        method: "POST",
        url: "/api/campaigns",
        payload: { from: "not an address", priority: 1000, recipients: ["someone@example.com"] },
      });
      const error = expectError(response, 400, "bad_request");
      expect((error.details as { field: string }[]).map((d) => d.field)).toEqual([
        "subject",
        "text",
        "from",
        "priority",
      ]);
    });

    it("answers 413 with the error shape for a JSON body over the limit", async () => {
      const before = await campaignCount();
      const recipients = Array.from({ length: 200 }, (_, i) => `big${i}@example.com`);
      const response = await call(
        { method: "POST", url: "/api/campaigns", payload: { subject: "Big", text: "Hi", recipients } },
        smallApp,
      );
      expectError(response, 413, "too_large");
      expect(await campaignCount()).toBe(before);
    });

    it("answers 413 for an upload over the upload limit, and stores nothing", async () => {
      const before = await campaignCount();
      const rows = Array.from({ length: 400 }, (_, i) => `huge${i}@example.com`).join("\n");
      expect(rows.length).toBeGreaterThan(SMALL_UPLOAD_BYTES);
      const response = await call(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "Huge"],
            ["text", "Hi"],
            ["file", { filename: "list.txt", content: rows }],
          ])),
        },
        smallApp,
      );
      expectError(response, 413, "too_large");
      expect(await campaignCount()).toBe(before);
    });

    it("accepts an upload larger than the JSON body limit but within the upload limit", async () => {
      const rows = Array.from({ length: 150 }, (_, i) => `mid${i}@example.com`).join("\n");
      expect(rows.length).toBeGreaterThan(SMALL_BODY_BYTES);
      expect(rows.length).toBeLessThan(SMALL_UPLOAD_BYTES);
      const response = await call(
        {
          method: "POST",
          url: "/api/campaigns",
          ...(await multipart([
            ["subject", "Medium"],
            ["text", "Hi"],
            ["file", { filename: "list.txt", content: rows }],
          ])),
        },
        smallApp,
      );
      expect(response.statusCode, response.body).toBe(202);
      expect(response.json<Created>().accepted).toBe(150);
    });
  });

  describe("reading campaigns and their email log", () => {
    let campaignId: number;

    beforeAll(async () => {
      const recipients = Array.from({ length: 250 }, (_, i) =>
        i === 0
          ? { email: "lan@example.vn", name: "Nguyễn Thị Lan", note: 'says "hi", twice' }
          : `log${i}@example.com`,
      );
      const created = await createCampaign({ subject: "Log", text: "Hi {{name}}", recipients });
      expect(created.accepted).toBe(250);
      campaignId = created.campaign.id;
    });

    it("lists campaigns newest first and reads one with its counts", async () => {
      const list = await call({ method: "GET", url: "/api/campaigns" });
      const ids = list.json<{ campaigns: CampaignView[] }>().campaigns.map((c) => c.id);
      expect(ids[0]).toBe(Math.max(...ids));
      expect(ids).toEqual([...ids].sort((a, b) => b - a));

      const one = await call({ method: "GET", url: `/api/campaigns/${campaignId}` });
      expect(one.statusCode).toBe(200);
      expect(one.json<CampaignView>()).toMatchObject({
        id: campaignId,
        status: "sending",
        total: 250,
        counts: { pending: 250, queued: 0, sending: 0, sent: 0, failed: 0, skipped: 0, unknown: 0 },
      });
    });

    it("answers 404 with the error shape for a campaign that does not exist", async () => {
      for (const url of [
        "/api/campaigns/999999",
        "/api/campaigns/999999/recipients",
        "/api/campaigns/999999/recipients.csv",
      ]) {
        const error = expectError(await call({ method: "GET", url }), 404, "not_found");
        expect(error.message).toBe("campaign 999999 not found");
        expect(error.details).toBeNull();
      }
      expectError(await call({ method: "POST", url: "/api/campaigns/999999/pause" }), 404, "not_found");
    });

    it("answers 400 for a campaign id that is not a number", async () => {
      expectError(await call({ method: "GET", url: "/api/campaigns/abc" }), 400, "bad_request");
    });

    it("pages through the recipients with a cursor, each once and in order", async () => {
      const seen: RecipientView[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: RecipientPage = await recipientsOf(
          campaignId,
          `?limit=100${cursor ? `&cursor=${cursor}` : ""}`,
        );
        seen.push(...page.recipients);
        cursor = page.nextCursor;
        pages++;
      } while (cursor !== null);
      expect(pages).toBe(3);
      expect(seen).toHaveLength(250);
      expect(new Set(seen.map((r) => r.id)).size).toBe(250);
      expect(seen.map((r) => r.line)).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
      expect(seen.every((r) => r.campaignId === campaignId && r.status === "pending")).toBe(true);
    });

    it("filters the recipients by status and by part of the address", async () => {
      expect((await recipientsOf(campaignId, "?status=pending&limit=1000")).recipients).toHaveLength(250);
      expect((await recipientsOf(campaignId, "?status=sent")).recipients).toEqual([]);

      const { recipients } = await recipientsOf(campaignId, "?q=LOG12");
      expect(recipients.map((r) => r.email)).toEqual([
        "log12@example.com",
        ...Array.from({ length: 10 }, (_, i) => `log12${i}@example.com`),
      ]);
      // LIKE wildcards are searched for literally.
      expect((await recipientsOf(campaignId, "?q=log1_")).recipients).toEqual([]);

      expectError(
        await call({ method: "GET", url: `/api/campaigns/${campaignId}/recipients?status=bogus` }),
        400,
        "bad_request",
      );
    });

    it("searches the email log across campaigns", async () => {
      const response = await call({ method: "GET", url: "/api/emails?q=lan@example.vn" });
      const { recipients } = response.json<RecipientPage>();
      expect(recipients.map((r) => r.campaignId)).toContain(campaignId);
      expect(recipients.every((r) => r.email === "lan@example.vn")).toBe(true);
    });

    it("exports the log as CSV with a Vietnamese name intact", async () => {
      const response = await call({ method: "GET", url: `/api/campaigns/${campaignId}/recipients.csv` });
      expect(response.statusCode).toBe(200);
      expect(response.headers["content-type"]).toBe("text/csv; charset=utf-8");
      expect(response.headers["content-disposition"]).toContain(`campaign-${campaignId}-recipients.csv`);
      const rows = response.body.trimEnd().split("\n");
      expect(rows[0]).toMatch(/^id,line,email,name,status,/);
      expect(rows).toHaveLength(251);
      expect(rows[1]).toMatch(/^\d+,1,lan@example\.vn,Nguyễn Thị Lan,pending,0,/);
      expect(rows[250]).toMatch(/^\d+,250,log249@example\.com,,pending,0,/);

      const sent = await call({
        method: "GET",
        url: `/api/campaigns/${campaignId}/recipients.csv?status=sent`,
      });
      expect(sent.body.trimEnd().split("\n")).toHaveLength(1);
    });
  });

  describe("campaign actions", () => {
    it("moves a campaign sending → paused → sending → cancelled and refuses impossible moves with 409", async () => {
      const { campaign } = await createCampaign({
        subject: "Actions",
        text: "Hi",
        recipients: ["a1@example.com", "a2@example.com", "a3@example.com"],
      });
      const act = (action: string) =>
        call({ method: "POST", url: `/api/campaigns/${campaign.id}/${action}` });

      const paused = await act("pause");
      expect(paused.statusCode, paused.body).toBe(200);
      expect(paused.json<CampaignView>()).toMatchObject({
        status: "paused",
        statusReason: "paused by a user",
      });

      const pausedAgain = expectError(await act("pause"), 409, "conflict");
      expect(pausedAgain.message).toContain("paused");

      const resumed = await act("resume");
      expect(resumed.statusCode, resumed.body).toBe(200);
      expect(resumed.json<CampaignView>()).toMatchObject({ status: "sending", statusReason: null });

      const cancelled = await act("cancel");
      expect(cancelled.statusCode, cancelled.body).toBe(200);
      expect(cancelled.json<CampaignView>()).toMatchObject({
        status: "cancelled",
        counts: { pending: 0, skipped: 3 },
      });

      for (const action of ["pause", "resume", "cancel", "retry"]) {
        const error = expectError(await act(action), 409, "conflict");
        expect(error.message).toContain("cancelled");
      }
      expect((await recipientsOf(campaign.id, "?status=skipped")).recipients).toHaveLength(3);
    });

    it("retries failed recipients of a completed campaign, then unknown ones on request", async () => {
      const { campaign } = await createCampaign({
        subject: "Retry",
        text: "Hi",
        recipients: [
          "r1@example.com",
          "r2@example.com",
          "r3@example.com",
          "r4@example.com",
          "r5@example.com",
        ],
      });
      // The outcome a worker would have written: two failed, one unknown, two sent, and done.
      const setStatus = (emails: string[], status: "failed" | "unknown" | "sent") =>
        store.db
          .updateTable("lovage.recipients")
          .set({ status })
          .where("campaign_id", "=", campaign.id)
          .where("email", "in", emails)
          .execute();
      await setStatus(["r1@example.com", "r2@example.com"], "failed");
      await setStatus(["r3@example.com"], "unknown");
      await setStatus(["r4@example.com", "r5@example.com"], "sent");
      await store.db
        .updateTable("lovage.campaigns")
        .set({ status: "completed", completed_at: new Date() })
        .where("id", "=", campaign.id)
        .execute();

      const retry = (payload?: unknown) =>
        call({ method: "POST", url: `/api/campaigns/${campaign.id}/retry`, payload: payload as object });

      const retried = await retry({});
      expect(retried.statusCode, retried.body).toBe(200);
      expect(retried.json<CampaignView>()).toMatchObject({
        status: "sending",
        counts: { pending: 2, failed: 0, unknown: 1, sent: 2 },
      });

      const unknown = await retry({ statuses: ["unknown"] });
      expect(unknown.statusCode, unknown.body).toBe(200);
      expect(unknown.json<CampaignView>()).toMatchObject({
        status: "sending",
        counts: { pending: 3, failed: 0, unknown: 0, sent: 2 },
      });

      expectError(await retry({ statuses: ["sent"] }), 400, "bad_request");
    });
  });

  describe("tasks", () => {
    beforeAll(async () => {
      worker = await startWorker({ broker, registry: deps.registry, concurrency: 2, logger: quiet });
    });

    async function send(payload: unknown) {
      return call({ method: "POST", url: "/api/tasks/add", payload: payload as object });
    }

    it("runs add with 10 and 20 and reports 30 as its result", async () => {
      const sent = await send({ input: { a: 10, b: 20 } });
      expect(sent.statusCode, sent.body).toBe(202);
      const { id } = sent.json<{ id: string }>();
      expect(id).toMatch(/^default:/);

      const job = await waitFor(
        async () => {
          const response = await call({ method: "GET", url: `/api/tasks/${encodeURIComponent(id)}` });
          expect(response.statusCode, response.body).toBe(200);
          const body = response.json<{ state: string }>();
          return body.state === "completed" ? body : undefined;
        },
        { message: `job ${id} completed`, timeoutMs: 30_000 },
      );
      expect(job).toMatchObject({
        id,
        name: "add",
        state: "completed",
        result: 30,
        error: null,
        attempts: [],
      });
    });

    it("wakes the worker at once: a job is done well within BullMQ's 5 s poll", async () => {
      // The embedded broker must deliver BullMQ's NOTIFY to the waiting worker; without it every
      // job waited for the worker's next poll (drainDelay, 5 s).
      const started = Date.now();
      const { id } = (await send({ input: { a: 1, b: 2 } })).json<{ id: string }>();
      await expect(deps.producer.waitForResult(id, { timeoutMs: 10_000 })).resolves.toBe(3);
      expect(Date.now() - started).toBeLessThan(2_500);
    });

    it("answers 404 naming the known tasks for an unknown task", async () => {
      const response = await call({ method: "POST", url: "/api/tasks/nosuch", payload: { input: {} } });
      const error = expectError(response, 404, "not_found");
      expect(error.message).toBe('no task named "nosuch" (known: add)');
    });

    it("answers 400 naming the problem for input that fails the task's schema", async () => {
      const error = expectError(await send({ input: { a: "x" } }), 400, "bad_request");
      expect(error.message).toMatch(
        /^input of task add is invalid: a: .*expected number, received string; b: /,
      );
      expect(error.details).toEqual([
        { field: "a", reason: expect.stringMatching(/expected number, received string/) as unknown },
        { field: "b", reason: expect.stringMatching(/expected number, received undefined/) as unknown },
      ]);
    });

    it("answers 400 listing bad send options", async () => {
      const error = expectError(
        await send({ input: { a: 1, b: 2 }, options: { priority: 1000 } }),
        400,
        "bad_request",
      );
      expect(error.message).toContain("priority");
      expect(error.details).toEqual([expect.stringMatching(/^priority: expected/)]);
    });

    it("enqueues a job once for two sends with one idempotency key", async () => {
      const key = `key-${Date.now()}`;
      const first = await send({ input: { a: 1, b: 2 }, options: { idempotencyKey: key } });
      const second = await send({ input: { a: 1, b: 2 }, options: { idempotencyKey: key } });
      const other = await send({ input: { a: 1, b: 2 }, options: { idempotencyKey: `${key}-other` } });
      expect([first.statusCode, second.statusCode, other.statusCode]).toEqual([202, 202, 202]);
      const id = first.json<{ id: string }>().id;
      expect(second.json<{ id: string }>().id).toBe(id);
      expect(other.json<{ id: string }>().id).not.toBe(id);
    });

    it("answers 404 for a job that does not exist", async () => {
      expectError(await call({ method: "GET", url: "/api/tasks/default:no-such-job" }), 404, "not_found");
      expectError(await call({ method: "GET", url: "/api/tasks/x:y" }), 404, "not_found");
    });

    it("lists the queues with their job counts", async () => {
      const response = await call({ method: "GET", url: "/api/queues" });
      expect(response.statusCode).toBe(200);
      const { queues } = response.json<{
        queues: { name: string; paused: boolean; counts: Record<string, number> }[];
      }>();
      expect(queues.map((q) => q.name)).toEqual(["default", "email"]);
      for (const queue of queues) {
        expect(queue.paused).toBe(false);
        expect(Object.keys(queue.counts).sort()).toEqual(
          ["active", "completed", "delayed", "failed", "waiting"].sort(),
        );
        for (const count of Object.values(queue.counts)) expect(Number.isInteger(count)).toBe(true);
      }
      expect(queues[0]!.counts.completed).toBeGreaterThanOrEqual(1);
    });
  });

  describe("caught messages", () => {
    it("lists none yet and says the catcher is enabled", async () => {
      const response = await call({ method: "GET", url: "/api/messages" });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ enabled: true, messages: [] });
      expectError(await call({ method: "GET", url: "/api/messages/12345" }), 404, "not_found");
    });
  });

  describe("health", () => {
    it("answers /healthz and /readyz with 200 while the database and broker are up", async () => {
      const health = await app.inject({ method: "GET", url: "/healthz" });
      expect(health.statusCode).toBe(200);
      const ready = await app.inject({ method: "GET", url: "/readyz" });
      expect(ready.statusCode).toBe(200);
      expect(ready.json()).toEqual({ status: "ready", database: "up", broker: "up", smtp: "unknown" });
    });

    it("answers /readyz with 503 naming the dependency that is down", async () => {
      const down = await buildApp({
        ...deps,
        ping: {
          database: store.ping,
          broker: async () => {
            throw new Error("ECONNREFUSED");
          },
        },
      });
      try {
        const ready = await down.inject({ method: "GET", url: "/readyz" });
        expect(ready.statusCode).toBe(503);
        expect(ready.json()).toEqual({
          status: "unavailable",
          database: "up",
          broker: "down",
          smtp: "unknown",
        });
      } finally {
        await down.close();
      }
    });

    it("exposes Prometheus metrics with recipients by status", async () => {
      await createCampaign({ subject: "Metrics", text: "Hi", recipients: "metrics@example.com" });
      const response = await app.inject({ method: "GET", url: "/metrics" });
      expect(response.statusCode).toBe(200);
      expect(response.headers["content-type"]).toMatch(/^text\/plain/);
      expect(response.body).toContain("# TYPE lovage_recipients gauge");
      expect(response.body).toMatch(/^lovage_recipients\{status="pending"\} [1-9]\d*$/m);
    });
  });
});
