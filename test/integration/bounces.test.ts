/**
 * Bounces and complaints, each from a message the test builds: a DSN (RFC 3464) for a hard
 * bounce sent to the VERP envelope sender through the bounce listener, an ARF complaint (RFC
 * 5965) matched by the X-Lovage-Recipient of the original it quotes, soft bounces past the
 * limit and a complaint by `POST /api/bounces`; and a malformed report, logged and dropped.
 */
import { sign } from "node:crypto";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/api/app.js";
import { getCampaign } from "../../src/db/campaigns.js";
import { listAttempts, listRecipients } from "../../src/db/recipients.js";
import { listSuppressions } from "../../src/db/suppressions.js";
import { openBounceListener, type BounceListener } from "../../src/mail/bounce-listener.js";
import { createDispatcher, type Dispatcher } from "../../src/mail/dispatcher.js";
import type { MessageSettings } from "../../src/mail/message.js";
import { createSendBatchTask } from "../../src/mail/send-batch.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createSmtpTransport, type Transport } from "../../src/mail/transport-pool.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { createDispatchStore, createFeedbackStore, createSendStore } from "../../src/stores.js";
import { openTestApi, type TestApi } from "../helpers/api-app.js";
import { waitFor } from "../helpers/lovage-process.js";
import { makeTestCertificates } from "../helpers/tls-cert.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const BOUNCE = "bounces+{token}@shop.example";
const settings: MessageSettings = {
  tokens: createTokens("a bounces test secret, long enough"),
  bounceAddress: BOUNCE,
};

