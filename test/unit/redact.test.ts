import { describe, expect, it } from "vitest";
import { withoutQueryToken } from "../../src/logger.js";
import {
  createJsonLineRedactor,
  createRedactor,
  decodePercent,
  redactUrl,
  urlPassword,
} from "../../src/redact.js";

/** A password holding every character that ends or splits a URL's parts, and a few more. */
const NASTY = 'pA1/q@r:s%t u#v?w"x\\y,z';

describe("redactUrl", () => {
  it.each([
    ["postgres://lovage:s3cret@db:5432/lovage", "postgres://lovage:***@db:5432/lovage"],
    ["postgres://lovage:p@ss@db:5432/lovage", "postgres://lovage:***@db:5432/lovage"],
    ["postgres://lovage:pa/ss@db:5432/lovage", "postgres://lovage:***@db:5432/lovage"],
    ["postgres://lovage:12#ss@db/lovage", "postgres://lovage:***@db/lovage"],
    ["postgres://lovage:pa?ss@db/lovage", "postgres://lovage:***@db/lovage"],
    ["smtp://user:pa ss:x%zz@relay:25", "smtp://user:***@relay:25"],
    ["redis://:only-a-password@cache:6379/2", "redis://:***@cache:6379/2"],
    ["lovage:no-scheme@db:5432/lovage", "lovage:***@db:5432/lovage"],
    [`smtps://me@corp.example:${NASTY}@relay:465`, "smtps://me@corp.example:***@relay:465"],
  ])("hides the password of %s, whatever it holds", (raw, redacted) => {
    expect(redactUrl(raw)).toBe(redacted);
  });

  it.each(["postgres://db:5432/lovage", "postgres://lovage@db/lovage", "redis://cache:6379", "not a url"])(
    "leaves %s, which has no password, as it is",
    (raw) => {
      expect(redactUrl(raw)).toBe(raw);
    },
  );

  it("finds the password as written, by the last @ after the scheme", () => {
    expect(urlPassword("postgres://u:a@b/c:d@host/db")).toBe("a@b/c:d");
    expect(urlPassword("postgres://u@host/db")).toBeUndefined();
  });
});

describe("decodePercent", () => {
  it("decodes the valid escapes and keeps a stray %", () => {
    expect(decodePercent("a%2Fb")).toBe("a/b");
    expect(decodePercent("100%zz%20x")).toBe("100%zz x");
  });
});

describe("createRedactor", () => {
  it("removes a URL's password as written, decoded, and encoded either way", () => {
    const encoded = encodeURIComponent(NASTY);
    const redact = createRedactor({ urls: [`postgres://lovage:${encoded}@db/lovage`] });
    for (const form of [encoded, NASTY, new URL(`x://u:${encoded}@h`).password]) {
      expect(redact(`failed with ${form} here`)).toBe("failed with *** here");
    }
  });

  it("removes plain secrets and their percent-encoded form", () => {
    const redact = createRedactor({ values: ["jwt secret/with@odd:chars%"] });
    expect(redact("a jwt secret/with@odd:chars% b")).toBe("a *** b");
    expect(redact(`a ${encodeURIComponent("jwt secret/with@odd:chars%")} b`)).toBe("a *** b");
  });

  it("removes the longer of two overlapping forms whole", () => {
    const redact = createRedactor({ urls: ["smtp://u:abcd%2Fefgh@relay"] });
    expect(redact("abcd%2Fefgh abcd/efgh")).toBe("*** ***");
  });

  it("ignores undefined settings and secrets too short to search for", () => {
    const redact = createRedactor({ urls: [undefined, "redis://:pw@cache"], values: [undefined, "abc"] });
    expect(redact("pw abc")).toBe("pw abc");
  });
});

describe("createJsonLineRedactor", () => {
  it("redacts a secret that JSON escaped, and keeps the line valid JSON", () => {
    const redact = createJsonLineRedactor({ values: [NASTY] });
    const line = `${JSON.stringify({ level: 50, err: { message: `auth failed for ${NASTY}` }, msg: "x" })}\n`;
    expect(line).not.toContain(NASTY);
    const redacted = redact(line);
    expect(redacted.endsWith("\n")).toBe(true);
    expect(JSON.parse(redacted)).toEqual({ level: 50, err: { message: "auth failed for ***" }, msg: "x" });
  });

  it("passes a line that holds no secret through untouched", () => {
    const redact = createJsonLineRedactor({ values: ["a-long-secret"] });
    const line = '{"level":30,"msg":"quote \\" and backslash \\\\"}\n';
    expect(redact(line)).toBe(line);
  });
});

describe("withoutQueryToken", () => {
  it("hides the token query parameter of a logged URL and keeps the others", () => {
    expect(withoutQueryToken("/api/events?token=eyJ.abc.def&x=1")).toBe("/api/events?token=***&x=1");
    expect(withoutQueryToken("/api/campaigns?limit=1")).toBe("/api/campaigns?limit=1");
  });
});
