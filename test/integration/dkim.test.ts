/**
 * DKIM: a message signed by nodemailer's signer with a key the test made, sent through a real
 * SMTP server, verifies with mailauth (an independent verifier) against the public key the test
 * publishes through mailauth's resolver; a message altered in transit does not.
 */
import { generateKeyPairSync } from "node:crypto";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildMessage, compileMessage } from "../../src/mail/message.js";
import { createTokens } from "../../src/mail/tokens.js";
import { createSmtpTransport } from "../../src/mail/transport-pool.js";
import type { CampaignRow } from "../../src/db/campaigns.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const campaign: CampaignRow = {
  id: 7,
  name: "dkim",
  from: "Tin tức: Ánh Dương <news@shop.example>",
  subject: "Xin chào {{name}}",
  text: null,
  html: "<p>Chào {{name}}, giảm giá 50%!</p>\n<p>.</p>\n" + "<p>dòng dài ".repeat(40),
  priority: 0,
  sendAt: null,
  replyTo: "Hỗ trợ (Hà Nội) <help@shop.example>",
  headers: { "List-Id": "<news.shop.example>" },
  listUnsubscribe: true,
  ignoreManualSuppressions: false,
  status: "sending",
  statusReason: null,
  total: 1,
  createdAt: new Date(),
  startedAt: new Date(),
  completedAt: null,
};

describe("DKIM signing", () => {
  let smtp: TestSmtpServer;
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const publicDer = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  const resolver = async (name: string, type: string) => {
    if (type === "TXT" && name === "lovage1._domainkey.shop.example")
      return [[`v=DKIM1; k=rsa; p=${publicDer}`]];
    throw Object.assign(new Error(`no ${type} for ${name}`), { code: "ENOTFOUND" });
  };

  beforeAll(async () => {
    smtp = await startTestSmtpServer();
  });
  afterAll(async () => {
    await smtp?.close();
  });

  it("signs every message so that an independent verifier passes it, and fails it once altered", async () => {
    const transport = createSmtpTransport([smtp.url], {
      poolSize: 1,
      timeoutMs: 10_000,
      connection: {
        dkim: {
          domainName: "shop.example",
          keySelector: "lovage1",
          privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        },
      },
    });
    try {
      const message = buildMessage(
        compileMessage(campaign),
        { id: 99, campaignId: 7, address: "Bé.An@example.com", fields: { name: 'Bé "An", (Huế)' } },
        { tokens: createTokens("a dkim test secret of length"), publicUrl: "https://lists.shop.example" },
      );
      const result = await transport.send(message);
      expect(result.ok, JSON.stringify(result)).toBe(true);
    } finally {
      transport.close();
    }
    const raw = smtp.received.at(-1)!.raw;
    expect(raw).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=shop\.example;/m);

    // RFC 8058 §4: the one-click headers are covered by the signature.
    const signedNames = /^DKIM-Signature:[^]*?\bh=([^;]+);/m.exec(raw)![1]!.replace(/\s+/g, "").split(":");
    expect(signedNames).toEqual(
      expect.arrayContaining(["list-unsubscribe", "list-unsubscribe-post", "x-lovage-recipient"]),
    );

    const verified = await dkimVerify(Buffer.from(raw), { resolver });
    expect(verified.results).toHaveLength(1);
    expect(verified.results[0]!.status.result).toBe("pass");
    expect(verified.results[0]!.signingDomain).toBe("shop.example");
    // Aligned with From for DMARC: the signing domain is the From domain.
    expect(verified.headerFrom).toEqual(["news@shop.example"]);

    const altered = raw.replace("Subject: ", "Subject: Re: ");
    const failed = await dkimVerify(Buffer.from(altered), { resolver });
    expect(failed.results[0]!.status.result).toBe("fail");
  });
});
