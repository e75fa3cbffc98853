/**
 * The pace with real Lovage processes and real SMTP servers: Debian's Postfix with its anvil
 * limits (a relay nobody here wrote), a relay stopped for three minutes, two workers sharing one
 * server's rate limit through Redis, failover, and the test's own servers scripted to throttle
 * (421 above 20/s), to refuse (550 for 30%: the error budget) and to time a domain's limit.
 * Default settings unless a test says why.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { createTestDatabase } from "../helpers/backends.js";
import { api, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { postfixUnavailable, startPostfix, type PostfixServer } from "../helpers/postfix.js";
import { freePort, startRedisServer, type RedisServer } from "../helpers/services.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

interface CampaignView {
  id: number;
  status: string;
  statusReason: string | null;
  counts: Record<string, number>;
  smtpEvents?: { at: string; kind: string; name: string; reply: string | null; worker: string | null }[];
}

async function send(
  lovage: LovageProcess,
  recipients: string[],
  own: { servers?: string[] } = {},
): Promise<number> {
  const { status, body } = await api<{ campaign: { id: number }; accepted: number }>(
    lovage,
    "POST",
    "/api/campaigns",
    { from: "Pace <pace@lovage.test>", subject: "Pace {{email}}", text: "Hello", recipients, ...own },
  );
  expect(status).toBe(202);
  expect(body.accepted).toBe(recipients.length);
  return body.campaign.id;
}

const view = async (lovage: LovageProcess, id: number) =>
  (await api<CampaignView>(lovage, "GET", `/api/campaigns/${id}`)).body;

async function completed(lovage: LovageProcess, id: number, timeoutMs: number) {
  return waitFor(
    async () => {
      const v = await view(lovage, id);
      return v.status === "completed" ? v : undefined;
    },
    { timeoutMs, intervalMs: 500, message: `campaign ${id} completed` },
  );
}

/** Every recipient's attempts, from the CSV export. */
async function attemptsOf(lovage: LovageProcess, id: number): Promise<Map<string, number>> {
  const response = await fetch(`${lovage.url}/api/campaigns/${id}/recipients.csv`, {
    headers: { authorization: `Bearer ${lovage.token}` },
  });
  const lines = (await response.text()).trim().split("\n").slice(1);
  return new Map(lines.map((line) => [line.split(",")[2]!, Number(line.split(",")[5])]));
}

