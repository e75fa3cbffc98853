import { describe, expect, it } from "vitest";
import { parseSmtpServerUrl, parseSmtpServerUrls } from "../../src/mail/smtp-server-url.js";

describe("an SMTP server URL", () => {
  it("defaults to opportunistic STARTTLS on smtp:// and implicit TLS on smtps://", () => {
    expect(parseSmtpServerUrl("smtp://relay:587")).toMatchObject({
      name: "relay:587",
      host: "relay",
      port: 587,
      tls: "opportunistic",
      weight: 1,
      rate: undefined,
      connections: undefined,
      auth: undefined,
    });
    expect(parseSmtpServerUrl("smtps://relay")).toMatchObject({ port: 465, tls: "implicit" });
  });

  it("reads every parameter and decodes the credentials", () => {
    expect(
      parseSmtpServerUrl(
        "smtp://u%40x:p%2Fw@relay:25?tls=required&rate=14.5&connections=5&weight=2&name=ses",
      ),
    ).toEqual({
      name: "ses",
      host: "relay",
      port: 25,
      tls: "required",
      auth: { user: "u@x", pass: "p/w" },
      rate: 14.5,
      connections: 5,
      weight: 2,
    });
  });

  it.each([
    ["smtp://relay?starttls=require", /unknown parameter "starttls".*tls=required/],
    ["smtp://relay?foo=1", /unknown parameter "foo"; known: tls, rate/],
    ["smtp://relay?tls=maybe", /tls: expected required, none or opportunistic, got "maybe"/],
    ["smtps://relay?tls=none", /smtps:\/\/ always uses TLS/],
    ["smtp://relay?rate=0", /rate: expected a number above 0, got "0"/],
    ["smtp://relay?rate=1e3", /rate: expected a number above 0/],
    ["smtp://relay?connections=2.5", /connections: expected a whole number from 1 to 1000/],
    ["smtp://relay?weight=-1", /weight: expected a number above 0/],
    ["smtp://relay?rate=1&rate=2", /"rate" is given more than once/],
    ["smtp://relay?name=a%20b", /name: expected 1 to 64/],
  ])("refuses %s, naming what is wrong", (url, message) => {
    expect(() => parseSmtpServerUrl(url)).toThrow(message);
  });

  it("refuses two servers with one name", () => {
    expect(() => parseSmtpServerUrls(["smtp://a?name=x", "smtp://b?name=x"])).toThrow(
      /two servers are named "x"/,
    );
  });
});
