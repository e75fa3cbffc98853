/**
 * Sending at the receiver's pace, in one process (dispatcher, worker, store on PostgreSQL, the
 * rate counters in the store) against real SMTP servers scripted to throttle, refuse, go away
 * and come back. Each test counts what the servers saw, not only what the log says.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { getCampaign, type NewCampaign } from "../../src/db/campaigns.js";
import { countsByCampaign, listAttempts, listRecipients } from "../../src/db/recipients.js";
import { createCampaign } from "../../src/mail/campaigns.js";
import { retryCampaign } from "../../src/mail/campaign-lifecycle.js";
import { createDispatcher, type Dispatcher } from "../../src/mail/dispatcher.js";
import { createRateCounters } from "../../src/mail/rate-limits.js";
import { parseJsonRecipients } from "../../src/mail/recipients/parse.js";
import { createSendBatchTask, DEFAULT_ERROR_BUDGET } from "../../src/mail/send-batch.js";
import type { SmtpEvent } from "../../src/mail/smtp-events.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createSmtpTransport, type Transport } from "../../src/mail/transport-pool.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { createCampaignStore, createDispatchStore, createSendStore } from "../../src/stores.js";
import { openSignedInApp } from "../helpers/api-app.js";
import { openBackend, type Backend } from "../helpers/backends.js";
import { waitFor } from "../helpers/lovage-process.js";
import { freePort } from "../helpers/services.js";
import { startTestSmtpServer, type Script, type TestSmtpServer } from "../helpers/smtp-server.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe("sending at the receiver's pace", () => {
  let backend: Backend;
  const servers: TestSmtpServer[] = [];
  let running: { worker: RunningWorker; dispatcher: Dispatcher; transport: Transport } | undefined;
  let events: SmtpEvent[] = [];

  beforeAll(async () => {
    backend = await openBackend("postgres");
  });

  afterEach(async () => {
    await stop();
    for (const server of servers.splice(0)) await server.close();
    events = [];
  });

  afterAll(async () => {
    await backend?.close();
  });

  async function server(script?: Script, port?: number) {
    const smtp = await startTestSmtpServer({ script, keepBodies: false, port });
    servers.push(smtp);
    return smtp;
  }

  async function start(urls: string[], options: { maxAttempts?: number; budget?: boolean } = {}) {
    const transport = createSmtpTransport(urls, {
      poolSize: 5,
      timeoutMs: 5_000,
      counters: createRateCounters({ kind: "postgres", pool: backend.store.pool }),
      onEvent: (event) => events.push(event),
    });
    const registry = new TaskRegistry().register(
      createSendBatchTask({
        store: createSendStore(backend.store.db),
        transport,
        workerId: "pace-test",
        maxAttempts: options.maxAttempts,
        retryBaseMs: 50,
        retryMaxAgeMs: 3600_000,
        errorBudget: options.budget ? DEFAULT_ERROR_BUDGET : undefined,
        leaseMs: 30_000,
        message: { tokens: createTokens("a pace test secret of 32 characters") },
        logger: quiet,
      }),
    );
    const worker = await startWorker({ broker: backend.broker, registry, concurrency: 8, logger: quiet });
    const dispatcher = createDispatcher({
      store: createDispatchStore(backend.store.db),
      producer: createProducer(backend.broker),
      batchSize: 20,
      idleIntervalMs: 50,
      lostBatchAfterMs: 2_000,
      logger: quiet,
    });
    running = { worker, dispatcher, transport };
  }

  async function stop() {
    if (!running) return;
    await running.dispatcher.close();
    await running.worker.close({ timeoutMs: 5_000 });
    running.transport.close();
    running = undefined;
  }

  let tagCounter = 0;
  const addresses = (n: number, domain = "example.com") => {
    const tag = `p${Date.now().toString(36)}${tagCounter++}`;
    return Array.from({ length: n }, (_, i) => `${tag}-${i}@${domain}`);
  };

  async function campaignOf(list: string[], own: Pick<NewCampaign, "servers" | "errorBudget"> = {}) {
    const created = await createCampaign(
      createCampaignStore(backend.store.db),
      {
        name: "pace",
        from: "Sender <sender@example.com>",
        subject: "Hello {{email}}",
        text: "Hi",
        html: null,
        priority: 0,
        sendAt: null,
        replyTo: null,
        headers: {},
        listUnsubscribe: true,
        ignoreManualSuppressions: false,
        ...own,
      },
      parseJsonRecipients(list),
    );
    running?.dispatcher.wake();
    return created.campaignId;
  }

  const status = async (id: number) => (await getCampaign(backend.store.db, id))!;
  const counts = async (id: number) => (await countsByCampaign(backend.store.db, [id])).get(id)!;

  async function completed(id: number, timeoutMs = 90_000) {
    await waitFor(async () => (await status(id)).status === "completed", {
      timeoutMs,
      intervalMs: 200,
      message: `campaign ${id} completed`,
    });
    return counts(id);
  }

  it("gives retried recipients a fresh attempt budget and keeps their earlier attempts in the log", async () => {
    let refusing = true;
    const smtp = await server(() => (refusing ? { code: 452, message: "4.2.2 Mailbox full" } : "accept"));
    await start([smtp.url], { maxAttempts: 2 });
    const list = addresses(3);
    const id = await campaignOf(list);
    expect(await completed(id)).toMatchObject({ failed: 3, sent: 0 });
    const [first] = await listRecipients(backend.store.db, { campaignId: id, limit: 1 });
    expect(first!.attempts).toBe(2);

    refusing = false;
    expect((await retryCampaign(createCampaignStore(backend.store.db), id)).ok).toBe(true);
    running!.dispatcher.wake();
    expect(await completed(id)).toMatchObject({ failed: 0, sent: 3 });
    const log = await listAttempts(backend.store.db, first!.id);
    expect(log.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "retry"],
      [2, "failed"],
      [3, "sent"],
    ]);

    // The same through the API: the recipient with its attempts log.
    const { app, call } = await openSignedInApp(backend, createProducer(backend.broker), []);
    try {
      const response = await call({ method: "GET", url: `/api/campaigns/${id}/recipients/${first!.id}` });
      expect(response.statusCode, response.body).toBe(200);
      const body = response.json<{
        status: string;
        attempts: number;
        attemptsInBudget: number;
        attemptsLog: unknown[];
      }>();
      expect(body).toMatchObject({ status: "sent", attempts: 3, attemptsInBudget: 1 });
      expect(body.attemptsLog).toHaveLength(3);
      expect((await call({ method: "GET", url: `/api/campaigns/${id}/recipients/999999` })).statusCode).toBe(
        404,
      );
      expect(
        (await call({ method: "GET", url: `/api/campaigns/${id}/recipients/${first!.id}?x=1` })).statusCode,
      ).toBe(400);
    } finally {
      await app.close();
    }
  }, 150_000);

  it("sends everything by the other server when one is stopped, spends no attempt on refusals, and takes it out and back", async () => {
    const good = await server();
    const port = await freePort();
    let bad = await server(undefined, port);
    await start([`${good.url}?name=good`, `smtp://127.0.0.1:${port}?name=bad`]);
    const list = addresses(300);
    const id = await campaignOf(list);
    await waitFor(async () => (await counts(id)).sent >= 50, { timeoutMs: 30_000, message: "50 sent" });
    await bad.close();
    servers.splice(servers.indexOf(bad), 1);
    const stoppedAt = Date.now();
    await waitFor(() => events.find((e) => e.name === "bad" && e.kind === "out"), {
      timeoutMs: 10_000,
      message: "the stopped server marked out",
    });
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    const done = await completed(id);
    // Transactions in flight on the stopped server when it went are `unknown` (they may have been
    // delivered): at most its connections. Every other recipient was sent, once.
    expect(done.failed).toBe(0);
    expect(done.unknown).toBeLessThanOrEqual(5);
    expect(done.sent + done.unknown).toBe(300);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 1000 });
    const sent = rows.filter((r) => r.status === "sent").map((r) => r.email);
    expect(sent.filter((a) => good.deliveries(a) + bad.deliveries(a) !== 1)).toEqual([]);
    // A refused connection is not an attempt: every recipient sent was sent on its first.
    expect(rows.filter((r) => r.status === "sent" && r.attempts !== 1)).toEqual([]);

    bad = await server(undefined, port);
    const list2 = addresses(200);
    const id2 = await campaignOf(list2);
    await completed(id2);
    // Back in within a cool-down (30 s at most) and a probe, with or without traffic.
    await waitFor(() => events.find((e) => e.name === "bad" && e.kind === "in"), {
      timeoutMs: 45_000,
      message: "the server back in",
    });
    expect(running!.transport.figures().find((f) => f.name === "bad")!.state).toBe("in");
  }, 150_000);

  it("lets recipients wait while the only relay is down: none failed, not completed, all sent once it is back", async () => {
    const port = await freePort();
    let relay = await server(undefined, port);
    const first = relay;
    await start([relay.url]);
    const list = addresses(200);
    const id = await campaignOf(list);
    await waitFor(async () => (await counts(id)).sent >= 20, { timeoutMs: 30_000, message: "20 sent" });
    await relay.close();
    servers.splice(servers.indexOf(relay), 1);
    const downUntil = Date.now() + 15_000;
    while (Date.now() < downUntil) {
      const c = await counts(id);
      expect(c.failed).toBe(0);
      expect((await status(id)).status).toBe("sending");
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    relay = await server(undefined, port);
    const done = await completed(id, 120_000);
    // Transactions in flight when the relay stopped are `unknown` (they may have been
    // delivered): at most its connections. Every other recipient was sent, once.
    expect(done.failed).toBe(0);
    expect(done.unknown).toBeLessThanOrEqual(5);
    expect(done.sent + done.unknown).toBe(200);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 1000 });
    const sent = rows.filter((r) => r.status === "sent").map((r) => r.email);
    expect(sent.filter((a) => first.deliveries(a) + relay.deliveries(a) !== 1)).toEqual([]);
    expect(list.filter((a) => first.deliveries(a) + relay.deliveries(a) > 1)).toEqual([]);
  }, 150_000);

  it("sends a campaign that names one of two servers through that one only, and lets it wait while that one is out", async () => {
    const port = await freePort();
    let chosen = await server(undefined, port);
    const first = chosen;
    const other = await server();
    await start([`smtp://127.0.0.1:${port}?name=chosen`, `${other.url}?name=other`]);
    const list = addresses(200);
    const id = await campaignOf(list, { servers: ["chosen"] });
    await waitFor(async () => (await counts(id)).sent >= 30, { timeoutMs: 30_000, message: "30 sent" });
    await chosen.close();
    servers.splice(servers.indexOf(chosen), 1);
    // Out, as when every server is out: the recipients wait (pending, no attempt spent), and the
    // other server, which is in, gets none of them.
    await waitFor(() => events.find((e) => e.name === "chosen" && e.kind === "out"), {
      timeoutMs: 10_000,
      message: "the campaign's server marked out",
    });
    const downUntil = Date.now() + 4_000;
    while (Date.now() < downUntil) {
      expect((await counts(id)).failed).toBe(0);
      expect((await status(id)).status).toBe("sending");
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    chosen = await server(undefined, port);
    const done = await completed(id, 90_000);
    expect(done.failed).toBe(0);
    // Transactions in flight on it when it stopped may be `unknown`: at most its connections.
    expect(done.unknown).toBeLessThanOrEqual(5);
    expect(done.sent + done.unknown).toBe(200);
    expect(list.filter((a) => other.deliveries(a) > 0)).toEqual([]);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 1000 });
    const sent = rows.filter((r) => r.status === "sent").map((r) => r.email);
    expect(sent.filter((a) => first.deliveries(a) + chosen.deliveries(a) !== 1)).toEqual([]);

    // A campaign with no servers named still uses both.
    const both = addresses(100);
    expect(await completed(await campaignOf(both))).toMatchObject({ sent: 100, failed: 0 });
    expect(both.filter((a) => other.deliveries(a) === 1).length).toBeGreaterThan(0);
  }, 150_000);

  it("pauses a campaign with a stricter error budget earlier than the default would, and never one with none", async () => {
    const smtp = await server(({ recipient }) =>
      Number(/-(\d+)@/.exec(recipient)![1]) % 10 < 3
        ? { code: 550, message: "5.1.1 No such user here" }
        : "accept",
    );
    // The process default is on (more than 10% of the last 200, after at least 50).
    await start([smtp.url], { budget: true });
    const strict = await campaignOf(addresses(300), { errorBudget: { share: 0.1, window: 20, minimum: 10 } });
    await waitFor(async () => (await status(strict)).status === "paused", {
      timeoutMs: 60_000,
      message: "the strict campaign paused",
    });
    expect((await status(strict)).statusReason).toMatch(
      /of the last \d+ attempts failed permanently .*more than 10%/,
    );
    // Chunks in flight finish; then every attempt made is counted: fewer than the default's minimum.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const attempts = async (id: number) => {
      const c = await counts(id);
      return c.sent + c.failed;
    };
    expect(await attempts(strict)).toBeLessThan(DEFAULT_ERROR_BUDGET.minimum);

    const none = await campaignOf(addresses(300), { errorBudget: false });
    expect(await completed(none, 90_000)).toMatchObject({ sent: 210, failed: 90 });
  }, 150_000);
});
