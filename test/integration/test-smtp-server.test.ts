import nodemailer, { type NodemailerError, type Transporter } from "nodemailer";
import { afterEach, describe, expect, it } from "vitest";
import {
  startTestSmtpServer,
  type ScriptContext,
  type TestSmtpServer,
  type TestSmtpServerOptions,
} from "../helpers/smtp-server.js";

describe("scriptable test SMTP server", () => {
  const opened: { close(): unknown }[] = [];

  async function start(
    options?: TestSmtpServerOptions,
  ): Promise<{ server: TestSmtpServer; mail: Transporter }> {
    const server = await startTestSmtpServer(options);
    opened.push(server);
    const mail = nodemailer.createTransport({ url: server.url });
    opened.push(mail);
    return { server, mail };
  }

  function send(mail: Transporter, to: string | string[], subject = "Chào bạn") {
    return mail.sendMail({ from: "news@lovage.test", to, subject, text: "Xin chào, đây là thư thử nghiệm." });
  }

  /** The rejection of a send that must fail, or a test failure if it succeeded. */
  async function failure(sending: Promise<unknown>): Promise<NodemailerError> {
    return sending.then(
      () => expect.unreachable("the send should have failed"),
      (err: NodemailerError) => err,
    );
  }

  afterEach(async () => {
    for (const resource of opened.reverse()) await resource.close();
    opened.length = 0;
  });

  it("accepts messages and records each one once", async () => {
    const { server, mail } = await start();
    const infos = [];
    for (const to of ["a@example.vn", "b@example.vn", "c@example.vn"]) infos.push(await send(mail, to));

    expect(server.received).toHaveLength(3);
    expect(server.received.map((m) => m.envelopeTo)).toEqual([
      ["a@example.vn"],
      ["b@example.vn"],
      ["c@example.vn"],
    ]);
    expect(server.received[0]).toMatchObject({
      from: "news@lovage.test",
      subject: "Chào bạn",
      messageId: infos[0]!.messageId,
    });
    expect(server.received[0]!.text.trim()).toBe("Xin chào, đây là thư thử nghiệm.");
    expect(server.received[0]!.raw).toContain("Message-ID:");
    expect(server.deliveries("B@example.vn")).toBe(1);
    expect(server.deliveries("nobody@example.vn")).toBe(0);
    expect(server.duplicates()).toEqual([]);
  });

  it("answers 451 the first time and accepts the retry", async () => {
    const seen: ScriptContext[] = [];
    const { server, mail } = await start({
      script: (ctx) => {
        seen.push(ctx);
        return ctx.attemptsFor === 0 ? { code: 451, message: "Greylisted" } : "accept";
      },
    });

    const error = await failure(send(mail, "lan@example.vn"));
    expect(error).toMatchObject({ code: "EENVELOPE", command: "RCPT TO", responseCode: 451 });
    expect(error.response).toBe("451 Greylisted");
    expect(server.received).toHaveLength(0);

    await send(mail, "Lan@example.vn");
    expect(server.received).toHaveLength(1);
    expect(server.deliveries("lan@example.vn")).toBe(1);
    expect(seen).toEqual([
      { recipient: "lan@example.vn", messageIndex: 0, attemptsFor: 0 },
      { recipient: "Lan@example.vn", messageIndex: 1, attemptsFor: 1 },
    ]);
  });

  it("rejects a recipient with 550 for good", async () => {
    const { server, mail } = await start({ script: () => ({ code: 550 }) });

    const error = await failure(send(mail, "gone@example.vn"));
    expect(error).toMatchObject({
      code: "EENVELOPE",
      command: "RCPT TO",
      responseCode: 550,
      permanent: true,
    });
    expect(server.received).toHaveLength(0);
  });

  it("delivers to the accepted recipients of a message when another one is refused", async () => {
    const { server, mail } = await start({
      script: ({ recipient }) => (recipient.startsWith("bad") ? { code: 550 } : "accept"),
    });

    const info = await send(mail, ["ok@example.vn", "bad@example.vn"]);
    expect(info.accepted).toEqual(["ok@example.vn"]);
    expect(info.rejected).toEqual(["bad@example.vn"]);
    expect(server.received.map((m) => m.envelopeTo)).toEqual([["ok@example.vn"]]);
  });

  it("hangs up at RCPT TO before the message is handed over", async () => {
    const { server, mail } = await start({ script: () => "hangup" });

    const error = await failure(send(mail, "lan@example.vn"));
    expect(error).toMatchObject({ code: "ECONNECTION", command: "CONN" });
    expect(error.responseCode).toBeUndefined();
    expect(server.received).toHaveLength(0);
  });

  it("answers 451 after the message body at the data stage", async () => {
    const seen: ScriptContext[] = [];
    const { server, mail } = await start({
      stage: "data",
      script: (ctx) => {
        seen.push(ctx);
        return { code: 451, message: "Queue full" };
      },
    });

    const error = await failure(send(mail, "lan@example.vn"));
    expect(error).toMatchObject({ code: "EMESSAGE", command: "DATA", responseCode: 451, permanent: false });
    expect(server.received).toHaveLength(0);
    expect(seen).toHaveLength(1);

    server.setScript(() => "accept");
    await send(mail, "lan@example.vn");
    expect(server.received).toHaveLength(1);
  });

  it("hangs up after the message body at the data stage without recording it", async () => {
    const { server, mail } = await start({ stage: "data", script: () => "hangup" });

    const error = await failure(send(mail, "lan@example.vn"));
    expect(error).toMatchObject({ code: "ECONNECTION", command: "CONN" });
    expect(error.responseCode).toBeUndefined();
    expect(server.received).toHaveLength(0);
  });

  it("answers after a delay, then as told", async () => {
    const { server, mail } = await start({
      script: ({ recipient }) =>
        recipient.startsWith("slow") ? { delayMs: 50 } : { delayMs: 50, then: { code: 452 } },
    });

    const started = performance.now();
    await send(mail, "slow@example.vn");
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(server.received).toHaveLength(1);

    const error = await failure(send(mail, "later@example.vn"));
    expect(error.responseCode).toBe(452);
    expect(server.received).toHaveLength(1);
  });

  it("reports addresses accepted more than once", async () => {
    const { server, mail } = await start();
    await send(mail, "lan@example.vn");
    await send(mail, "hung@example.vn");
    await send(mail, "LAN@example.vn");

    expect(server.received).toHaveLength(3);
    expect(server.deliveries("lan@example.vn")).toBe(2);
    expect(server.duplicates()).toEqual(["lan@example.vn"]);
  });

  it("leaves bodies out when keepBodies is false but still reads the headers", async () => {
    const { server, mail } = await start({ keepBodies: false });
    const info = await send(mail, "lan@example.vn", "Thông báo quan trọng");

    expect(server.received[0]).toEqual({
      envelopeTo: ["lan@example.vn"],
      from: "news@lovage.test",
      subject: "Thông báo quan trọng",
      messageId: info.messageId,
      text: "",
      raw: "",
      // What the session said of itself, kept even without the body: the TLS tests read them.
      secure: false,
      clientHostname: "[127.0.0.1]",
    });
  });

  it("clears pending delays and cuts open sessions on close", async () => {
    let presented = 0;
    const server = await startTestSmtpServer({
      script: () => {
        presented++;
        return { delayMs: 60_000 };
      },
    });
    const mail = nodemailer.createTransport({ url: server.url });
    opened.push(mail, server);

    const sending = failure(send(mail, "lan@example.vn"));
    await expect.poll(() => presented).toBe(1);
    const started = Date.now();
    await server.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await sending).toMatchObject({ code: "ECONNECTION" });
  });
});
