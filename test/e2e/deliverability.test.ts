/**
 * The deliverability settings as `lovage start` reads them: a DKIM key file, a public URL, a
 * VERP bounce address and a bounce listener port, against a real SMTP server. What this test
 * adds to the integration suites is the wiring: the settings reach the workers and the API.
 */
import { generateKeyPairSync } from "node:crypto";
import { connect } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/services.js";
import { api, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

describe("lovage start with the deliverability settings", () => {
  let smtp: TestSmtpServer;
  let lovage: LovageProcess | undefined;
  let dir: string;
  let bouncePort: number;
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });

  beforeAll(async () => {
    smtp = await startTestSmtpServer();
    dir = mkdtempSync(join(tmpdir(), "lovage-deliverability-"));
    bouncePort = await freePort();
    writeFileSync(join(dir, "dkim.pem"), privateKey.export({ type: "pkcs8", format: "pem" }));
    lovage = await startLovage({
      env: {
        LOVAGE_SMTP_URL: smtp.url,
        LOVAGE_DEFAULT_FROM: "Tin tức: Shop <news@shop.example>",
        LOVAGE_PUBLIC_URL: "https://lists.shop.example",
        LOVAGE_DKIM_DOMAIN: "shop.example",
        LOVAGE_DKIM_SELECTOR: "s1",
        LOVAGE_DKIM_KEY_FILE: join(dir, "dkim.pem"),
        LOVAGE_BOUNCE_ADDRESS: "bounces+{token}@shop.example",
        LOVAGE_BOUNCE_SMTP_PORT: String(bouncePort),
      },
    });
  });
  afterAll(async () => {
    await lovage?.dispose();
    await smtp?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("signs, adds one-click unsubscribe and a VERP sender, and honours the link", async () => {
    const { status } = await api(lovage!, "POST", "/api/campaigns", {
      subject: "Xin chào {{name}}",
      text: "Chào {{name}}",
      recipients: "Ann <Ann@example.com>",
    });
    expect(status).toBe(202);
    const message = await waitFor(() => smtp.received.find((m) => m.envelopeTo.includes("Ann@example.com")), {
      message: "the message delivered",
    });
    expect(message.from).toMatch(/^bounces\+[a-z2-7]{26}@shop\.example$/);
    const publicDer = publicKey.export({ type: "spki", format: "der" }).toString("base64");
    const verified = await dkimVerify(Buffer.from(message.raw), {
      resolver: async (name: string) => {
        if (name === "s1._domainkey.shop.example") return [[`v=DKIM1; k=rsa; p=${publicDer}`]];
        throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
      },
    });
    expect(verified.results[0]?.status.result).toBe("pass");
    const link = /^List-Unsubscribe: <https:\/\/lists\.shop\.example(\/u\/[a-z2-7]{26})>/m.exec(
      message.raw,
    )?.[1];
    expect(link).toBeDefined();
    const page = await fetch(`${lovage!.url}${link}`);
    expect(page.status).toBe(200);
    const click = await fetch(`${lovage!.url}${link}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(click.status).toBe(200);
    const { body } = await api<{ suppressions: { email: string; reason: string }[] }>(
      lovage!,
      "GET",
      "/api/suppressions",
    );
    expect(body.suppressions).toMatchObject([{ email: "ann@example.com", reason: "unsubscribed" }]);
    // The bounce listener answers on its port with an SMTP greeting.
    const greeting = await new Promise<string>((resolve, reject) => {
      const socket = connect(bouncePort, "127.0.0.1");
      socket.once("data", (data) => {
        socket.destroy();
        resolve(data.toString());
      });
      socket.once("error", reject);
    });
    expect(greeting).toMatch(/^220 /);
  });

  it("sends a test message through the relay and answers with its reply", async () => {
    const { status, body } = await api<{ ok: boolean; response: string }>(
      lovage!,
      "POST",
      "/api/campaigns/test-send",
      {
        subject: "Test",
        text: "Hello",
        to: "Tester <tester@example.com>",
      },
    );
    expect(status).toBe(200);
    expect(body).toMatchObject({ ok: true, response: expect.stringMatching(/^250/) as unknown });
  });
});
