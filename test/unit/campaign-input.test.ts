import { describe, expect, it } from "vitest";
import { parseDateTime, validateCampaignInput } from "../../src/mail/campaigns.js";

describe("parseDateTime", () => {
  it.each([
    ["2026-12-01T09:00:00Z", "2026-12-01T09:00:00.000Z"],
    ["2026-12-01t09:00z", "2026-12-01T09:00:00.000Z"],
    ["2026-12-01T10:00:00+01:00", "2026-12-01T09:00:00.000Z"],
    ["2026-12-01 04:30:00.25-04:30", "2026-12-01T09:00:00.250Z"],
    ["2028-02-29T00:00:00Z", "2028-02-29T00:00:00.000Z"],
  ])("reads %s as %s", (text, iso) => {
    expect(parseDateTime(text)?.toISOString()).toBe(iso);
  });

  it.each([
    "2026-12-01",
    "2026-12-01T09:00:00",
    "+275760-09-13T00:00:00Z",
    "2026-02-30T09:00:00Z",
    "2027-02-29T09:00:00Z",
    "2026-13-01T09:00:00Z",
    "2026-12-01T24:00:00Z",
    "December 1, 2026",
  ])("refuses %s", (text) => {
    expect(parseDateTime(text)).toBeUndefined();
  });
});

describe("validateCampaignInput", () => {
  const now = new Date("2026-06-01T00:00:00Z");
  const base = { subject: "Hi", text: "Hello" };
  const problems = (input: Record<string, unknown>) => {
    try {
      validateCampaignInput(input, "Lovage <no-reply@lovage.test>", now);
      return [];
    } catch (error) {
      return (error as { details: { field: string; reason: string }[] }).details;
    }
  };

  it("keeps a name of 200 characters and refuses 201 instead of cutting it", () => {
    expect(validateCampaignInput({ ...base, name: "n".repeat(200) }, "a@b.example", now).name).toHaveLength(
      200,
    );
    expect(problems({ ...base, name: "n".repeat(201) })).toEqual([
      { field: "name", reason: "must have at most 200 characters (it has 201)" },
    ]);
  });

  it("takes a priority as a number or as the text of a form field, and nothing else", () => {
    expect(validateCampaignInput({ ...base, priority: "-7" }, "a@b.example", now).priority).toBe(-7);
    expect(validateCampaignInput({ ...base, priority: 7 }, "a@b.example", now).priority).toBe(7);
    for (const priority of ["0x10", "1e2", "5.5", true, [5]]) {
      expect(problems({ ...base, priority }), String(priority)).toEqual([
        { field: "priority", reason: "must be a whole number from -100 to 100" },
      ]);
    }
  });

  it("takes a sendAt from a year back to 10 years ahead", () => {
    const at = (sendAt: string) => validateCampaignInput({ ...base, sendAt }, "a@b.example", now).sendAt;
    expect(at("2025-06-02T00:00:00Z")?.toISOString()).toBe("2025-06-02T00:00:00.000Z");
    expect(at("2036-05-31T00:00:00Z")?.toISOString()).toBe("2036-05-31T00:00:00.000Z");
    for (const sendAt of ["2025-05-30T00:00:00Z", "2036-06-02T00:00:00Z", "0000-01-01T00:00:00Z"]) {
      expect(problems({ ...base, sendAt })[0]?.reason, sendAt).toMatch(
        /^must be from 2025-05-31T.* to 2036-05-31T/,
      );
    }
  });
});

