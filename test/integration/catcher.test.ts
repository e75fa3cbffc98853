import nodemailer, { type NodemailerError, type Transporter } from "nodemailer";
import { afterEach, describe, expect, it } from "vitest";
import { openMailCatcher, type CaughtMessage, type MailCatcher } from "../../src/mail/catcher.js";

describe("mail catcher", () => {
  const opened: { close(): unknown }[] = [];

  async function open(store: (message: CaughtMessage) => Promise<void>): Promise<MailCatcher> {
    const warnings: string[] = [];
    const catcher = await openMailCatcher({
      store: { saveCaughtMessage: store },
      logger: { warn: (_obj, msg) => warnings.push(msg) },
    });
    opened.push(catcher);
    return catcher;
  }

  function transport(url: string, pool = false): Transporter {
    const t = nodemailer.createTransport({ url, pool });
    opened.push(t);
    return t;
  }

  afterEach(async () => {
    // Transports first, so the catchers do not have sessions to cut.
    for (const resource of opened.reverse()) await resource.close();
    opened.length = 0;
  });

  it("stores a Vietnamese subject and body intact", async () => {
    const caught: CaughtMessage[] = [];
    const catcher = await open(async (message) => void caught.push(message));
    expect(catcher.url).toBe(`smtp://127.0.0.1:${catcher.port}`);

    const subject = "Thông báo: Chào mừng bạn đến với Lovage — ưu đãi đặc biệt";
    const text = "Xin chào Nguyễn Thị Lan,\nCảm ơn bạn đã đăng ký. Trân trọng, đội ngũ Lovage.";
    const html = "<p>Xin chào <b>Nguyễn Thị Lan</b>, cảm ơn bạn đã đăng ký.</p>";
    const info = await transport(catcher.url).sendMail({
      from: '"Đội ngũ Lovage" <news@lovage.test>',
      to: ["Trần Văn Hùng <hung@example.vn>", "lan@example.vn"],
      subject,
      text,
      html,
    });

    expect(caught).toHaveLength(1);
    const message = caught[0]!;
    expect(message.subject).toBe(subject);
    expect(message.text.trim()).toBe(text);
    expect(message.html?.trim()).toBe(html);
    expect(message.headers.subject).toBe(subject);
    expect(message.from).toBe('"Đội ngũ Lovage" <news@lovage.test>');
    expect(message.to).toEqual(["Trần Văn Hùng <hung@example.vn>", "lan@example.vn"]);
    expect(message.envelopeFrom).toBe("news@lovage.test");
    expect(message.envelopeTo).toEqual(["hung@example.vn", "lan@example.vn"]);
    expect(message.messageId).toBe(info.messageId);
    expect(message.sizeBytes).toBeGreaterThan(html.length + text.length);
    expect(message.receivedAt).toBeInstanceOf(Date);
  });

  it("answers 451 when the store fails, so the sender retries", async () => {
    let calls = 0;
    const catcher = await open(async () => {
      calls++;
      throw new Error("disk full");
    });

    const error = await transport(catcher.url)
      .sendMail({ from: "a@lovage.test", to: "b@example.vn", subject: "x", text: "x" })
      .then(
        () => null,
        (err: NodemailerError) => err,
      );

    expect(calls).toBe(1);
    expect(error).toMatchObject({ code: "EMESSAGE", command: "DATA", responseCode: 451 });
  });

  it("closes open sessions on close() instead of waiting for them", async () => {
    const catcher = await open(async () => undefined);
    const pooled = transport(catcher.url, true);
    await pooled.sendMail({ from: "a@lovage.test", to: "b@example.vn", subject: "x", text: "x" });

    const started = Date.now();
    await catcher.close();
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
