import { describe, expect, it } from "vitest";
import { formatMailbox, headerProblems, parseMailbox } from "../../src/mail/message.js";
import { createTokens } from "../../src/mail/tokens.js";

describe("parseMailbox", () => {
  it.each([
    ["Tin tức: Ánh Dương <news@shop.vn>", "Tin tức: Ánh Dương", "news@shop.vn"],
    ["Ánh Dương (Hà Nội) <a@shop.vn>", "Ánh Dương (Hà Nội)", "a@shop.vn"],
    ["Shop; Hà Nội <a@shop.vn>", "Shop; Hà Nội", "a@shop.vn"],
    ['"Trần, Thị \\"B\\"" <B.Tran@Shop.VN>', 'Trần, Thị "B"', "B.Tran@shop.vn"],
    ["News.Letter@Example.com", "", "News.Letter@example.com"],
    ["<only@example.com>", "", "only@example.com"],
  ])("reads %s with its name as typed and the local part's case kept", (raw, name, address) => {
    expect(parseMailbox(raw)).toEqual({ ok: true, mailbox: { name, address } });
  });

  it("refuses line breaks and stray brackets, and reads back what formatMailbox writes", () => {
    expect(parseMailbox("Eve\r\nBcc: x@y.example <e@example.com>")).toMatchObject({ ok: false });
    expect(parseMailbox("a <b@example.com> c")).toMatchObject({ ok: false });
    expect(parseMailbox("Bob <bob@localhost>")).toMatchObject({ ok: false, reason: /domain needs a dot/ });
    const mailbox = { name: 'a\\b "c", d: e; (f)', address: "X@example.com" };
    expect(parseMailbox(formatMailbox(mailbox))).toEqual({ ok: true, mailbox });
  });
});

describe("headerProblems", () => {
  it("allows X- and list headers, and refuses Lovage's own, MIME, routing and multi-line ones by name", () => {
    expect(headerProblems({ "X-Tag": "a", "List-Id": "<n.example.com>", Precedence: "bulk" })).toEqual([]);
    const problems = headerProblems({
      From: "a@b.example",
      "Message-ID": "<x@y>",
      "Content-Type": "text/html",
      "List-Unsubscribe": "<https://evil.example>",
      "X-Lovage-Recipient": "forged",
      "X-Ok": "a\r\nBcc: x@y.example",
      "Bad Name": "v",
      "X-Number": 5,
    });
    expect(problems).toEqual([
      expect.stringMatching(/^"From" cannot be set/),
      expect.stringMatching(/^"Message-ID" cannot be set/),
      expect.stringMatching(/^"Content-Type" cannot be set/),
      expect.stringMatching(/^"List-Unsubscribe" cannot be set/),
      expect.stringMatching(/^"X-Lovage-Recipient" cannot be set/),
      '"X-Ok" contains a line break or control character',
      expect.stringMatching(/^"Bad Name" is not a header name/),
      '"X-Number" must be a string',
    ]);
  });
});

describe("tokens", () => {
  const tokens = createTokens("a unit test secret of some length");

  it("reads back the id of each kind, and nothing from another kind, secret or spelling", () => {
    for (const id of [0, 1, 2, 41, 2 ** 31 - 1, 2 ** 40 + 7]) {
      const token = tokens.make("unsubscribe", id);
      expect(token).toMatch(/^[a-z2-7]{26}$/);
      expect(tokens.read("unsubscribe", token)).toBe(id);
      expect(tokens.read("unsubscribe", token.toUpperCase())).toBe(id);
      expect(tokens.read("recipient", token)).toBeUndefined();
      expect(createTokens("another secret of some length").read("unsubscribe", token)).toBeUndefined();
    }
    const token = tokens.make("recipient", 12345);
    for (let i = 0; i < token.length; i++) {
      for (const char of "a7") {
        if (token[i] === char) continue;
        const altered = token.slice(0, i) + char + token.slice(i + 1);
        expect(tokens.read("recipient", altered), altered).toBeUndefined();
      }
    }
    expect(tokens.read("recipient", "")).toBeUndefined();
    expect(tokens.read("recipient", `${token}a`)).toBeUndefined();
  });

  it("gives neighbouring ids unrelated tokens", () => {
    const a = tokens.make("messageId", 1000);
    const b = tokens.make("messageId", 1001);
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
    expect(same).toBeLessThan(8);
  });
});