function maxInAnyWindow(times: number[], windowMs = 1000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

const list = (tag: string, n: number, domain: string) =>
  Array.from({ length: n }, (_, i) => `${tag}-${i}@${domain}`);

describe("the pace against real relays", () => {
  let lovage: LovageProcess | undefined;
  afterEach(async () => {
    await lovage?.dispose();
    lovage = undefined;
  });

  const unavailable = postfixUnavailable();
  describe.skipIf(unavailable !== undefined)(
    `Debian's Postfix with anvil limits${unavailable ? ` (skipped: ${unavailable})` : ""}`,
    () => {
      let postfix: PostfixServer;
      beforeAll(async () => {
        postfix = await startPostfix({
          smtpd_client_connection_count_limit: "3",
          smtpd_client_connection_rate_limit: "0",
          smtpd_client_message_rate_limit: "100",
          anvil_rate_time_unit: "5s",
          // Empty, so 127.0.0.1 (in mynetworks) is not exempt from the limits.
          smtpd_client_event_limit_exceptions: "",
        });
      });
      afterAll(async () => {
        await postfix?.stop();
      });

      it("sends 1,500 recipients through 3 connections and 100 messages per 5 s: none lost or doubled, at most 1.5 transactions each", async () => {
        lovage = await startLovage({ env: { LOVAGE_SMTP_URL: postfix.url } });
        const recipients = list("pf", 1500, "example.test");
        const id = await send(lovage, recipients);
        const done = await completed(lovage, id, 400_000);
        expect(done.counts).toMatchObject({ sent: 1500, failed: 0, unknown: 0 });
        // Postfix's own mailbox: each address exactly once.
        await waitFor(() => [...postfix.deliveries().values()].reduce((a, b) => a + b, 0) >= 1500, {
          timeoutMs: 60_000,
          message: "1500 in the mailbox",
        });
        const delivered = postfix.deliveries();
        expect(recipients.filter((r) => delivered.get(r) !== 1)).toEqual([]);
        expect(delivered.size).toBe(1500);
        const attempts = [...(await attemptsOf(lovage, id)).values()].reduce((a, b) => a + b, 0);
        // Postfix logs its refusals ("421 … too many connections", "450 … too much mail") so:
        const refusedConnections = postfix.logLines(/Connection concurrency limit exceeded/).length;
        const tooMuchMail = postfix.logLines(/Message delivery request rate limit exceeded/).length;
        console.log(
          `postfix: ${refusedConnections} connections refused, ${tooMuchMail} "too much mail"; lovage: ${attempts} transactions for 1500 (${(attempts / 1500).toFixed(2)} each)`,
        );
        expect(attempts / 1500).toBeLessThanOrEqual(1.5);
        expect(done.smtpEvents?.map((e) => e.kind)).toContain("slower");
      }, 420_000);
    },
  );

  it("keeps every recipient waiting while the only relay is down for 3 minutes, then sends them all", async () => {
    const port = await freePort();
    let relay: TestSmtpServer = await startTestSmtpServer({ port, keepBodies: false });
    const first = relay;
    lovage = await startLovage({ env: { LOVAGE_SMTP_URL: relay.url } });
    const recipients = list(`down${Date.now().toString(36)}`, 3000, "example.com");
    const id = await send(lovage, recipients);
    await waitFor(async () => (await view(lovage!, id)).counts.sent! >= 300, {
      timeoutMs: 60_000,
      message: "300 sent",
    });
    await relay.close();
    const downUntil = Date.now() + 180_000;
    let sawDown = false;
    while (Date.now() < downUntil) {
      const v = await view(lovage, id);
      expect(v.counts.failed).toBe(0);
      expect(v.status).toBe("sending");
      const ready = await fetch(`${lovage.url}/readyz`);
      sawDown ||= ((await ready.json()) as { smtp: string }).smtp === "down";
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
    expect(sawDown).toBe(true);
    relay = await startTestSmtpServer({ port, keepBodies: false });
    try {
      const done = await completed(lovage, id, 180_000);
      expect(done.counts).toMatchObject({ failed: 0 });
      // What the relay was doing when it stopped may be unknown (it may have been delivered).
      expect(done.counts.unknown).toBeLessThanOrEqual(10);
      expect(done.counts.sent! + done.counts.unknown!).toBe(3000);
      const twice = recipients.filter((r) => first.deliveries(r) + relay.deliveries(r) > 1);
      expect(twice).toEqual([]);
    } finally {
      await relay.close();
    }
  }, 480_000);

  it("keeps the embedded topology (counters in PGlite) under a server's rate", async () => {
    const times: number[] = [];
    const smtp = await startTestSmtpServer({
      keepBodies: false,
      script: () => {
        times.push(Date.now());
        return "accept";
      },
    });
    try {
      lovage = await startLovage({ env: { LOVAGE_SMTP_URL: `${smtp.url}?rate=20&name=limited` } });
      const id = await send(lovage, list("emb", 200, "example.com"));
      const done = await completed(lovage, id, 60_000);
      expect(done.counts).toMatchObject({ sent: 200, failed: 0 });
      // The bound at the counters is 20; what the server sees adds the jitter of connections
      // being opened (the two-worker test below holds the issue's own bound).
      expect(maxInAnyWindow(times)).toBeLessThanOrEqual(24);
      expect((Math.max(...times) - Math.min(...times)) / 1000).toBeGreaterThanOrEqual(8);
      const servers = await waitFor(async () => {
        const body = (await api<{ servers: { name: string; sent: number }[] }>(lovage!, "GET", "/api/smtp"))
          .body;
        return body.servers.find((s) => s.name === "limited" && s.sent >= 200) ? body.servers : undefined;
      });
      expect(servers[0]).toMatchObject({ name: "limited", state: "in" });
    } finally {
      await smtp.close();
    }
  }, 120_000);

  describe("two workers, two servers, one stopped in the middle of a campaign", () => {
    let redis: RedisServer;
    let database: Awaited<ReturnType<typeof createTestDatabase>>;
    let cluster: Cluster | undefined;
    const stopped: TestSmtpServer[] = [];
    beforeAll(async () => {
      [redis, database] = await Promise.all([startRedisServer(), createTestDatabase()]);
    });
    afterAll(async () => {
      await cluster?.stop();
      for (const server of stopped) await server.close();
      await redis?.stop();
      await database?.drop();
    });

    it("sends every recipient by the other, marks the stopped one out within 10 s and back in after it returns", async () => {
      const good = await startTestSmtpServer({ keepBodies: false });
      const port = await freePort();
      let bad = await startTestSmtpServer({ port, keepBodies: false });
      const first = bad;
      stopped.push(good, bad);
      // A rate on each keeps the campaign going long enough to stop one in its middle.
      const connections = 5;
      const workers = 2;
      cluster = await startCluster({
        env: {
          LOVAGE_DATABASE_URL: database.url,
          LOVAGE_BROKER_URL: redis.url,
          LOVAGE_SMTP_URL: `${good.url}?name=good&rate=100,smtp://127.0.0.1:${port}?name=bad&rate=100&connections=${connections}`,
        },
        workers,
      });
      const smtp = async () =>
        (
          await api<{
            servers: { name: string; state: string; workers: { state: string }[] }[];
            events: { name: string; kind: string; at: string }[];
          }>(cluster!.api, "GET", "/api/smtp")
        ).body;
      const recipients = list(`fo${Date.now().toString(36)}`, 2000, "example.com");
      const id = await send(cluster.api, recipients);
      await waitFor(async () => (await view(cluster!.api, id)).counts.sent! >= 300, {
        timeoutMs: 60_000,
        message: "300 sent",
      });
      await bad.close();
      const stoppedAt = Date.now();
      expect((await view(cluster.api, id)).status).toBe("sending");
      await waitFor(async () => (await smtp()).events.find((e) => e.name === "bad" && e.kind === "out"), {
        timeoutMs: 10_000,
        intervalMs: 250,
        message: "the stopped server marked out",
      });
      const outAfterMs = Date.now() - stoppedAt;
      expect(outAfterMs).toBeLessThan(10_000);

      const done = await completed(cluster.api, id, 120_000);
      console.log(
        `failover over ${workers} workers: out after ${outAfterMs} ms; sent ${done.counts.sent}, unknown ${done.counts.unknown}; the stopped server had ${recipients.filter((r) => first.deliveries(r) > 0).length}`,
      );
      expect(done.counts.failed).toBe(0);
      // Transactions in flight on the stopped server may have been delivered: at most its connections per worker.
      expect(done.counts.unknown).toBeLessThanOrEqual(connections * workers);
      expect(done.counts.sent! + done.counts.unknown!).toBe(2000);
      expect(recipients.filter((r) => good.deliveries(r) + first.deliveries(r) > 1)).toEqual([]);
      const attempts = await attemptsOf(cluster.api, id);
      // Refused connections are not attempts: whatever the stopped server did not take, the other sent on its first.
      const unsent = recipients.filter((r) => good.deliveries(r) + first.deliveries(r) === 0);
      expect(unsent.length).toBeLessThanOrEqual(done.counts.unknown!);
      expect(recipients.filter((r) => good.deliveries(r) === 1 && attempts.get(r) !== 1)).toEqual([]);

      bad = await startTestSmtpServer({ port, keepBodies: false });
      stopped.push(bad);
      const returnedAt = Date.now();
      // Back in within a cool-down (30 s at most) and a probe, with no traffic: in for every worker.
      await waitFor(
        async () => {
          const server = (await smtp()).servers.find((s) => s.name === "bad");
          return server?.workers.length === workers && server.workers.every((w) => w.state === "in");
        },
        { timeoutMs: 60_000, intervalMs: 500, message: "the server back in for both workers" },
      );
      const events = (await smtp()).events.filter(
        (e) => e.name === "bad" && e.kind === "in" && Date.parse(e.at) >= returnedAt - 1_000,
      );
      expect(events.length).toBeGreaterThan(0);
    }, 240_000);
  });

  // One cluster for three cases: each campaign names its own server (`servers`), so one case's
  // throttling leaves the next one's pace alone, and the processes start once.
  describe("one API and two workers on Redis and PostgreSQL, a scripted server per case", () => {
    let redis: RedisServer;
    let database: Awaited<ReturnType<typeof createTestDatabase>>;
    let cluster: Cluster | undefined;
    let throttling: TestSmtpServer;
    let bouncing: TestSmtpServer;
    let domains: TestSmtpServer;
    beforeAll(async () => {
      [redis, database, throttling, bouncing, domains] = await Promise.all([
        startRedisServer(),
        createTestDatabase(),
        startTestSmtpServer({ keepBodies: false }),
        startTestSmtpServer({ keepBodies: false }),
        startTestSmtpServer({ keepBodies: false }),
      ]);
      cluster = await startCluster({
        env: {
          LOVAGE_DATABASE_URL: database.url,
          LOVAGE_BROKER_URL: redis.url,
          LOVAGE_SMTP_URL: [
            `${throttling.url}?name=throttling`,
            `${bouncing.url}?name=bouncing`,
            `${domains.url}?name=domains`,
          ].join(","),
          LOVAGE_DOMAIN_LIMITS: "slow.example:10/s",
        },
        workers: 2,
      });
    }, 90_000);
    afterAll(async () => {
      await cluster?.stop();
      await Promise.all([throttling, bouncing, domains].map((server) => server?.close()));
      await redis?.stop();
      await database?.drop();
    });

    it("slows down on 421 above 20/s and climbs back: every recipient sent, at most 1.3 transactions each", async () => {
      const accepted: number[] = [];
      let transactions = 0;
      throttling.setScript(() => {
        transactions++;
        const now = Date.now();
        while (accepted.length > 0 && now - accepted[0]! >= 1000) accepted.shift();
        if (accepted.length >= 20) return { code: 421, message: "4.7.0 Too many messages, slow down" };
        accepted.push(now);
        return "accept";
      });
      const recipients = list(`thr${Date.now().toString(36)}`, 400, "example.com");
      const startedAt = Date.now();
      const id = await send(cluster!.api, recipients, { servers: ["throttling"] });
      const done = await completed(cluster!.api, id, 120_000);
      console.log(
        `421 above 20/s over 2 workers: 400 in ${((Date.now() - startedAt) / 1000).toFixed(1)} s, ${transactions} transactions (${(transactions / 400).toFixed(2)} each)`,
      );
      expect(done.counts).toMatchObject({ sent: 400, failed: 0, unknown: 0 });
      expect(recipients.filter((r) => throttling.deliveries(r) !== 1)).toEqual([]);
      expect(transactions / 400).toBeLessThanOrEqual(1.3);
      // The server's events, oldest first, as the campaign view shows them (workers write them
      // every 2 s): a worker lowered its rate, and later raised it again.
      const events = await waitFor(
        async () => {
          const mine = ((await view(cluster!.api, id)).smtpEvents ?? [])
            .filter((e) => e.name === "throttling")
            .reverse();
          const slower = mine.find((e) => e.kind === "slower");
          const faster = mine.find(
            (e) => slower && e.kind === "faster" && e.worker === slower.worker && e.at >= slower.at,
          );
          return faster ? mine : undefined;
        },
        {
          timeoutMs: 10_000,
          intervalMs: 500,
          message: "a slower event then a faster one in the campaign view",
        },
      );
      expect(events.find((e) => e.kind === "slower")!.reply).toMatch(/^421/);
    }, 150_000);

    it("pauses a campaign whose 550s exceed its error budget, names the reply, and resume continues it", async () => {
      // 30% of the list: the default budget (more than 10% of the last 200, after 50) is crossed.
      let transactions = 0;
      bouncing.setScript(({ recipient }) => {
        transactions++;
        return Number(/-(\d+)@/.exec(recipient)![1]) % 10 < 3
          ? { code: 550, message: "5.1.1 No such user here" }
          : "accept";
      });
      const recipients = list(`bnc${Date.now().toString(36)}`, 600, "example.com");
      const id = await send(cluster!.api, recipients, { servers: ["bouncing"] });
      const paused = await waitFor(
        async () => {
          const v = await view(cluster!.api, id);
          return v.status === "paused" ? v : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250, message: "the campaign paused by its error budget" },
      );
      expect(paused.statusReason).toMatch(/error budget: \d+ of the last \d+ attempts failed permanently/);
      expect(paused.statusReason).toMatch(/550 5\.1\.1 No such user here/);
      // Batches in flight finish their chunk: wait until the counts settle, then count every
      // attempt made, in the log and at the server.
      let last = -1;
      const before = await waitFor(
        async () => {
          const v = await view(cluster!.api, id);
          const made = v.counts.sent! + v.counts.failed!;
          const settled = made === last && v.counts.sending === 0;
          last = made;
          return settled ? v.counts : undefined;
        },
        { timeoutMs: 15_000, intervalMs: 1_000, message: "no attempt in flight after the pause" },
      );
      console.log(
        `error budget over 2 workers: paused after ${transactions} transactions (${before.failed} failed): ${paused.statusReason}`,
      );
      expect(transactions).toBeLessThanOrEqual(250);
      expect(before.sent! + before.failed!).toBe(transactions);
      expect(recipients.filter((r) => bouncing.deliveries(r) > 0).length).toBe(before.sent);

      const resumed = await api<CampaignView>(cluster!.api, "POST", `/api/campaigns/${id}/resume`);
      expect(resumed.status).toBe(200);
      expect(resumed.body.status).toBe("sending");
      await waitFor(async () => (await view(cluster!.api, id)).counts.sent! > before.sent!, {
        timeoutMs: 30_000,
        intervalMs: 250,
        message: "more sent after the resume",
      });
    }, 150_000);

    it("keeps a limited domain at its rate without holding up the other domain", async () => {
      const slowTimes: number[] = [];
      const fastTimes: number[] = [];
      domains.setScript(({ recipient }) => {
        (recipient.endsWith("@slow.example") ? slowTimes : fastTimes).push(Date.now());
        return "accept";
      });
      const tag = `dom${Date.now().toString(36)}`;
      const slow = list(tag, 300, "slow.example");
      const fast = list(tag, 300, "fast.example");
      const id = await send(
        cluster!.api,
        slow.flatMap((s, i) => [s, fast[i]!]),
        { servers: ["domains"] },
      );
      const done = await completed(cluster!.api, id, 120_000);
      console.log(
        `a domain at 10/s beside an unlimited one over 2 workers: fast done after ${((Math.max(...fastTimes) - Math.min(...fastTimes)) / 1000).toFixed(1)} s, slow after ${((Math.max(...slowTimes) - Math.min(...slowTimes)) / 1000).toFixed(1)} s, most slow in a second ${maxInAnyWindow(slowTimes)}`,
      );
      expect(done.counts).toMatchObject({ sent: 600, failed: 0, unknown: 0 });
      expect([...slow, ...fast].filter((r) => domains.deliveries(r) !== 1)).toEqual([]);
      // The issue's figure: the unlimited domain finishes first; and well ahead, since "first"
      // alone also holds when it goes at the limited one's pace to the end (as it did while a
      // message waiting for its domain held a connection: 217–268 of the 300 by then).
      const fastDoneAt = Math.max(...fastTimes);
      const slowByThen = slowTimes.filter((t) => t <= fastDoneAt).length;
      console.log(
        `when the unlimited domain's last was delivered, ${slowByThen} of the limited one's 300 were`,
      );
      expect(fastDoneAt).toBeLessThan(Math.max(...slowTimes));
      expect(slowByThen).toBeLessThan(100);
      expect(maxInAnyWindow(slowTimes)).toBeLessThanOrEqual(11);
      // Waiting for the limit spent no attempt.
      const attempts = await attemptsOf(cluster!.api, id);
      expect(attempts.size).toBe(600);
      expect([...attempts].filter(([, n]) => n !== 1)).toEqual([]);
    }, 150_000);
  });

  describe("two workers sharing a server's limit of 50 messages per second through Redis", () => {
    let redis: RedisServer;
    let database: Awaited<ReturnType<typeof createTestDatabase>>;
    let cluster: Cluster | undefined;
    beforeAll(async () => {
      [redis, database] = await Promise.all([startRedisServer(), createTestDatabase()]);
    });
    afterAll(async () => {
      await cluster?.stop();
      await redis?.stop();
      await database?.drop();
    });

    it("never lets the server see more than 55 in a second, and sends 1,000 in 18 to 24 s", async () => {
      const times: number[] = [];
      const smtp = await startTestSmtpServer({
        keepBodies: false,
        script: () => {
          times.push(Date.now());
          return "accept";
        },
      });
      try {
        cluster = await startCluster({
          env: {
            LOVAGE_DATABASE_URL: database.url,
            LOVAGE_BROKER_URL: redis.url,
            LOVAGE_SMTP_URL: `${smtp.url}?rate=50`,
          },
          workers: 2,
        });
        const recipients = list("rate", 1000, "example.com");
        const id = await send(cluster.api, recipients);
        const done = await completed(cluster.api, id, 60_000);
        expect(done.counts).toMatchObject({ sent: 1000, failed: 0 });
        const spanS = (Math.max(...times) - Math.min(...times)) / 1000;
        console.log(
          `1000 at a limit of 50/s over 2 workers: ${spanS.toFixed(1)} s, most in a second ${maxInAnyWindow(times)}`,
        );
        expect(maxInAnyWindow(times)).toBeLessThanOrEqual(55);
        expect(spanS).toBeGreaterThanOrEqual(18);
        expect(spanS).toBeLessThanOrEqual(24);
        expect(recipients.filter((r) => smtp.deliveries(r) !== 1)).toEqual([]);
      } finally {
        await smtp.close();
      }
    }, 120_000);
  });
});
