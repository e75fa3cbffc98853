import { describe, expect, it } from "vitest";
import { ehloNameOf, smtpConnectionOptions } from "../../src/mail/smtp-connection-options.js";
import { parseSmtpServerUrl } from "../../src/mail/smtp-server-url.js";
import { classifySmtpError } from "../../src/mail/transport-pool.js";

const optionsOf = (url: string) => smtpConnectionOptions(parseSmtpServerUrl(url), { ca: "PEM" });

describe("smtpConnectionOptions", () => {
  it("maps each TLS mode to nodemailer's options, never turning verification off", () => {
    expect(optionsOf("smtp://relay.example.com:587")).toMatchObject({ secure: false });
    expect(optionsOf("smtp://relay.example.com:587")).not.toHaveProperty("ignoreTLS");
    expect(optionsOf("smtp://relay.example.com:587")).not.toHaveProperty("opportunisticTLS");
    expect(optionsOf("smtp://relay.example.com:587?tls=required")).toMatchObject({
      secure: false,
      requireTLS: true,
    });
    expect(optionsOf("smtp://127.0.0.1:2525?tls=none")).toMatchObject({ secure: false, ignoreTLS: true });
    expect(optionsOf("smtps://relay.example.com")).toMatchObject({ secure: true, port: 465 });
    for (const url of ["smtp://a.example:25", "smtps://a.example", "smtp://127.0.0.1:25?tls=none"]) {
      expect(optionsOf(url).tls).toMatchObject({ rejectUnauthorized: true, ca: "PEM" });
    }
    expect(optionsOf("smtp://relay.example.com:25").tls).toMatchObject({ servername: "relay.example.com" });
    expect(optionsOf("smtp://127.0.0.1:25").tls).not.toHaveProperty("servername");
  });

  it("passes credentials decoded, and the EHLO name when there is one", () => {
    const options = smtpConnectionOptions(parseSmtpServerUrl("smtp://u%40x:p%2Fw@relay:587"), {
      ehloName: "mail.example.com",
    });
    expect(options.auth).toEqual({ user: "u@x", pass: "p/w" });
    expect(options.name).toBe("mail.example.com");
    expect(smtpConnectionOptions(parseSmtpServerUrl("smtp://relay"))).not.toHaveProperty("name");
  });
});

describe("ehloNameOf", () => {
  it("prefers the setting, then the public URL's host, then a fully qualified machine name", () => {
    expect(ehloNameOf({ ehloName: "mx.example.com", publicUrl: "https://a.example.com" })).toBe(
      "mx.example.com",
    );
    expect(ehloNameOf({ ehloName: undefined, publicUrl: "https://lists.example.com:8443" }, "box")).toBe(
      "lists.example.com",
    );
    expect(ehloNameOf({ ehloName: undefined, publicUrl: "http://10.0.0.5:5000" }, "box")).toBeUndefined();
    expect(ehloNameOf({ ehloName: undefined, publicUrl: undefined }, "box.example.net")).toBe(
      "box.example.net",
    );
    expect(ehloNameOf({ ehloName: undefined, publicUrl: undefined }, "box")).toBeUndefined();
  });
});

describe("classifySmtpError before MAIL FROM", () => {
  it("takes a STARTTLS refusal or a bad certificate as a temporary failure, and a bad greeting as a refused connection", () => {
    const tls = Object.assign(new Error("Error upgrading connection with STARTTLS: 500 unknown"), {
      code: "ETLS",
      command: "STARTTLS",
      responseCode: 500,
    });
    expect(classifySmtpError(tls)).toEqual({ stage: "transaction", kind: "temporary", code: 500 });
    const cert = Object.assign(new Error("self-signed certificate"), {
      code: "ESOCKET",
      originalCode: "DEPTH_ZERO_SELF_SIGNED_CERT",
      command: "CONN",
    });
    expect(classifySmtpError(cert)).toMatchObject({ stage: "transaction", kind: "temporary" });
    const greeting = Object.assign(new Error("Invalid greeting. response=554 go away"), {
      code: "EPROTOCOL",
      command: "CONN",
      responseCode: 554,
    });
    // No transaction began: the pace takes the server out for a while; no attempt is spent.
    expect(classifySmtpError(greeting)).toMatchObject({ stage: "connection", unreachable: true });
    const rcpt = Object.assign(new Error("no such user"), { command: "RCPT TO", responseCode: 550 });
    expect(classifySmtpError(rcpt)).toMatchObject({ stage: "transaction", kind: "permanent" });
  });
});
