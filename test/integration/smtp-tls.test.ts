/**
 * TLS on the wire, against real smtp-server instances with a certificate the test made:
 * STARTTLS whenever offered, `tls=required` refusing to go on in clear, `tls=none` for a
 * catcher, `smtps://` implicit TLS, the certificate verified against LOVAGE_SMTP_CA_FILE, and
 * the EHLO name. Every failure before MAIL FROM is temporary and nothing reaches the server.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSmtpTransport, type SendResult } from "../../src/mail/transport-pool.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";
import { makeTestCertificates, type TestCertificates } from "../helpers/tls-cert.js";

const message = (to: string) => ({
  from: { name: "Lovage test", address: "sender@example.com" },
  to: { name: "", address: to },
  subject: "TLS",
  text: "hello",
  messageId: `<${to.replace(/\W/g, "")}@example.com>`,
});

describe("TLS to SMTP servers", () => {
  let certs: TestCertificates;
  let starttls: TestSmtpServer;
  let plain: TestSmtpServer;
  let implicit: TestSmtpServer;

  beforeAll(async () => {
    certs = makeTestCertificates();
    starttls = await startTestSmtpServer({ tls: { key: certs.key, cert: certs.cert } });
    plain = await startTestSmtpServer();
    implicit = await startTestSmtpServer({ tls: { key: certs.key, cert: certs.cert, implicit: true } });
  });

  afterAll(async () => {
    await Promise.all([starttls?.close(), plain?.close(), implicit?.close()]);
    certs?.remove();
  });

  async function sendVia(url: string, to: string, ca: string | null = certs.ca): Promise<SendResult> {
    const transport = createSmtpTransport([url], {
      poolSize: 1,
      timeoutMs: 10_000,
      connection: { ca: ca ?? undefined, ehloName: "mail.lovage.example" },
    });
    try {
      return await transport.send(message(to));
    } finally {
      transport.close();
    }
  }

  const receivedFor = (server: TestSmtpServer, to: string) =>
    server.received.filter((m) => m.envelopeTo.includes(to));

  it("uses STARTTLS when the server offers it, on a plain smtp:// URL with credentials", async () => {
    const url = starttls.url.replace("smtp://", "smtp://user:secret@");
    const result = await sendVia(url, "opportunistic@example.com");
    expect(result.ok, JSON.stringify(result)).toBe(true);
    const [got] = receivedFor(starttls, "opportunistic@example.com");
    expect(got?.secure).toBe(true);
    expect(got?.clientHostname).toBe("mail.lovage.example");
  });

  it("refuses a certificate its CA file does not vouch for, as a temporary failure, sending nothing", async () => {
    const other = readFileSync(certs.otherCaFile, "utf8");
    const result = await sendVia(starttls.url, "untrusted@example.com", other);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.kind).toBe("temporary");
    expect(result.error).toMatch(/TLS|certificate/i);
    expect(receivedFor(starttls, "untrusted@example.com")).toEqual([]);
  });

  it("refuses a certificate without a CA file (verification is on by default)", async () => {
    const result = await sendVia(starttls.url, "no-ca@example.com", null);
    expect(result).toMatchObject({ ok: false, kind: "temporary" });
    expect(receivedFor(starttls, "no-ca@example.com")).toEqual([]);
  });

  it("with tls=required, never sends in clear to a server without STARTTLS (temporary, naming TLS)", async () => {
    const result = await sendVia(`${plain.url}?tls=required`, "required@example.com");
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.kind).toBe("temporary");
    expect(result.error).toMatch(/TLS/);
    expect(receivedFor(plain, "required@example.com")).toEqual([]);
  });

  it("with tls=required, sends over STARTTLS when offered", async () => {
    const result = await sendVia(`${starttls.url}?tls=required`, "required-ok@example.com");
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(receivedFor(starttls, "required-ok@example.com")[0]?.secure).toBe(true);
  });

  it("with tls=none, stays in clear even when STARTTLS is offered", async () => {
    const result = await sendVia(`${starttls.url}?tls=none`, "none@example.com");
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(receivedFor(starttls, "none@example.com")[0]?.secure).toBe(false);
  });

  it("speaks TLS from the first byte on smtps://, and verifies that certificate too", async () => {
    const result = await sendVia(implicit.url, "implicit@example.com");
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(receivedFor(implicit, "implicit@example.com")[0]?.secure).toBe(true);
    const refused = await sendVia(implicit.url, "implicit-untrusted@example.com", null);
    expect(refused).toMatchObject({ ok: false, kind: "temporary" });
    expect(receivedFor(implicit, "implicit-untrusted@example.com")).toEqual([]);
  });
});
