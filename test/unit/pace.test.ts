/** The rules of the pace: domain limits syntax, windows, the retry schedule by age, throttle replies. */
import { describe, expect, it } from "vitest";
import { parseDomainLimits, groupLookup, windowOf, createRateCounters } from "../../src/mail/rate-limits.js";
import { outcomeOf, retryDelayMs, MAX_RETRY_DELAY_MS } from "../../src/mail/send-batch.js";
import { isThrottle, ServerPace, DEFAULT_PACE } from "../../src/mail/throttle.js";
import { SendSlots } from "../../src/mail/send-slots.js";
import { classifySmtpError, recipientDomain } from "../../src/mail/transport-pool.js";
import type { SmtpEvent } from "../../src/mail/smtp-events.js";

describe("LOVAGE_DOMAIN_LIMITS", () => {
  it("parses groups, built-in ones by name, and a bare domain; the smallest limit of an entry wins", () => {
    const groups = parseDomainLimits(
      "google:20/s:5conn; microsoft=outlook.com,hotmail.com:600/min; example.org:1/s:2/s",
    );
    const of = groupLookup(groups);
    expect(of("gmail.com")).toMatchObject({ name: "google", rate: 20, connections: 5 });
    expect(of("googlemail.com").name).toBe("google");
    expect(of("hotmail.com")).toMatchObject({ name: "microsoft", rate: 10 });
    expect(of("live.com").name).toBe("live.com");
    expect(of("example.org")).toMatchObject({ rate: 1 });
    expect(of("yahoo.com")).toMatchObject({ name: "yahoo", rate: undefined });
    expect(of("other.example")).toMatchObject({ name: "other.example", rate: undefined });
  });

  it.each([
    ["acme:10/s", /not built in/],
    ["google", /no limit/],
    ["google:fast", /"fast" is not a limit/],
    ["x=not_a_domain:1/s", /is not a domain/],
    ["a=gmail.com:1/s; b=gmail.com:2/s", /already in group "a"/],
  ])("refuses %s naming the problem", (raw, message) => {
    expect(() => parseDomainLimits(raw)).toThrow(message);
  });
});

describe("rate windows", () => {
  it("are sized so that no second holds more than R (an average of 95% of R − p, p about 2% of R)", () => {
    expect(windowOf(50)).toEqual({ points: 1, windowMs: 1000 / (49 * 0.95) });
    expect(windowOf(1000)).toEqual({ points: 20, windowMs: 20_000 / (980 * 0.95) });
    expect(windowOf(0.5)).toEqual({ points: 1, windowMs: 2000 });
    for (const rate of [2, 3, 10, 50, 100, 333, 1000]) {
      const { points, windowMs } = windowOf(rate);
      // The worst case: p at the very end of one window and p in each of the following ones.
      const spans = Math.floor((1000 - 1e-9) / windowMs) + 1;
      expect(points * spans, `rate ${rate}`).toBeLessThanOrEqual(rate);
    }
  });

  it("lets through no more than the rate in memory, and says how long to wait", async () => {
    const counters = createRateCounters({ kind: "memory" });
    const start = Date.now();
    let taken = 0;
    while (Date.now() - start < 1000) {
      const wait = await counters.take("t", 100);
      if (wait === 0) taken++;
      else await new Promise((resolve) => setTimeout(resolve, wait));
    }
    expect(taken).toBeLessThanOrEqual(100);
    expect(taken).toBeLessThanOrEqual(Math.ceil(98 * 0.95) + 2);
    expect(taken).toBeGreaterThan(50);
  });
});

describe("admission", () => {
  it("serves this process's waiters in turn, at the rate, and tells those past their deadline how long is left", async () => {
    const counters = createRateCounters({ kind: "memory" });
    const until = Date.now() + 500;
    const results = await Promise.all(Array.from({ length: 60 }, () => counters.admit("a", 40, until)));
    const admitted = results.filter((wait) => wait === 0).length;
    expect(admitted).toBeGreaterThanOrEqual(8);
    expect(admitted).toBeLessThanOrEqual(22);
    expect(results.filter((wait) => wait > 0).length).toBe(60 - admitted);
  });
});

