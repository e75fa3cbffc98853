/**
 * The bulk-email pipeline in one process (dispatcher, worker, store, broker) against a real
 * SMTP server scripted to accept, answer 4xx or 5xx, or hang up; on every backend. Each test
 * counts: requested, delivered to the SMTP server, and logged by status.
 */
import { sql } from "kysely";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { getCampaign } from "../../src/db/campaigns.js";
import { countsByCampaign, listAttempts, listRecipients } from "../../src/db/recipients.js";
import { createCampaign } from "../../src/mail/campaigns.js";
import { createDispatcher, type Dispatcher } from "../../src/mail/dispatcher.js";
import { parseJsonRecipients } from "../../src/mail/recipients/parse.js";
import { createSendBatchTask, EMAIL_QUEUE, unrecordedLimit } from "../../src/mail/send-batch.js";
import { createSmtpTransport, type Transport } from "../../src/mail/transport-pool.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { createCampaignStore, createDispatchStore, createSendStore } from "../../src/stores.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { BACKENDS, openBackend, type Backend } from "../helpers/backends.js";
import { waitFor } from "../helpers/lovage-process.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const POOL_SIZE = 3;
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe.each(BACKENDS)("the email pipeline on %s", (backendName) => {
  let backend: Backend;
  let smtp: TestSmtpServer;
  let running: { worker: RunningWorker; dispatcher: Dispatcher; transport: Transport } | undefined;

  beforeAll(async () => {
    backend = await openBackend(backendName);
    smtp = await startTestSmtpServer();
  });

  afterEach(async () => {
    await stop();
  });

  afterAll(async () => {
    await smtp?.close();
    await backend?.close();
  });

  /** A dispatcher that checks for lost batches after 300 ms, so the tests need not wait 15 s. */
  function dispatch(): Dispatcher {
    return createDispatcher({
      store: createDispatchStore(backend.store.db),
      producer: createProducer(backend.broker),
      batchSize: 10,
      idleIntervalMs: 50,
      lostBatchAfterMs: 300,
      logger: quiet,
    });
  }

  async function start(options: { maxAttempts?: number; leaseMs?: number } = {}) {
    const transport = createSmtpTransport([smtp.url], { poolSize: POOL_SIZE, timeoutMs: 5_000 });
    const registry = new TaskRegistry().register(
      createSendBatchTask({
        store: createSendStore(backend.store.db),
        transport,
        workerId: "test",
        maxAttempts: options.maxAttempts ?? 3,
        retryBaseMs: 20,
        retryMaxAgeMs: 3600_000,
        leaseMs: options.leaseMs ?? 30_000,
        message: { tokens: createTokens("an email-pipeline test secret") },
        logger: quiet,
      }),
    );
    const worker = await startWorker({ broker: backend.broker, registry, concurrency: 4, logger: quiet });
    const dispatcher = dispatch();
    running = { worker, dispatcher, transport };
  }

  async function stop() {
    if (!running) return;
    await running.dispatcher.close();
    await running.worker.close({ timeoutMs: 5_000 });
    running.transport.close();
    running = undefined;
  }

  async function campaignOf(addresses: string[], subject = "Xin chào {{name}}") {
    const created = await createCampaign(
      createCampaignStore(backend.store.db),
      {
        name: "t",
        from: "Sender <sender@example.com>",
        subject,
        text: "Chào {{name}}, {{email}}",
        html: null,
        priority: 0,
        sendAt: null,
        replyTo: null,
        headers: {},
        listUnsubscribe: true,
        ignoreManualSuppressions: false,
      },
      parseJsonRecipients(addresses),
    );
    return created.campaignId;
  }

  async function completed(campaignId: number) {
    await waitFor(async () => (await getCampaign(backend.store.db, campaignId))?.status === "completed", {
      timeoutMs: 45_000,
      message: `campaign ${campaignId} completed`,
    });
    return (await countsByCampaign(backend.store.db, [campaignId])).get(campaignId)!;
  }

  const addresses = (tag: string, n: number) =>
    Array.from(
      { length: n },
      (_, i) => `Nguyễn Văn ${i} <${tag}-${backendName.replace("+", "-")}-${i}@example.com>`,
    );

  it("delivers each address exactly once, logs it as sent, and keeps UTF-8 intact", async () => {
    smtp.setScript(() => "accept");
    const list = addresses("once", 120);
    const id = await campaignOf(list);
    await start();
    const counts = await completed(id);
    expect(counts.sent).toBe(120);
    expect(counts.failed + counts.unknown + counts.pending).toBe(0);
    const tagged = smtp.received.filter((m) =>
      m.envelopeTo.some((to) => to.startsWith(`once-${backendName.replace("+", "-")}`)),
    );
    expect(tagged).toHaveLength(120);
    expect(smtp.duplicates().filter((a) => a.startsWith("once-"))).toEqual([]);
    const sample = tagged.find((m) => m.envelopeTo[0]!.includes("-7@"))!;
    expect(sample.subject).toBe("Xin chào Nguyễn Văn 7");
    expect(sample.text).toContain("Chào Nguyễn Văn 7");
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 1000 });
    expect(rows.every((r) => r.messageId && r.sentAt && r.lastResponse?.startsWith("250"))).toBe(true);
  });

  it("never has more recipients sending than its bound from the pool size, and fills the pool", async () => {
    const tag = `slots-${backendName.replace("+", "-")}`;
    smtp.setScript(({ recipient }) => (recipient.startsWith(tag) ? { delayMs: 60 } : "accept"));
    const id = await campaignOf(addresses("slots", 60));
    await start();
    let most = 0;
    const sampler = setInterval(() => {
      void countsByCampaign(backend.store.db, [id]).then((c) => {
        most = Math.max(most, c.get(id)!.sending);
      });
    }, 5);
    const counts = await completed(id);
    clearInterval(sampler);
    expect(counts.sent).toBe(60);
    // 3 connections: at most 3 transactions in flight and 3 more being recorded.
    expect(most).toBeLessThanOrEqual(unrecordedLimit(POOL_SIZE));
    expect(most).toBeGreaterThan(1);
  });

  it("keeps the counts by status equal to the rows, through every move", async () => {
    smtp.setScript(({ recipient }) => (recipient.includes("-4@") ? { code: 550, message: "no" } : "accept"));
    const id = await campaignOf(addresses("counts", 30));
    await start();
    await completed(id);
    const rows = await sql<{ status: string; n: number }>`
      SELECT status, count(*)::int AS n FROM lovage.recipients WHERE campaign_id = ${id} GROUP BY status`.execute(
      backend.store.db,
    );
    const counted = (await countsByCampaign(backend.store.db, [id])).get(id)!;
    for (const row of rows.rows) expect(counted[row.status as keyof typeof counted]).toBe(row.n);
    expect(counted).toMatchObject({ sent: 29, failed: 1, pending: 0, queued: 0, sending: 0 });
  });

  it("retries a 451 and records both attempts", async () => {
    const tag = `temp-${backendName.replace("+", "-")}`;
    smtp.setScript(({ recipient, attemptsFor }) =>
      recipient.startsWith(tag) && /-\d*0@/.test(recipient) && attemptsFor === 0
        ? { code: 451, message: "4.7.1 try again later" }
        : "accept",
    );
    const id = await campaignOf(addresses("temp", 50));
    await start();
    const counts = await completed(id);
    expect(counts.sent).toBe(50);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 1000 });
    const retried = rows.filter((r) => r.attempts === 2);
    expect(retried).toHaveLength(5);
    for (const row of retried) {
      const attempts = await listAttempts(backend.store.db, row.id);
      expect(attempts.map((a) => [a.outcome, a.smtp_code])).toEqual([
        ["retry", 451],
        ["sent", 250],
      ]);
      expect(smtp.deliveries(row.email)).toBe(1);
    }
  });

  it("fails a 550 at once and does not retry it", async () => {
    const tag = `perm-${backendName.replace("+", "-")}`;
    smtp.setScript(({ recipient }) =>
      recipient.startsWith(tag) && recipient.includes("-3@")
        ? { code: 550, message: "5.1.1 no such user" }
        : "accept",
    );
    const id = await campaignOf(addresses("perm", 10));
    await start();
    const counts = await completed(id);
    expect(counts).toMatchObject({ sent: 9, failed: 1 });
    const [failed] = await listRecipients(backend.store.db, { campaignId: id, status: "failed", limit: 10 });
    expect(failed!.attempts).toBe(1);
    expect(failed!.lastError).toMatch(/550 5\.1\.1 no such user/);
    expect(smtp.deliveries(failed!.email)).toBe(0);
  });

  it("gives up after the last attempt when the server keeps answering 4xx", async () => {
    const tag = `busy-${backendName.replace("+", "-")}`;
    smtp.setScript(({ recipient }) =>
      recipient.startsWith(tag) ? { code: 450, message: "mailbox busy" } : "accept",
    );
    const id = await campaignOf(addresses("busy", 3));
    await start({ maxAttempts: 3 });
    const counts = await completed(id);
    expect(counts.failed).toBe(3);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 10 });
    for (const row of rows) {
      expect(row.attempts).toBe(3);
      expect(row.lastError).toMatch(/gave up after 3 attempts/);
    }
  });

  it("marks a recipient unknown when the server hangs up mid-transaction, and never re-sends it", async () => {
    const tag = `hang-${backendName.replace("+", "-")}`;
    smtp.setScript(({ recipient }) =>
      recipient.startsWith(tag) && recipient.includes("-2@") ? "hangup" : "accept",
    );
    const id = await campaignOf(addresses("hang", 6));
    await start();
    const counts = await completed(id);
    expect(counts).toMatchObject({ sent: 5, unknown: 1 });
    const [unknown] = await listRecipients(backend.store.db, {
      campaignId: id,
      status: "unknown",
      limit: 10,
    });
    expect(unknown!.attempts).toBe(1);
    expect(unknown!.lastError).toMatch(/may have been delivered/);
  });

  it("re-queues recipients whose batch the broker lost, and sends each once", async () => {
    smtp.setScript(() => "accept");
    const id = await campaignOf(addresses("lost", 40));
    // Dispatch without workers, then lose every queued batch, as a Redis restarted empty would.
    const dispatcher = dispatch();
    await waitFor(async () => (await countsByCampaign(backend.store.db, [id])).get(id)!.queued === 40, {
      message: "all 40 queued",
    });
    await dispatcher.close();
    await backend.broker.queue(EMAIL_QUEUE).obliterate({ force: true });
    await start();
    const counts = await completed(id);
    expect(counts.sent).toBe(40);
    const lost = smtp.received.filter((m) =>
      m.envelopeTo.some((to) => to.startsWith(`lost-${backendName.replace("+", "-")}`)),
    );
    expect(lost).toHaveLength(40);
  });

  it("turns a recipient left sending past its lease into unknown", async () => {
    const id = await campaignOf(addresses("lease", 2));
    // A worker that died mid-transaction leaves its row sending with a lease in the past.
    await sql`UPDATE lovage.recipients SET status = 'sending', attempts = 1,
      lease_expires_at = now() - interval '1 second' WHERE campaign_id = ${id} AND email LIKE '%-0@%'`.execute(
      backend.store.db,
    );
    await start();
    const counts = await completed(id);
    expect(counts).toMatchObject({ sent: 1, unknown: 1 });
  });
});
