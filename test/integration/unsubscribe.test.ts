/**
 * One-click unsubscribe and the suppression list, end to end on the embedded store: messages
 * carry List-Unsubscribe and List-Unsubscribe-Post, a POST to the link (no login) unsubscribes,
 * a GET does not, a forged or altered token is refused, and the next campaign to the same list
 * ends that address `suppressed` without handing it to SMTP. Manual entries can be ignored by a
 * campaign that asks; unsubscribes never. The list's API: list, import, export, delete.
 */
import { simpleParser } from "mailparser";
import type { FastifyInstance, InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/api/app.js";
import { getCampaign } from "../../src/db/campaigns.js";
import { listRecipients } from "../../src/db/recipients.js";
import { createDispatcher, type Dispatcher } from "../../src/mail/dispatcher.js";
import type { MessageSettings } from "../../src/mail/message.js";
import { createSendBatchTask } from "../../src/mail/send-batch.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createSmtpTransport, type Transport } from "../../src/mail/transport-pool.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { createDispatchStore, createSendStore } from "../../src/stores.js";
import { expectError, openTestApi, type TestApi } from "../helpers/api-app.js";
import { waitFor } from "../helpers/lovage-process.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const PUBLIC_URL = "https://lists.example.com";
const settings: MessageSettings = {
  tokens: createTokens("an unsubscribe test secret, long"),
  publicUrl: PUBLIC_URL,
  unsubscribeMailto: "unsubscribe@shop.example",
};

describe("one-click unsubscribe and the suppression list", () => {
  let api: TestApi;
  let app: FastifyInstance;
  let smtp: TestSmtpServer;
  let running: { worker: RunningWorker; dispatcher: Dispatcher; transport: Transport } | undefined;

  beforeAll(async () => {
    api = await openTestApi();
    app = await buildApp({ ...api.deps, messageSettings: settings, publicUrl: PUBLIC_URL });
    smtp = await startTestSmtpServer();
    const transport = createSmtpTransport([smtp.url], { poolSize: 2, timeoutMs: 5_000 });
    const registry = new TaskRegistry().register(
      createSendBatchTask({
        store: createSendStore(api.store.db),
        transport,
        workerId: "unsubscribe-test",
        maxAttempts: 2,
        retryMaxAgeMs: 24 * 3600_000,
        retryBaseMs: 20,
        leaseMs: 30_000,
        message: settings,
        logger: quiet,
      }),
    );
    const worker = await startWorker({ broker: api.deps.broker, registry, concurrency: 2, logger: quiet });
    const dispatcher = createDispatcher({
      store: createDispatchStore(api.store.db),
      producer: api.deps.producer,
      batchSize: 10,
      idleIntervalMs: 50,
      lostBatchAfterMs: 300,
      logger: quiet,
    });
    running = { worker, dispatcher, transport };
  });
  afterAll(async () => {
    if (running) {
      await running.dispatcher.close();
      await running.worker.close({ timeoutMs: 5_000 });
      running.transport.close();
    }
    await app?.close();
    await smtp?.close();
    await api?.close();
  });

  const signedIn = (options: InjectOptions) =>
    app.inject({ ...options, headers: { authorization: `Bearer ${api.token}`, ...options.headers } });

  async function send(tag: string, extra: Record<string, unknown> = {}) {
    const response = await signedIn({
      method: "POST",
      url: "/api/campaigns",
      payload: {
        from: "Shop <news@shop.example>",
        subject: "Tin {{name}}",
        text: "Chào {{name}}. Unsubscribe: {{unsubscribe_url}}",
        recipients: ["Ann <Ann@example.com>", "Bé <be@example.com>", "Cú <cu@example.com>"].join("\n"),
        name: tag,
        ...extra,
      },
    });
    expect(response.statusCode, response.body).toBe(202);
    const id = response.json<{ campaign: { id: number } }>().campaign.id;
    await waitFor(async () => (await getCampaign(api.store.db, id))?.status === "completed", {
      timeoutMs: 45_000,
      message: `campaign ${tag} completed`,
    });
    return id;
  }

  const messagesOf = (campaignId: number) =>
    Promise.all(
      smtp.received
        .filter((m) => m.raw.includes(`X-Lovage-Campaign: ${settings.tokens.make("campaign", campaignId)}`))
        .map((m) => simpleParser(m.raw)),
    );

  it("unsubscribes on a POST to the List-Unsubscribe link, never on a GET, and skips the address next time", async () => {
    const first = await send("first");
    const mails = await messagesOf(first);
    expect(mails).toHaveLength(3);
    const be = mails.find((m) => m.text?.includes("Chào Bé"))!;
    // mailparser gathers the List-* headers under "list".
    const header = (be.headers.get("list") as { unsubscribe: { url: string; mail: string } }).unsubscribe;
    const link = header.url;
    expect(link).toMatch(new RegExp(`^${PUBLIC_URL}/u/[a-z2-7]{26}$`));
    expect(header.mail).toMatch(/^unsubscribe@shop\.example\?subject=unsubscribe%20[a-z2-7]{26}$/);
    expect(be.headerLines.filter((h) => h.key === "list-unsubscribe-post").map((h) => h.line)).toEqual([
      "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ]);
    expect(be.text).toContain(`Unsubscribe: ${link}`);
    const path = new URL(link).pathname;

    const page = await app.inject({ method: "GET", url: path });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.body).toContain('<form method="post">');
    expect(page.body).toContain("b••@example.com");
    let list = await signedIn({ method: "GET", url: "/api/suppressions" });
    expect(list.json<{ suppressions: unknown[] }>().suppressions).toEqual([]);

    const token = path.slice(3);
    const altered = `${token.slice(0, 10)}${token[10] === "a" ? "b" : "a"}${token.slice(11)}`;
    for (const bad of [altered, "a".repeat(26), settings.tokens.make("recipient", 1), "nope"]) {
      const refused = await app.inject({
        method: "POST",
        url: `/u/${bad}`,
        payload: "List-Unsubscribe=One-Click",
        headers: { "content-type": "application/x-www-form-urlencoded" },
      });
      expect(refused.statusCode, bad).toBe(404);
    }
    list = await signedIn({ method: "GET", url: "/api/suppressions" });
    expect(list.json<{ suppressions: unknown[] }>().suppressions).toEqual([]);

    const oneClick = await app.inject({
      method: "POST",
      url: path,
      payload: "List-Unsubscribe=One-Click",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(oneClick.statusCode, oneClick.body).toBe(200);
    // A second click is answered the same way.
    expect((await app.inject({ method: "POST", url: path })).statusCode).toBe(200);
    list = await signedIn({ method: "GET", url: "/api/suppressions" });
    expect(list.json()).toMatchObject({
      suppressions: [{ email: "be@example.com", reason: "unsubscribed", campaignId: first }],
      counts: { unsubscribed: 1 },
    });

    const deliveredBefore = smtp.deliveries("be@example.com");
    const second = await send("second");
    const rows = await listRecipients(api.store.db, { campaignId: second, limit: 10 });
    const byEmail = Object.fromEntries(rows.map((r) => [r.email, r]));
    expect(byEmail["be@example.com"]).toMatchObject({ status: "suppressed", attempts: 0 });
    expect(byEmail["be@example.com"]!.lastError).toMatch(/suppression list \(unsubscribed\)/);
    expect(byEmail["ann@example.com"]!.status).toBe("sent");
    expect(smtp.deliveries("be@example.com")).toBe(deliveredBefore);
    const view = await signedIn({ method: "GET", url: `/api/campaigns/${second}` });
    expect(view.json()).toMatchObject({ counts: { sent: 2, suppressed: 1 } });
  });

  it("lets a campaign ignore manual entries only, and can leave the header out", async () => {
    const added = await signedIn({
      method: "POST",
      url: "/api/suppressions",
      payload: { entries: [{ email: "Cu@Example.com" }, { email: "be@example.com", reason: "manual" }] },
    });
    expect(added.statusCode, added.body).toBe(200);
    // be@ stays unsubscribed: a manual entry never weakens it.
    expect(added.json()).toMatchObject({ accepted: 2, written: 1, rejected: [] });

    const ignoring = await send("ignoring", {
      ignoreManualSuppressions: true,
      listUnsubscribe: false,
      text: "Hi",
    });
    const rows = await listRecipients(api.store.db, { campaignId: ignoring, limit: 10 });
    expect(Object.fromEntries(rows.map((r) => [r.email, r.status]))).toEqual({
      "ann@example.com": "sent",
      "be@example.com": "suppressed",
      "cu@example.com": "sent",
    });
    for (const mail of await messagesOf(ignoring)) {
      expect(mail.headers.has("list")).toBe(false);
      expect(mail.headerLines.some((h) => h.key.startsWith("list-unsubscribe"))).toBe(false);
    }
    const strict = await send("strict");
    const strictRows = await listRecipients(api.store.db, { campaignId: strict, limit: 10 });
    expect(strictRows.find((r) => r.email === "cu@example.com")!.status).toBe("suppressed");
  });

  it("imports CSV with line-numbered rejections, exports it, and deletes an entry", async () => {
    const imported = await signedIn({
      method: "POST",
      url: "/api/suppressions",
      payload:
        "email,reason\nold1@example.com,bounced\nbroken@\nold2@example.com,sometimes\nold3@example.com,\n",
      headers: { "content-type": "text/csv" },
    });
    expect(imported.statusCode, imported.body).toBe(200);
    expect(imported.json()).toMatchObject({
      accepted: 2,
      rejected: [
        { line: 3, value: "broken@", reason: "missing domain" },
        { line: 4, reason: expect.stringMatching(/^reason must be one of/) as unknown },
      ],
    });
    const csv = await signedIn({ method: "GET", url: "/api/suppressions.csv" });
    expect(csv.headers["content-type"]).toMatch(/^text\/csv/);
    expect(csv.body).toMatch(/^email,reason,campaign_id,detail,created_at\n/);
    expect(csv.body).toMatch(/\nold1@example\.com,bounced,,,/);
    expect(csv.body).toMatch(/\nold3@example\.com,manual,,,/);
    const removed = await signedIn({ method: "DELETE", url: "/api/suppressions/old3%40example.com" });
    expect(removed.statusCode).toBe(204);
    expectError(
      await signedIn({ method: "DELETE", url: "/api/suppressions/old3%40example.com" }),
      404,
      "not_found",
    );
    const page = await signedIn({ method: "GET", url: "/api/suppressions?reason=bounced" });
    expect(page.json<{ suppressions: { email: string }[] }>().suppressions.map((s) => s.email)).toEqual([
      "old1@example.com",
    ]);
    expectError(await app.inject({ method: "GET", url: "/api/suppressions" }), 401, "unauthorized");
  });
});