describe("retry by age", () => {
  const deps = { retryBaseMs: 10_000, retryMaxAgeMs: 24 * 3600_000, maxAttempts: undefined };
  const temporary = { ok: false as const, kind: "temporary" as const, code: 451, error: "busy", server: "s" };
  const now = Date.parse("2026-12-01T12:00:00Z");

  it("retries a 4xx until the first try is older than the maximum age, spaced at most an hour", () => {
    const young = { attempts: 30, attemptBase: 0, retrySince: new Date(now - 3600_000) };
    const outcome = outcomeOf(temporary, young, deps, "<m>", now);
    expect(outcome.kind).toBe("retry");
    if (outcome.kind === "retry")
      expect(outcome.retryAt.getTime() - now).toBeLessThanOrEqual(MAX_RETRY_DELAY_MS);
    const old = { attempts: 30, attemptBase: 0, retrySince: new Date(now - 24 * 3600_000 + 60_000) };
    const given = outcomeOf(temporary, old, deps, "<m>", now);
    expect(given).toMatchObject({ kind: "failed", code: 451 });
    if (given.kind === "failed") expect(given.error).toMatch(/LOVAGE_RETRY_MAX_AGE/);
  });

  it("does not count the attempts before a user's retry against LOVAGE_MAX_ATTEMPTS", () => {
    const capped = { ...deps, maxAttempts: 3 };
    expect(
      outcomeOf(temporary, { attempts: 3, attemptBase: 0, retrySince: null }, capped, "<m>", now).kind,
    ).toBe("failed");
    expect(
      outcomeOf(temporary, { attempts: 4, attemptBase: 3, retrySince: null }, capped, "<m>", now).kind,
    ).toBe("retry");
  });

  it("defers a message not tried, without an attempt, within the same age", () => {
    const deferred = {
      ok: false as const,
      kind: "deferred" as const,
      code: null,
      error: "out",
      server: "s",
      retryAfterMs: 5_000,
    };
    const outcome = outcomeOf(
      deferred,
      { attempts: 1, attemptBase: 0, retrySince: new Date(now) },
      deps,
      "<m>",
      now,
    );
    expect(outcome).toMatchObject({ kind: "deferred" });
    const late = outcomeOf(
      deferred,
      { attempts: 1, attemptBase: 0, retrySince: new Date(now - 25 * 3600_000) },
      deps,
      "<m>",
      now,
    );
    expect(late.kind).toBe("failed");
  });

  it("caps the delay at an hour", () => {
    expect(retryDelayMs(40, 10_000, () => 0.999)).toBeLessThanOrEqual(MAX_RETRY_DELAY_MS);
  });
});