describe("bounces and complaints", () => {
  let api: TestApi;
  let smtp: TestSmtpServer;
  let listener: BounceListener;
  const warnings: string[] = [];
  let running: { worker: RunningWorker; dispatcher: Dispatcher; transport: Transport } | undefined;
  let campaignId: number;

  beforeAll(async () => {
    api = await openTestApi();
    smtp = await startTestSmtpServer();
    listener = await openBounceListener({
      store: createFeedbackStore(api.store.db),
      settings: { tokens: settings.tokens, softBounceLimit: 2, bounceAddress: BOUNCE },
      port: 0,
      host: "127.0.0.1",
      logger: { info: () => undefined, warn: (_obj, msg) => warnings.push(msg) },
    });
    const transport = createSmtpTransport([smtp.url], { poolSize: 2, timeoutMs: 5_000 });
    const registry = new TaskRegistry().register(
      createSendBatchTask({
        store: createSendStore(api.store.db),
        transport,
        workerId: "bounce-test",
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
    const app = await buildApp({ ...api.deps, messageSettings: settings, softBounceLimit: 2 });
    const created = await app.inject({
      method: "POST",
      url: "/api/campaigns",
      headers: { authorization: `Bearer ${api.token}` },
      payload: {
        from: "Shop <news@shop.example>",
        subject: "Tin",
        text: "Chào {{name}}",
        recipients: "Ann@example.com\nbe@example.com\ncu@example.com\ndo@example.com",
      },
    });
    await app.close();
    campaignId = created.json<{ campaign: { id: number } }>().campaign.id;
    await waitFor(async () => (await getCampaign(api.store.db, campaignId))?.status === "completed", {
      timeoutMs: 45_000,
      message: "campaign completed",
    });
  });
  afterAll(async () => {
    if (running) {
      await running.dispatcher.close();
      await running.worker.close({ timeoutMs: 5_000 });
      running.transport.close();
    }
    await listener?.close();
    await smtp?.close();
    await api?.close();
  });

  const rowOf = async (email: string) =>
    (await listRecipients(api.store.db, { campaignId, limit: 10 })).find((r) => r.email === email)!;
  const receivedFor = (address: string) => smtp.received.find((m) => m.envelopeTo.includes(address))!;
  const headerBlock = (raw: string) => raw.slice(0, raw.indexOf("\r\n\r\n") + 2);

  async function deliver(to: string, raw: string) {
    const client = nodemailer.createTransport({
      host: "127.0.0.1",
      port: listener.port,
      secure: false,
      ignoreTLS: true,
    });
    try {
      return (await client.sendMail({ envelope: { from: "", to: [to] }, raw })) as { response: string };
    } finally {
      client.close();
    }
  }

  it("sends with a VERP envelope sender that names the recipient", () => {
    const ann = receivedFor("Ann@example.com");
    expect(ann.from).toMatch(/^bounces\+[a-z2-7]{26}@shop\.example$/);
    const token = ann.from.slice("bounces+".length, ann.from.indexOf("@"));
    expect(settings.tokens.read("recipient", token)).toBeDefined();
  });

  it("marks a recipient bounced and suppresses it from a DSN sent to its VERP address", async () => {
    const ann = receivedFor("Ann@example.com");
    const dsn = [
      "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>",
      `To: ${ann.from}`,
      "Subject: Undelivered Mail Returned to Sender",
      "MIME-Version: 1.0",
      'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
      "",
      "--b1",
      "Content-Type: text/plain; charset=utf-8",
      "",
      "Your message could not be delivered.",
      "--b1",
      "Content-Type: message/delivery-status",
      "",
      "Reporting-MTA: dns; mx.example.net",
      "",
      "Final-Recipient: rfc822; Ann@example.com",
      "Action: failed",
      "Status: 5.1.1",
      "Diagnostic-Code: smtp; 550 5.1.1 <Ann@example.com>: Recipient address rejected:",
      " User unknown in virtual mailbox table",
      "",
      "--b1",
      "Content-Type: text/rfc822-headers",
      "",
      headerBlock(ann.raw),
      "--b1--",
      "",
    ].join("\r\n");
    const answer = await deliver(ann.from, dsn);
    expect(answer.response).toMatch(/^250/);
    await waitFor(async () => (await rowOf("ann@example.com")).status === "bounced", {
      message: "ann bounced",
    });
    const row = await rowOf("ann@example.com");
    expect(row.lastError).toMatch(/^5\.1\.1 550 5\.1\.1 .*User unknown in virtual mailbox table/);
    const attempts = await listAttempts(api.store.db, row.id);
    expect(attempts.map((a) => a.outcome)).toEqual(["sent", "bounced"]);
    expect(await listSuppressions(api.store.db, { q: "ann@", limit: 5 })).toMatchObject([
      { email: "ann@example.com", reason: "bounced", campaignId },
    ]);
  });

  it("marks a recipient complained from an ARF report, matched by the X-Lovage-Recipient it quotes", async () => {
    const be = receivedFor("be@example.com");
    const arf = [
      "From: staff@hotmail.example",
      "To: fbl@shop.example",
      "Subject: complaint about message",
      "MIME-Version: 1.0",
      'Content-Type: multipart/report; report-type=feedback-report; boundary="b2"',
      "",
      "--b2",
      "Content-Type: text/plain",
      "",
      "This is an email abuse report.",
      "--b2",
      "Content-Type: message/feedback-report",
      "",
      "Feedback-Type: abuse",
      "User-Agent: SomeGenerator/1.0",
      "Version: 1",
      "",
      "--b2",
      "Content-Type: message/rfc822",
      "",
      be.raw,
      "--b2--",
      "",
    ].join("\r\n");
    expect((await deliver("fbl@shop.example", arf)).response).toMatch(/^250/);
    await waitFor(async () => (await rowOf("be@example.com")).status === "complained", {
      message: "be complained",
    });
    expect(await listSuppressions(api.store.db, { q: "be@", limit: 5 })).toMatchObject([
      { email: "be@example.com", reason: "complained" },
    ]);
  });

  it("unsubscribes on a mailto: request whose subject carries the unsubscribe token", async () => {
    const cu = await rowOf("cu@example.com");
    const token = settings.tokens.make("unsubscribe", cu.id);
    const before = await listSuppressions(api.store.db, { q: "cu@", limit: 5 });
    expect(before).toEqual([]);
    await deliver(
      "unsubscribe@shop.example",
      `From: cu@example.com\r\nSubject: unsubscribe ${token}\r\n\r\n`,
    );
    await waitFor(async () => (await listSuppressions(api.store.db, { q: "cu@", limit: 5 })).length === 1, {
      message: "cu unsubscribed",
    });
    expect(await listSuppressions(api.store.db, { q: "cu@", limit: 5 })).toMatchObject([
      { email: "cu@example.com", reason: "unsubscribed" },
    ]);
  });

  it("logs and drops a malformed report without changing anything", async () => {
    const before = await listSuppressions(api.store.db, { limit: 100 });
    const answer = await deliver(
      "bounces+notatoken@shop.example",
      "From: x@y.example\r\nSubject: hello\r\nContent-Type: multipart/report; boundary=zz\r\n\r\n--zz\r\ngarbage\r\n",
    );
    expect(answer.response).toMatch(/^250/);
    await waitFor(() => warnings.some((w) => w.includes("dropped")), { message: "a warning" });
    expect(await listSuppressions(api.store.db, { limit: 100 })).toEqual(before);
    expect((await rowOf("cu@example.com")).status).toBe("sent");
  });

  it("counts soft bounces from POST /api/bounces and suppresses after the limit; takes complaints for any address", async () => {
    const app = await buildApp({ ...api.deps, messageSettings: settings, softBounceLimit: 2 });
    try {
      const cu = receivedFor("cu@example.com");
      const token = /X-Lovage-Recipient: ([a-z2-7]+)/.exec(cu.raw)![1]!;
      const post = (payload: object) =>
        app.inject({
          method: "POST",
          url: "/api/bounces",
          headers: { authorization: `Bearer ${api.token}` },
          payload,
        });
      const first = await post({
        address: "cu@example.com",
        type: "soft",
        recipientId: token,
        diagnostic: "452 4.2.2 mailbox full",
      });
      expect(first.json()).toMatchObject({ kind: "soft", status: "sent", suppressed: false });
      expect((await rowOf("cu@example.com")).status).toBe("sent");
      const second = await post({
        address: "cu@example.com",
        type: "soft",
        messageId: cu.messageId,
        diagnostic: "452 4.2.2 mailbox full",
      });
      expect(second.json()).toMatchObject({ kind: "soft", status: "bounced", suppressed: true });
      expect(await listSuppressions(api.store.db, { q: "cu@", limit: 5 })).toMatchObject([
        {
          email: "cu@example.com",
          reason: "bounced",
          detail: expect.stringMatching(/^2 soft bounces/) as unknown,
        },
      ]);
      const stranger = await post({ address: "Stranger@Elsewhere.example", type: "complaint" });
      expect(stranger.json()).toMatchObject({ recipientId: null, suppressed: true });
      expect(await listSuppressions(api.store.db, { q: "stranger", limit: 5 })).toMatchObject([
        { email: "stranger@elsewhere.example", reason: "complained" },
      ]);
      const bad = await post({ address: "x@y.example", type: "hard", recipientId: "forged" });
      expect(bad.statusCode).toBe(400);
      const view = await app.inject({
        method: "GET",
        url: `/api/campaigns/${campaignId}`,
        headers: { authorization: `Bearer ${api.token}` },
      });
      expect(view.json()).toMatchObject({ counts: { sent: 1, bounced: 2, complained: 1 } });
    } finally {
      await app.close();
    }
  });

  it("applies an SES bounce through SNS only when its signature verifies, and confirms a subscription", async () => {
    const certs = makeTestCertificates();
    const fetched: string[] = [];
    const certUrl = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem";
    const app = await buildApp({
      ...api.deps,
      messageSettings: settings,
      snsFetch: async (url) => {
        fetched.push(url);
        return url === certUrl ? certs.cert : "<ConfirmSubscriptionResponse/>";
      },
    });
    try {
      const doMail = receivedFor("do@example.com");
      const token = /X-Lovage-Recipient: ([a-z2-7]+)/.exec(doMail.raw)![1]!;
      const notification = {
        notificationType: "Bounce",
        bounce: {
          bounceType: "Permanent",
          bouncedRecipients: [
            { emailAddress: "do@example.com", diagnosticCode: "smtp; 550 5.1.1 user unknown" },
          ],
        },
        mail: {
          headers: [{ name: "X-Lovage-Recipient", value: token }],
          commonHeaders: { messageId: doMail.messageId },
        },
      };
      const signed = <T extends Record<string, string>>(fields: T, keys: string[]) => {
        const text = keys.map((key) => `${key}\n${fields[key]}\n`).join("");
        return {
          ...fields,
          SignatureVersion: "2",
          SigningCertURL: certUrl,
          Signature: sign("RSA-SHA256", Buffer.from(text), certs.key).toString("base64"),
        };
      };
      const base = {
        Type: "Notification",
        MessageId: "m-1",
        TopicArn: "arn:aws:sns:eu-west-1:123:ses-bounces",
        Message: JSON.stringify(notification),
        Timestamp: "2026-12-02T00:00:00.000Z",
      };
      const message = signed(base, ["Message", "MessageId", "Timestamp", "TopicArn", "Type"]);
      const post = (body: object, query = "") =>
        app.inject({
          method: "POST",
          url: `/api/webhooks/ses${query}`,
          headers: { "content-type": "text/plain; charset=UTF-8" },
          payload: JSON.stringify(body),
        });

      const forged = await post({ ...message, Message: message.Message.replace("do@", "ann@") });
      expect(forged.statusCode).toBe(403);
      expect((await post({ ...base })).statusCode).toBe(403);
      expect((await post({ ...message, SigningCertURL: "https://evil.example/cert.pem" })).statusCode).toBe(
        403,
      );
      expect((await rowOf("do@example.com")).status).toBe("sent");

      const accepted = await post(message);
      expect(accepted.statusCode, accepted.body).toBe(200);
      expect(accepted.json()).toMatchObject({
        results: [{ kind: "hard", status: "bounced", suppressed: true }],
      });
      const row = await rowOf("do@example.com");
      expect(row.status).toBe("bounced");
      expect(row.lastError).toMatch(/SES Permanent: smtp; 550 5\.1\.1 user unknown/);
      expect(fetched).toEqual([certUrl]);

      const subscribe = signed(
        {
          Type: "SubscriptionConfirmation",
          MessageId: "m-2",
          TopicArn: base.TopicArn,
          Message: "You have chosen to subscribe",
          SubscribeURL: "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t",
          Timestamp: base.Timestamp,
          Token: "t",
        },
        ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
      );
      expect((await post(subscribe)).json()).toEqual({ confirmed: true });
      expect(fetched.at(-1)).toBe(subscribe.SubscribeURL);
    } finally {
      await app.close();
      certs.remove();
    }
  });
});
