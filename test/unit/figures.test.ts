import { describe, expect, it } from "vitest";
import { bar, redraw } from "../../src/cli/commands/send.js";
import { DURATION_BUCKETS_MS, histogramOf, quantileOf } from "../../src/db/figures.js";
import type { CampaignView } from "../../src/api/present.js";
import { domainGroup } from "../../src/monitor/domain-groups.js";
import { ewmaRatePerMinute } from "../../src/monitor/rate.js";

describe("the campaign rate", () => {
  it("says 600/min from the first seconds of a send at 10 a second, not a minute's average", () => {
    const perSecond = new Map([
      [0, 10],
      [1, 10],
      [2, 10],
    ]);
    expect(ewmaRatePerMinute(perSecond, 2.5)).toBeCloseTo(600, 0);
    expect(ewmaRatePerMinute(new Map([[0, 4]]), 0.4)).toBeCloseTo(240, 0);
  });

  it("follows a slowdown within seconds: recent seconds weigh more than old ones", () => {
    const perSecond = new Map<number, number>();
    for (let age = 0; age < 60; age++) perSecond.set(age, age < 5 ? 1 : 20);
    const rate = ewmaRatePerMinute(perSecond, 60);
    expect(rate).toBeLessThan(20 * 60 * 0.75);
    expect(rate).toBeGreaterThan(60);
  });

  it("is zero when nothing was sent", () => {
    expect(ewmaRatePerMinute(new Map(), 0)).toBe(0);
  });
});

describe("duration histograms", () => {
  it("counts cumulatively and reads percentiles back within their bucket", () => {
    const hist = histogramOf([1, 7, 30, 30, 30, 400, 400, 400, 400, 9000]);
    expect(hist[0]).toBe(1);
    expect(hist[hist.length - 1]).toBe(10);
    const p50 = quantileOf(hist, 10, 0.5)!;
    // The fifth of ten values is 30: the median is in the 25–50 ms bucket.
    expect(p50).toBeGreaterThan(25);
    expect(p50).toBeLessThanOrEqual(50);
    expect(quantileOf(hist, 10, 0.6)).toBeGreaterThan(250);
    expect(quantileOf(hist, 10, 0.95)).toBeGreaterThan(5000);
    expect(quantileOf([], 0, 0.5)).toBeNull();
    expect(quantileOf(histogramOf([10 * 60_000]), 1, 0.5)).toBe(DURATION_BUCKETS_MS.at(-1));
  });
});

describe("domain groups", () => {
  it("groups the big mailbox providers, their national domains, and the rest", () => {
    expect(
      ["gmail.com", "GoogleMail.com", "outlook.com", "hotmail.co.uk", "yahoo.fr", "aol.com"].map(domainGroup),
    ).toEqual(["gmail", "gmail", "microsoft", "microsoft", "yahoo", "yahoo"]);
    expect(domainGroup("example.org")).toBe("other");
    expect(domainGroup("gmail.example.org")).toBe("gmail");
  });
});

describe("lovage send's progress bar", () => {
  const view = (status: string, etaSeconds: number | null, sent: number) =>
    ({
      status,
      total: 100,
      etaSeconds,
      ratePerMinute: 1200,
      counts: { pending: 0, queued: 0, sending: 0, sent, failed: 0, skipped: 0, unknown: 0 },
    }) as unknown as CampaignView;

  it("erases the rest of the line on each redraw, and fits the terminal's width", () => {
    const long = bar(view("sending", 512, 10));
    const short = bar(view("sending", 5, 99));
    expect(long.length).toBeGreaterThan(short.length);
    expect(redraw(short, 200)).toBe(`\r${short}\x1b[K`);
    expect(redraw(long, 40)).toBe(`\r${long.slice(0, 39)}\x1b[K`);
  });

  it("shows no ETA for a paused campaign", () => {
    expect(bar(view("sending", 30, 50))).toContain("eta 30s");
    expect(bar(view("paused", 30, 50))).not.toContain("eta");
  });
});
