/**
 * What Lovage puts on the wire, through the whole pipeline (dispatcher, worker, store, broker)
 * to a real SMTP server, every captured message parsed with mailparser: display names with
 * `:`, `(…)`, `;`, quotes and commas round-trip exactly, addresses keep their case, one ASCII
 * Message-ID per recipient stable across a retry, the X-Lovage-* ids, Reply-To and extra
 * headers, a text part for HTML-only campaigns, no header or recipient from a CR/LF, and
 * `tls=required` never sending in clear.
 */
import { domainToASCII } from "node:url";
import { simpleParser, type AddressObject, type ParsedMail } from "mailparser";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { getCampaign, type NewCampaign } from "../../src/db/campaigns.js";
import { countsByCampaign, listRecipients } from "../../src/db/recipients.js";
import { createCampaign } from "../../src/mail/campaigns.js";
import { createDispatcher, type Dispatcher } from "../../src/mail/dispatcher.js";
import { parseJsonRecipients } from "../../src/mail/recipients/parse.js";
import { createSendBatchTask } from "../../src/mail/send-batch.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createSmtpTransport, type Transport } from "../../src/mail/transport-pool.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { createCampaignStore, createDispatchStore, createSendStore } from "../../src/stores.js";
import { openBackend, type Backend } from "../helpers/backends.js";
import { waitFor } from "../helpers/lovage-process.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";
import { makeTestCertificates, type TestCertificates } from "../helpers/tls-cert.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const tokens = createTokens("a wire test secret, 32 characters");

const NAMES = [
  "Tin tức: Ánh Dương",
  "Ánh Dương (Hà Nội)",
  "Shop; Hà Nội",
  'Nguyễn "Bé" Văn',
  "Trần, Thị B",
  'Back\\slash "and" quotes',
  "Plain Ascii",
  "a:b (c); d, e",
];