describe("the receiver's word", () => {
  it("takes 421 and 454 as throttles, 450/451/452 only with a throttling text", () => {
    expect(isThrottle(421, "421 4.7.0 Error: too many connections")).toBe(true);
    expect(isThrottle(454, "454 Throttling failure: Maximum sending rate exceeded.")).toBe(true);
    expect(isThrottle(450, "450 4.7.1 Error: too much mail from 127.0.0.1")).toBe(true);
    expect(isThrottle(452, "452 4.2.2 Mailbox full")).toBe(false);
    expect(isThrottle(451, "451 Try again later")).toBe(false);
    expect(isThrottle(451, "451 4.7.1 Please try again later (greylisted)")).toBe(false);
    expect(isThrottle(550, "550 rate limit")).toBe(false);
  });

  it("halves the rate on a throttle, at most once a second, climbs back after a quiet time, and suspends on 421 4.7.28", () => {
    const events: SmtpEvent[] = [];
    const pace = new ServerPace("s", 10, undefined, DEFAULT_PACE, (e) => events.push(e));
    let t = 1_000_000;
    for (let i = 0; i < 40; i++) pace.accepted((t += 25));
    pace.temporary(421, "421 4.7.0 slow down", t);
    const lowered = pace.adaptiveRate!;
    expect(lowered).toBeGreaterThan(5);
    expect(lowered).toBeLessThan(30);
    pace.temporary(421, "421 4.7.0 slow down", t + 10);
    expect(pace.adaptiveRate).toBe(lowered);
    pace.refresh(t + 10 + DEFAULT_PACE.quietMs + 1);
    expect(pace.adaptiveRate).toBeGreaterThan(lowered);
    pace.temporary(421, "421 4.7.28 Our system has detected an unusual rate", t + 10_000);
    expect(pace.state).toBe("suspended");
    pace.refresh(t + 10_000 + DEFAULT_PACE.suspendMs);
    expect(pace.state).toBe("in");
    expect(pace.allowed).toBe(1);
    const kinds = events.map((e) => e.kind).filter((k) => k !== "faster");
    expect(kinds).toEqual(["slower", "suspended", "resumed"]);
    expect(events.findIndex((e) => e.kind === "faster")).toBe(1);
  });

  it("takes a server out after three refusals in a row, probes it after the cool-down, and puts it back", () => {
    const events: SmtpEvent[] = [];
    const pace = new ServerPace("s", 10, undefined, DEFAULT_PACE, (e) => events.push(e));
    const t = 1_000_000;
    for (let i = 0; i < 3; i++) pace.unreachable("ECONNREFUSED", t);
    expect(pace.state).toBe("out");
    pace.refresh(t + DEFAULT_PACE.coolDownMs);
    expect(pace.state).toBe("probing");
    expect(pace.allowed).toBe(1);
    pace.accepted(t + DEFAULT_PACE.coolDownMs + 1);
    expect(pace.state).toBe("in");
    expect(events.map((e) => e.kind)).toEqual(["out", "in"]);
  });
});

describe("SMTP errors", () => {
  it("tell a session refusal (no attempt) from a transaction's reply", () => {
    expect(
      classifySmtpError({
        name: "E",
        message: "Connection closed unexpectedly: 421 4.7.0 slow down",
        responseCode: 421,
        command: "CONN",
      }),
    ).toMatchObject({ stage: "transaction", kind: "temporary" });
    expect(
      classifySmtpError({
        name: "E",
        message: "Invalid greeting. response=421 too many",
        responseCode: 421,
        command: "CONN",
      }),
    ).toMatchObject({
      stage: "connection",
      unreachable: false,
    });
    expect(
      classifySmtpError({ name: "E", message: "connect ECONNREFUSED", code: "ESOCKET", syscall: "connect" }),
    ).toMatchObject({
      stage: "connection",
      unreachable: true,
    });
    expect(
      classifySmtpError({ name: "E", message: "x", responseCode: 450, command: "MAIL FROM" }),
    ).toMatchObject({
      stage: "transaction",
      kind: "temporary",
    });
    expect(
      classifySmtpError({ name: "E", message: "Connection closed", code: "ECONNECTION", command: "CONN" }),
    ).toMatchObject({
      kind: "ambiguous",
    });
  });

  it("finds the recipient's domain in a To", () => {
    expect(recipientDomain('"Ann" <ann@Gmail.COM>')).toBe("gmail.com");
    expect(recipientDomain("bob@example.org")).toBe("example.org");
  });
});

describe("a message its domain's limit let through", () => {
  it("takes the next free send slot ahead of those already waiting", async () => {
    const slots = new SendSlots(1);
    expect(await slots.acquire(1)).toBe(1);
    const order: string[] = [];
    const waiting = slots.acquire(1).then(() => order.push("waiting"));
    const first = slots.acquire(1, undefined, true).then(() => order.push("first"));
    slots.release(1);
    await first;
    slots.release(1);
    await waiting;
    expect(order).toEqual(["first", "waiting"]);
  });

  it("takes the server's next free connection while the others wait", async () => {
    const pace = new ServerPace("s", 1, undefined, DEFAULT_PACE, () => undefined);
    const deadline = Date.now() + 5_000;
    expect(await pace.acquire(deadline)).toBe(true);
    const order: string[] = [];
    const other = pace.acquire(deadline).then(() => order.push("other"));
    const first = pace.acquire(deadline, true).then(() => order.push("first"));
    pace.release();
    await first;
    pace.release();
    await other;
    expect(order).toEqual(["first", "other"]);
  });
});
