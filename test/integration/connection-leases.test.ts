/**
 * A domain group's `Nconn` holds across every worker (docs/pace.md): leases in Redis or in the
 * store, given back when a transaction ends and ending by themselves when a worker dies; and two
 * transports (two workers) sharing the counters never have more transactions under way to the
 * group than its limit.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRateCounters, parseDomainLimits, type CounterBackend } from "../../src/mail/rate-limits.js";
import { createSmtpTransport } from "../../src/mail/transport-pool.js";
import { openBackend, REDIS_URL, uniqueQueue, type Backend } from "../helpers/backends.js";
import { startTestSmtpServer } from "../helpers/smtp-server.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(["redis", "postgres", "embedded"] as const)("connection leases in %s", (kind) => {
  let backend: Backend | undefined;
  let redis: Redis | undefined;
  let counters: () => CounterBackend;

  beforeAll(async () => {
    if (kind === "redis") {
      redis = new Redis(REDIS_URL);
      const prefix = uniqueQueue("leases");
      counters = () => ({ kind: "redis", client: redis!, prefix });
    } else {
      backend = await openBackend(kind);
      counters = () => ({ kind: "postgres", pool: backend!.store.pool });
    }
  }, 60_000);

  afterAll(async () => {
    redis?.disconnect();
    await backend?.close();
  });

  it("lets two workers together hold no more than the limit, and takes back a dead worker's", async () => {
    const one = createRateCounters(counters());
    const two = createRateCounters(counters());
    const a = await one.hold("group:g1", 2, 60_000);
    const b = await two.hold("group:g1", 2, 400);
    expect(a).toBeDefined();
    expect(b).toBeDefined();
    expect(await one.hold("group:g1", 2, 60_000)).toBeUndefined();
    expect(await two.hold("group:g1", 2, 60_000)).toBeUndefined();
    // Another group counts apart.
    expect(await two.hold("group:g2", 1, 60_000)).toBeDefined();
    await one.giveBack("group:g1", a!);
    const c = await two.hold("group:g1", 2, 60_000);
    expect(c).toBeDefined();
    expect(await one.hold("group:g1", 2, 60_000)).toBeUndefined();
    // b's worker "died" without giving it back: its lease ends by itself.
    await sleep(600);
    expect(await one.hold("group:g1", 2, 60_000)).toBeDefined();
  });
});

describe("a group's connections across two workers", () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(REDIS_URL);
  });
  afterAll(() => redis.disconnect());

  it("never has more transactions under way to the group than its limit", async () => {
    const delayMs = 150;
    const starts: number[] = [];
    let most = 0;
    const smtp = await startTestSmtpServer({
      script: () => {
        const now = Date.now();
        starts.push(now);
        most = Math.max(most, starts.filter((at) => at + delayMs > now).length);
        return { delayMs };
      },
    });
    const prefix = uniqueQueue("leases");
    const groups = parseDomainLimits("limited.example:2conn");
    const workers = [0, 1].map(() =>
      createSmtpTransport([`${smtp.url}?tls=none`], {
        poolSize: 5,
        timeoutMs: 5_000,
        maxWaitMs: 10_000,
        groups,
        counters: createRateCounters({ kind: "redis", client: redis, prefix }),
      }),
    );
    try {
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          workers[i % 2]!.send({
            from: { name: "", address: "sender@example.com" },
            to: { name: "", address: `r${i}@limited.example` },
            subject: "leases",
            text: "hello",
            messageId: `<leases-${i}-${prefix}@example.com>`,
          }),
        ),
      );
      expect(results.filter((r) => !r.ok)).toEqual([]);
      expect(smtp.received).toHaveLength(16);
      expect(most).toBeLessThanOrEqual(2);
      // The limit is used: transactions did overlap.
      expect(most).toBe(2);
    } finally {
      for (const worker of workers) worker.close();
      await smtp.close();
    }
  }, 60_000);
});