describe("the message on the wire", () => {
  let backend: Backend;
  let smtp: TestSmtpServer;
  let certs: TestCertificates;
  /** A relay that offers STARTTLS, with a certificate of the test's own CA. */
  let tlsRelay: TestSmtpServer;
  let running: { worker: RunningWorker; dispatcher: Dispatcher; transport: Transport } | undefined;

  beforeAll(async () => {
    backend = await openBackend("embedded");
    smtp = await startTestSmtpServer({ stage: "data" });
    certs = makeTestCertificates();
    tlsRelay = await startTestSmtpServer({ tls: { key: certs.key, cert: certs.cert } });
  });
  afterEach(async () => {
    if (!running) return;
    await running.dispatcher.close();
    await running.worker.close({ timeoutMs: 5_000 });
    running.transport.close();
    running = undefined;
  });
  afterAll(async () => {
    await smtp?.close();
    await tlsRelay?.close();
    certs?.remove();
    await backend?.close();
  });

  async function start(url = smtp.url, maxAttempts = 3) {
    const transport = createSmtpTransport([url], {
      poolSize: 2,
      timeoutMs: 5_000,
      connection: { ca: certs.ca },
    });
    const registry = new TaskRegistry().register(
      createSendBatchTask({
        store: createSendStore(backend.store.db),
        transport,
        workerId: "wire-test",
        maxAttempts,
        retryMaxAgeMs: 24 * 3600_000,
        retryBaseMs: 20,
        leaseMs: 30_000,
        message: { tokens },
        logger: quiet,
      }),
    );
    const worker = await startWorker({ broker: backend.broker, registry, concurrency: 2, logger: quiet });
    const dispatcher = createDispatcher({
      store: createDispatchStore(backend.store.db),
      producer: createProducer(backend.broker),
      batchSize: 10,
      idleIntervalMs: 50,
      lostBatchAfterMs: 300,
      logger: quiet,
    });
    running = { worker, dispatcher, transport };
  }

  async function campaign(fields: Partial<NewCampaign>, recipients: unknown) {
    const created = await createCampaign(
      createCampaignStore(backend.store.db),
      {
        name: "wire",
        from: "Sender <sender@example.com>",
        subject: "Xin chào {{name}}",
        text: "Chào {{name}}",
        html: null,
        priority: 0,
        sendAt: null,
        replyTo: null,
        headers: {},
        listUnsubscribe: true,
        ignoreManualSuppressions: false,
        ...fields,
      },
      parseJsonRecipients(recipients),
    );
    return created.campaignId;
  }

  async function completed(id: number) {
    await waitFor(async () => (await getCampaign(backend.store.db, id))?.status === "completed", {
      timeoutMs: 45_000,
      message: `campaign ${id} completed`,
    });
    return (await countsByCampaign(backend.store.db, [id])).get(id)!;
  }

  /** Every accepted message to these addresses, parsed, with the raw text it came from. */
  async function captured(match: (to: string) => boolean): Promise<{ raw: string; mail: ParsedMail }[]> {
    const messages = smtp.received.filter((m) => m.envelopeTo.some(match));
    return Promise.all(messages.map(async (m) => ({ raw: m.raw, mail: await simpleParser(m.raw) })));
  }

  const single = (address: AddressObject | AddressObject[] | undefined) => {
    const list = [address ?? []].flat().flatMap((a) => a.value);
    expect(list).toHaveLength(1);
    return list[0]!;
  };

  it("keeps every display name exactly and the case of every address, in From, To and Reply-To", async () => {
    smtp.setScript(() => "accept");
    const ids: number[] = [];
    for (const [i, fromName] of NAMES.entries()) {
      const quoted = `"${fromName.replace(/(["\\])/g, "\\$1")}"`;
      ids.push(
        await campaign(
          {
            from: `${i % 2 === 0 ? fromName : quoted} <News.Letter@Shop.example>`,
            replyTo: `${quoted} <Replies+${i}@Example.com>`,
            headers: { "List-Id": `<news-${i}.shop.example>`, "X-Campaign-Tag": `tag ${i}` },
          },
          NAMES.map((name, j) => ({ email: `Case.Kept-${i}-${j}@Example.COM`, name })),
        ),
      );
    }
    await start();
    for (const id of ids) expect((await completed(id)).sent).toBe(NAMES.length);

    const messages = await captured((to) => to.startsWith("Case.Kept-"));
    expect(messages).toHaveLength(NAMES.length * NAMES.length);
    for (const { raw, mail } of messages) {
      const [, i, j] = /Case\.Kept-(\d+)-(\d+)@/.exec(single(mail.to).address!)!.map(Number);
      expect(single(mail.from)).toEqual({ name: NAMES[i!], address: "News.Letter@shop.example" });
      expect(single(mail.to)).toEqual({ name: NAMES[j!], address: `Case.Kept-${i}-${j}@example.com` });
      expect(single(mail.replyTo)).toEqual({ name: NAMES[i!], address: `Replies+${i}@example.com` });
      expect(mail.subject).toBe(`Xin chào ${NAMES[j!]}`);
      expect(raw).toMatch(new RegExp(`\\r\\nList-Id: <news-${i}\\.shop\\.example>\\r\\n`, "i"));
      expect(mail.headers.get("x-campaign-tag")).toBe(`tag ${i}`);
      // No line over 78 octets, every header ASCII (no SMTPUTF8 was asked for).
      for (const line of raw.split("\r\n")) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(78);
      const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
      expect(head).toMatch(/^[\x20-\x7e\r\n\t]*$/);
    }
    const envelopes = smtp.received.filter((m) => m.envelopeTo[0]!.startsWith("Case.Kept-"));
    expect(envelopes.every((m) => m.from === "News.Letter@shop.example")).toBe(true);
    expect(envelopes.every((m) => /^Case\.Kept-\d+-\d+@example\.com$/.test(m.envelopeTo[0]!))).toBe(true);
  });

  it("gives each recipient one opaque ASCII Message-ID, the same on a 451-then-250 retry, and X-Lovage ids", async () => {
    smtp.setScript(({ recipient, attemptsFor }) =>
      recipient.startsWith("retry-") && attemptsFor === 0 ? { code: 451, message: "4.7.1 later" } : "accept",
    );
    const id = await campaign(
      { from: "Tin tức <tin@hà-nội.example>" },
      Array.from({ length: 6 }, (_, i) => `retry-${i}@example.com`),
    );
    await start();
    expect((await completed(id)).sent).toBe(6);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 10 });
    expect(rows.every((row) => row.attempts === 2)).toBe(true);
    const messages = await captured((to) => to.startsWith("retry-"));
    expect(messages).toHaveLength(6);
    const seen = new Set<string>();
    for (const { raw, mail } of messages) {
      const row = rows.find((r) => r.address === single(mail.to).address)!;
      expect(mail.messageId).toMatch(new RegExp(`^<[a-z2-7]{26}@${domainToASCII("hà-nội.example")}>$`));
      expect(mail.messageId).toBe(row.messageId);
      expect(seen.has(mail.messageId!)).toBe(false);
      seen.add(mail.messageId!);
      // The refused attempt carried the very same Message-ID.
      const attempts = smtp.dataSeen.filter((raw) => raw.includes(mail.messageId!));
      expect(attempts).toHaveLength(2);
      expect(tokens.read("recipient", mail.headers.get("x-lovage-recipient") as string)).toBe(row.id);
      expect(tokens.read("campaign", mail.headers.get("x-lovage-campaign") as string)).toBe(id);
      // The IDN domain goes punycoded in the headers (no SMTPUTF8 needed); mailparser decodes it.
      expect(raw).toMatch(new RegExp(`\r\nFrom: .* <tin@${domainToASCII("hà-nội.example")}>\r\n`));
      expect(single(mail.from).address).toBe("tin@hà-nội.example");
    }
  });

  it("gives an HTML-only campaign a text part made from the HTML", async () => {
    smtp.setScript(() => "accept");
    const id = await campaign(
      {
        text: null,
        html: '<h1>Xin chào {{name}}</h1><p>Đọc <a href="https://shop.example/x">tin mới</a>.</p>',
      },
      [{ email: "html-only@example.com", name: "Bé <b>" }],
    );
    await start();
    await completed(id);
    const [message] = await captured((to) => to === "html-only@example.com");
    expect(message!.mail.html).toContain("Xin chào Bé &lt;b&gt;");
    expect(message!.mail.text).toMatch(/XIN CHÀO BÉ <B>/);
    expect(message!.mail.text).toContain("tin mới [https://shop.example/x]");
  });

  it("never makes a header or a recipient out of a CR/LF in a recipient's fields", async () => {
    smtp.setScript(() => "accept");
    const id = await campaign({ subject: "Hi {{name}} {{note}}" }, [
      { email: "crlf@example.com", name: "Eve\r\nBcc: stolen@evil.example", note: "x\r\n\r\nbody?" },
    ]);
    await start();
    await completed(id);
    const accepted = smtp.received.filter((m) => m.envelopeTo.includes("crlf@example.com"));
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.envelopeTo).toEqual(["crlf@example.com"]);
    const mail = await simpleParser(accepted[0]!.raw);
    expect(mail.bcc).toBeUndefined();
    expect(mail.headers.has("bcc")).toBe(false);
    expect(single(mail.to).name).toBe("Eve Bcc: stolen@evil.example");
    expect(mail.subject).toBe("Hi Eve Bcc: stolen@evil.example x body?");
    expect(smtp.deliveries("stolen@evil.example")).toBe(0);
  });

  it("sends every message of a campaign over TLS when the relay offers STARTTLS, on a plain smtp:// URL", async () => {
    const list = Array.from({ length: 12 }, (_, i) => `over-tls-${i}@example.com`);
    const id = await campaign({}, list);
    await start(tlsRelay.url);
    expect((await completed(id)).sent).toBe(list.length);
    const received = tlsRelay.received.filter((m) => m.envelopeTo[0]!.startsWith("over-tls-"));
    expect(received).toHaveLength(list.length);
    expect(received.filter((m) => !m.secure)).toEqual([]);
  });

  it("with tls=required, retries then fails recipients of a server without STARTTLS, naming TLS, sending nothing", async () => {
    const id = await campaign({}, ["no-tls-1@example.com", "no-tls-2@example.com"]);
    await start(`${smtp.url}?tls=required`, 2);
    const counts = await completed(id);
    expect(counts.failed).toBe(2);
    const rows = await listRecipients(backend.store.db, { campaignId: id, limit: 10 });
    for (const row of rows) {
      expect(row.attempts).toBe(2);
      expect(row.lastError).toMatch(/TLS.*gave up after 2 attempts/);
    }
    expect(smtp.dataSeen.some((raw) => raw.includes("no-tls-"))).toBe(false);
  });
});