describe("validateCampaignInput: sender and headers", () => {
  const base = { subject: "Hi", text: "Hello" };
  const detailsOf = (input: Record<string, unknown>, defaultFrom?: string) => {
    try {
      validateCampaignInput(input, defaultFrom);
      return [];
    } catch (error) {
      return (error as { details: { field: string; reason: string }[] }).details;
    }
  };

  it("needs a from when no LOVAGE_DEFAULT_FROM is set, naming the setting", () => {
    expect(detailsOf(base)).toEqual([
      {
        field: "from",
        reason: expect.stringMatching(/is required: no LOVAGE_DEFAULT_FROM is set/) as unknown,
      },
    ]);
    expect(validateCampaignInput(base, "News <news@shop.example>").from).toBe("News <news@shop.example>");
    expect(validateCampaignInput({ ...base, from: "a@shop.example" }, undefined).from).toBe("a@shop.example");
  });

  it("keeps replyTo, headers and listUnsubscribe, from JSON or from multipart text", () => {
    const campaign = validateCampaignInput(
      { ...base, replyTo: "Help <help@shop.example>", headers: '{"X-Tag":"a"}', listUnsubscribe: "false" },
      "a@shop.example",
    );
    expect(campaign).toMatchObject({
      replyTo: "Help <help@shop.example>",
      headers: { "X-Tag": "a" },
      listUnsubscribe: false,
    });
    expect(validateCampaignInput(base, "a@shop.example")).toMatchObject({
      replyTo: null,
      headers: {},
      listUnsubscribe: true,
    });
  });

  it("names each bad sender, reply address, header and flag", () => {
    expect(
      detailsOf(
        {
          ...base,
          from: "News <news@localhost>",
          replyTo: "x\r\nBcc: y@z.example",
          headers: { Subject: "x" },
          listUnsubscribe: "maybe",
        },
        "a@shop.example",
      ).map((p) => p.field),
    ).toEqual(["from", "replyTo", "headers", "listUnsubscribe"]);
    expect(detailsOf({ ...base, headers: "[1]" }, "a@shop.example")).toEqual([
      { field: "headers", reason: expect.stringMatching(/must be an object/) as unknown },
    ]);
  });
});

describe("validateCampaignInput: servers and error budget", () => {
  const base = { subject: "Hi", text: "Hello" };
  const known = ["relay-a", "relay-b"];
  const check = (input: Record<string, unknown>) =>
    validateCampaignInput(input, "a@shop.example", new Date(), known);
  const problemsOf = (input: Record<string, unknown>) => {
    try {
      check(input);
      return [];
    } catch (error) {
      return (error as { details: { field: string; reason: string }[] }).details;
    }
  };

  it("takes servers as an array, as JSON text or as names separated by commas", () => {
    expect(check({ ...base, servers: ["relay-b", "relay-b"] }).servers).toEqual(["relay-b"]);
    expect(check({ ...base, servers: '["relay-a"]' }).servers).toEqual(["relay-a"]);
    expect(check({ ...base, servers: "relay-a, relay-b" }).servers).toEqual(["relay-a", "relay-b"]);
    expect(check(base).servers).toBeNull();
  });

  it("names an unknown server and lists the configured ones", () => {
    expect(problemsOf({ ...base, servers: ["relay-c", "relay-a"] })).toEqual([
      {
        field: "servers",
        reason:
          '"relay-c" is not a configured server: the configured servers are relay-a, relay-b (the name= of each URL in LOVAGE_SMTP_URL)',
      },
    ]);
    expect(problemsOf({ ...base, servers: [] })[0]?.reason).toMatch(/at least one/);
    expect(problemsOf({ ...base, servers: [1] })[0]?.reason).toMatch(/array of server names/);
    expect(
      (() => {
        try {
          validateCampaignInput({ ...base, servers: ["x"] }, "a@shop.example");
          return "";
        } catch (error) {
          return (error as Error).message;
        }
      })(),
    ).toMatch(/no SMTP server is configured/);
  });

  it("takes an error budget as an object, false, JSON text or the setting's text", () => {
    const budget = { share: 0.05, window: 100, minimum: 20 };
    expect(check({ ...base, errorBudget: budget }).errorBudget).toEqual(budget);
    expect(check({ ...base, errorBudget: JSON.stringify(budget) }).errorBudget).toEqual(budget);
    expect(check({ ...base, errorBudget: "5%/100/20" }).errorBudget).toEqual(budget);
    expect(check({ ...base, errorBudget: false }).errorBudget).toBe(false);
    expect(check({ ...base, errorBudget: "off" }).errorBudget).toBe(false);
    expect(check(base).errorBudget).toBeNull();
  });

  it.each([
    [{ share: 10, window: 200, minimum: 50 }],
    [{ share: 0.1, window: 200, minimum: 300 }],
    [{ share: 0.1, window: 0, minimum: 0 }],
    [{ share: 0.1, window: 20.5, minimum: 5 }],
    [{ share: 0.1, window: 200 }],
    [{ share: 0.1, window: 200, minimum: 50, extra: 1 }],
    [true],
    ["10/200/50"],
  ])("refuses the error budget %j, saying what a valid one is", (errorBudget) => {
    const [problem] = problemsOf({ ...base, errorBudget });
    expect(problem?.field).toBe("errorBudget");
    expect(problem?.reason).toMatch(/expected|unknown field/);
  });
});
