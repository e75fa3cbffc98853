/**
 * The preview and the test send, over HTTP: the preview renders the headers and both parts for
 * one recipient and stores nothing; the test send goes through a real transport to a real SMTP
 * server and answers with its reply, a refusal included.
 */
import { simpleParser } from "mailparser";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../src/api/app.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createSmtpTransport, type Transport } from "../../src/mail/transport-pool.js";
import { expectError, openTestApi, type TestApi } from "../helpers/api-app.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const campaign = {
  from: "Tin tức: Ánh Dương <news@shop.example>",
  replyTo: "help@shop.example",
  subject: "Xin chào {{name}} ở {{city}}",
  html: "<p>Chào <b>{{name}}</b></p>",
  headers: { "X-Campaign-Tag": "spring" },
};

describe("preview and test send", () => {
  let api: TestApi;
  let smtp: TestSmtpServer;
  let transport: Transport;
  let withTransport: FastifyInstance;

  beforeAll(async () => {
    api = await openTestApi();
    smtp = await startTestSmtpServer();
    smtp.setScript(({ recipient }) =>
      recipient.startsWith("refuse") ? { code: 550, message: "5.1.1 no such user" } : "accept",
    );
    transport = createSmtpTransport([smtp.url], { poolSize: 1, timeoutMs: 5_000 });
    withTransport = await buildApp({
      ...api.deps,
      messageSettings: { tokens: createTokens("a preview test secret value") },
      testTransport: transport,
    });
  });
  afterAll(async () => {
    await withTransport?.close();
    transport?.close();
    await smtp?.close();
    await api?.close();
  });

  it("renders headers, the HTML and a text part for one recipient, and stores nothing", async () => {
    const response = await api.call({
      method: "POST",
      url: "/api/campaigns/preview",
      payload: { ...campaign, to: '"Bé, An" <Be.An@Example.com>', fields: { city: "Huế" } },
    });
    expect(response.statusCode, response.body).toBe(200);
    const preview = response.json<{
      headers: { name: string; value: string }[];
      subject: string;
      text: string;
      html: string;
      raw: string;
    }>();
    expect(preview.subject).toBe("Xin chào Bé, An ở Huế");
    expect(preview.html).toBe("<p>Chào <b>Bé, An</b></p>");
    expect(preview.text).toMatch(/Chào Bé, An/);
    const names = preview.headers.map((h) => h.name.toLowerCase());
    for (const name of [
      "from",
      "to",
      "reply-to",
      "subject",
      "message-id",
      "x-lovage-recipient",
      "x-campaign-tag",
    ])
      expect(names).toContain(name);
    const mail = await simpleParser(preview.raw);
    expect(mail.to).toMatchObject({ value: [{ name: "Bé, An", address: "Be.An@example.com" }] });
    expect(mail.from).toMatchObject({
      value: [{ name: "Tin tức: Ánh Dương", address: "news@shop.example" }],
    });
    const list = await api.call({ method: "GET", url: "/api/campaigns" });
    expect(list.json<{ campaigns: unknown[] }>().campaigns).toEqual([]);
  });

  it("refuses a bad recipient, a bad header and an unknown field, naming each", async () => {
    const bad = await api.call({
      method: "POST",
      url: "/api/campaigns/preview",
      payload: { ...campaign, to: "nobody@" },
    });
    expect(expectError(bad, 400, "bad_request").message).toMatch(/^to: "nobody@" is not a valid address/);
    const header = await api.call({
      method: "POST",
      url: "/api/campaigns/preview",
      payload: { ...campaign, headers: { "Message-ID": "<x@y>" }, to: "a@example.com" },
    });
    expect(expectError(header, 400, "bad_request").message).toMatch(/headers "Message-ID" cannot be set/);
    const unknown = await api.call({
      method: "POST",
      url: "/api/campaigns/preview",
      payload: { ...campaign, to: "a@example.com", recipients: "b@example.com" },
    });
    expect(expectError(unknown, 400, "bad_request").message).toMatch(/recipients: unknown field/);
  });

  it("sends one message through the transport and answers with the server's reply", async () => {
    const response = await withTransport.inject({
      method: "POST",
      url: "/api/campaigns/test-send",
      headers: { authorization: `Bearer ${api.token}` },
      payload: { ...campaign, to: "Tester <Tester@Example.com>", fields: { city: "Đà Nẵng" } },
    });
    expect(response.statusCode, response.body).toBe(200);
    const answer = response.json<{ ok: boolean; response: string; messageId: string }>();
    expect(answer.ok).toBe(true);
    expect(answer.response).toMatch(/^250/);
    const got = smtp.received.find((m) => m.messageId === answer.messageId)!;
    expect(got.envelopeTo).toEqual(["Tester@example.com"]);
    expect(got.subject).toBe("Xin chào Tester ở Đà Nẵng");

    const refused = await withTransport.inject({
      method: "POST",
      url: "/api/campaigns/test-send",
      headers: { authorization: `Bearer ${api.token}` },
      payload: { ...campaign, to: "refuse@example.com" },
    });
    expect(refused.statusCode).toBe(200);
    expect(refused.json()).toMatchObject({ ok: false, kind: "permanent", code: 550 });
    expect(refused.json<{ error: string }>().error).toMatch(/no such user/);
  });

  it("sends a test through the servers the campaign names, and refuses one that is not configured", async () => {
    const other = await startTestSmtpServer();
    const both = createSmtpTransport([`${smtp.url}?name=first`, `${other.url}?name=second`], {
      poolSize: 1,
      timeoutMs: 5_000,
    });
    const named = await buildApp({
      ...api.deps,
      messageSettings: { tokens: createTokens("a preview test secret value") },
      testTransport: both,
      smtpServerNames: () => ["first", "second"],
    });
    try {
      const send = (servers: string[]) =>
        named.inject({
          method: "POST",
          url: "/api/campaigns/test-send",
          headers: { authorization: `Bearer ${api.token}` },
          payload: { ...campaign, servers, to: "named@example.com", fields: { city: "Huế" } },
        });
      for (let i = 0; i < 3; i++) {
        const response = await send(["second"]);
        expect(response.statusCode, response.body).toBe(200);
        expect(response.json()).toMatchObject({ ok: true, server: "second" });
      }
      expect(other.deliveries("named@example.com")).toBe(3);
      const unknown = await send(["third"]);
      expect(expectError(unknown, 400, "bad_request").message).toMatch(/"third".*first, second/);
    } finally {
      await named.close();
      both.close();
      await other.close();
    }
  });

  it("answers 409 when the process has no SMTP server to send through", async () => {
    const response = await api.call({
      method: "POST",
      url: "/api/campaigns/test-send",
      payload: { ...campaign, to: "a@example.com" },
    });
    expect(expectError(response, 409, "conflict").message).toMatch(/LOVAGE_SMTP_URL/);
  });
});
