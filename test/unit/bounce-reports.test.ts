import { describe, expect, it } from "vitest";
import { parseReportMessage, recipientFromVerp } from "../../src/mail/bounces.js";
import { createTokens } from "../../src/mail/tokens.js";

const tokens = createTokens("a unit test secret for reports");
const settings = { tokens, softBounceLimit: 3, bounceAddress: "Bounces+{token}@Shop.example" };
const crlf = (lines: string[]) => Buffer.from(lines.join("\r\n"));

function dsn(groups: string[][], extra: string[] = []) {
  return crlf([
    "From: MAILER-DAEMON@mx.example",
    "Subject: failure",
    "MIME-Version: 1.0",
    'Content-Type: multipart/report; report-type=delivery-status; boundary="=b="',
    "",
    "--=b=",
    "Content-Type: text/plain",
    "",
    "Delivery failed.",
    "--=b=",
    "Content-Type: message/delivery-status",
    "",
    "Reporting-MTA: dns; mx.example",
    "",
    ...groups.flatMap((g) => [...g, ""]),
    ...extra,
    "--=b=--",
    "",
  ]);
}

describe("parseReportMessage", () => {
  it("reads each recipient of a DSN: failed 5.x.x is hard, delayed or 4.x.x soft, delivered nothing", async () => {
    const reports = await parseReportMessage(
      dsn([
        [
          "Final-Recipient: rfc822; A@Example.com",
          "Action: failed",
          "Status: 5.2.1",
          "Diagnostic-Code: smtp; 550 disabled",
        ],
        ["Final-Recipient: rfc822;b@example.com", "Action: delayed", "Status: 4.4.7"],
        ["Final-Recipient: rfc822; c@example.com", "Action: delivered", "Status: 2.0.0"],
      ]),
      [],
      settings,
    );
    expect(reports).toEqual([
      expect.objectContaining({ kind: "hard", email: "a@example.com", diagnostic: "5.2.1 550 disabled" }),
      expect.objectContaining({ kind: "soft", email: "b@example.com", diagnostic: "4.4.7 delayed 4.4.7" }),
    ]);
    // Several recipients: no one recipient id is claimed for all of them.
    expect(reports.every((r) => r.recipientId === undefined)).toBe(true);
  });

  it("names the recipient by the VERP address it came to, in any case", async () => {
    const verp = `bounces+${tokens.make("recipient", 77).toUpperCase()}@shop.example`;
    expect(recipientFromVerp(settings.bounceAddress, verp, tokens)).toBe(77);
    expect(recipientFromVerp(settings.bounceAddress, "bounces+forged@shop.example", tokens)).toBeUndefined();
    const [report] = await parseReportMessage(
      dsn([["Final-Recipient: rfc822; a@example.com", "Action: failed", "Status: 5.1.1"]]),
      [verp],
      settings,
    );
    expect(report).toMatchObject({ kind: "hard", recipientId: 77 });
  });

  it("finds nothing in an ordinary message, a report without fields, or a non-abuse feedback report", async () => {
    expect(await parseReportMessage(crlf(["Subject: hi", "", "hello"]), [], settings)).toEqual([]);
    expect(
      await parseReportMessage(
        crlf(["Subject: x", "Content-Type: multipart/report; boundary=q", "", "--q", "junk"]),
        [],
        settings,
      ),
    ).toEqual([]);
    const notSpam = crlf([
      "Subject: x",
      'Content-Type: multipart/report; report-type=feedback-report; boundary="f"',
      "",
      "--f",
      "Content-Type: message/feedback-report",
      "",
      "Feedback-Type: not-spam",
      "",
      "--f--",
    ]);
    expect(await parseReportMessage(notSpam, [], settings)).toEqual([]);
  });
});
