/**
 * The distributed topology under faults, with real processes: `lovage api` and several
 * `lovage worker`s on a Redis and a PostgreSQL of the test's own (so it can kill them) and a
 * real SMTP server. Each test counts: requested, delivered, logged sent / failed / unknown,
 * duplicates.
 */
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CampaignView } from "../../src/api/present.js";
import { unrecordedLimit } from "../../src/mail/send-batch.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { api, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import {
  startPostgresServer,
  startRedisServer,
  type PostgresServer,
  type RedisServer,
} from "../helpers/services.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

/** SMTP connections per worker; one killed worker leaves at most unrecordedLimit(POOL_SIZE) `unknown`. */
const POOL_SIZE = 4;
const FAST_RECOVERY = {
  LOVAGE_CONCURRENCY: "4",
  LOVAGE_SMTP_POOL_SIZE: String(POOL_SIZE),
  LOVAGE_LEASE_MS: "5000",
  LOVAGE_JOB_LOCK_MS: "3000",
  LOVAGE_RETRY_BASE_MS: "200",
  LOVAGE_SHUTDOWN_TIMEOUT_MS: "5000",
};

interface Created {
  campaign: CampaignView;
  accepted: number;
}

describe("lovage api + lovage worker on Redis and PostgreSQL", () => {
  let postgres: PostgresServer;
  let redis: RedisServer;
  let smtp: TestSmtpServer;
  let cluster: Cluster | undefined;

  beforeAll(async () => {
    [postgres, redis, smtp] = await Promise.all([
      startPostgresServer(),
      startRedisServer(),
      startTestSmtpServer({ keepBodies: false }),
    ]);
  });

  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  afterAll(async () => {
    await smtp?.close();
    await redis?.stop();
    await postgres?.stop();
  });

  const env = () => ({
    LOVAGE_DATABASE_URL: postgres.url,
    LOVAGE_BROKER_URL: redis.url,
    LOVAGE_SMTP_URL: smtp.url,
    LOVAGE_DEFAULT_FROM: "Lovage test <lovage@example.com>",
    ...FAST_RECOVERY,
  });

  async function send(lovage: LovageProcess, addresses: string[]) {
    const { status, body } = await api<Created>(lovage, "POST", "/api/campaigns", {
      subject: "Distributed {{email}}",
      text: "Hello",
      recipients: addresses,
    });
    expect(status).toBe(202);
    expect(body.accepted).toBe(addresses.length);
    return body.campaign.id;
  }

  const view = async (id: number) =>
    (await api<CampaignView>(cluster!.api, "GET", `/api/campaigns/${id}`)).body;

  async function sentAtLeast(id: number, n: number) {
    await waitFor(async () => (await view(id)).counts.sent >= n, {
      timeoutMs: 120_000,
      intervalMs: 100,
      message: `${n} sent`,
    });
  }

  async function completed(id: number, timeoutMs = 240_000) {
    return waitFor(
      async () => {
        const v = await view(id);
        return v.status === "completed" ? v : undefined;
      },
      { timeoutMs, intervalMs: 250, message: `campaign ${id} completed` },
    );
  }

  function deliveredCount(addresses: string[]) {
    return addresses.filter((a) => smtp.deliveries(a) > 0).length;
  }

  it(
    "survives Redis restarted empty, a worker killed with -9, and two workers added, in one campaign",
    async () => {
      smtp.setScript(() => ({ delayMs: 4 }));
      cluster = await startCluster({ env: env(), apis: 1, workers: 3 });
      const addresses = Array.from({ length: 5000 }, (_, i) => `big-${i}@example.com`);
      const id = await send(cluster.api, addresses);

      await sentAtLeast(id, 800);
      await redis.kill();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await redis.start();

      await sentAtLeast(id, 2000);
      const victim = cluster.workers[0]!;
      await victim.kill();
      await cluster.addWorker();

      await sentAtLeast(id, 3000);
      await Promise.all([cluster.addWorker(), cluster.addWorker()]);

      const done = await completed(id);
      const { sent, failed, unknown } = done.counts;
      expect(sent + failed + unknown).toBe(5000);
      expect(smtp.duplicates()).toEqual([]);
      expect(unknown).toBeLessThanOrEqual(unrecordedLimit(POOL_SIZE));
      const delivered = deliveredCount(addresses);
      console.info(
        `5,000 through faults: sent ${sent}, failed ${failed}, unknown ${unknown}, delivered ${delivered}, duplicates 0`,
      );
      expect(delivered).toBeGreaterThanOrEqual(sent);
      expect(delivered).toBeLessThanOrEqual(sent + unknown);

      // The registry lists the five live workers and drops the killed one.
      const workers = await waitFor(
        async () => {
          const { body } = await api<{ workers: { pid: number; processed: number }[] }>(
            cluster!.api,
            "GET",
            "/api/workers",
          );
          return body.workers.length === 5 ? body.workers : undefined;
        },
        { timeoutMs: 30_000, message: "five live workers" },
      );
      expect(workers.map((w) => w.pid)).not.toContain(victim.child.pid);
      const { body: queues } = await api<{ queues: { name: string }[] }>(cluster.api, "GET", "/api/queues");
      expect(queues.queues.map((q) => q.name)).toContain("email");
    },
    /* five processes started, two restarts and 5,000 messages on 2 shared cores */ 300_000,
  );

  it("sends every address when the SMTP server answers 451 to 10% of messages, with each retry in the log", async () => {
    smtp.setScript(({ recipient, attemptsFor }) =>
      // A plain temporary failure: a throttling text ("slow down") would slow the whole server.
      recipient.startsWith("temp-") && /0@/.test(recipient) && attemptsFor === 0
        ? { code: 451, message: "4.3.0 temporary local problem" }
        : "accept",
    );
    cluster = await startCluster({ env: env(), apis: 2, workers: 2 });
    const addresses = Array.from({ length: 1000 }, (_, i) => `temp-${i}@example.com`);
    const id = await send(cluster.api, addresses);
    const done = await completed(id);
    expect(done.counts.sent).toBe(1000);
    expect(smtp.duplicates()).toEqual([]);
    const { body } = await api<{ recipients: { email: string; attempts: number }[] }>(
      cluster.api,
      "GET",
      `/api/campaigns/${id}/recipients?limit=1000`,
    );
    const retried = body.recipients.filter((r) => r.attempts === 2);
    expect(retried).toHaveLength(100);
    expect(retried.every((r) => r.email.endsWith("0@example.com"))).toBe(true);
  });

  it("keeps accepting campaigns while Redis is down, says so in /readyz, and sends them once it is back", async () => {
    smtp.setScript(() => "accept");
    cluster = await startCluster({ env: env(), apis: 1, workers: 2 });
    await redis.kill();
    const addresses = Array.from({ length: 300 }, (_, i) => `outage-${i}@example.com`);
    const id = await send(cluster.api, addresses);
    const ready = await waitFor(async () => {
      const response = await fetch(`${cluster!.api.url}/readyz`);
      const body = (await response.json()) as { broker: string; database: string };
      return response.status === 503 && body.broker === "down" ? body : undefined;
    });
    expect(ready.database).toBe("up");
    expect((await view(id)).counts.sent).toBe(0);
    await redis.start();
    const done = await completed(id, 120_000);
    expect(done.counts.sent).toBe(300);
    expect(smtp.duplicates()).toEqual([]);
  });

  it("runs on PostgreSQL alone, with no Redis, and survives a worker killed with -9", async () => {
    smtp.setScript(() => ({ delayMs: 3 }));
    const { LOVAGE_BROKER_URL: _none, ...withoutRedis } = env();
    cluster = await startCluster({ env: withoutRedis, apis: 1, workers: 2 });
    const addresses = Array.from({ length: 1500 }, (_, i) => `pgonly-${i}@example.com`);
    const id = await send(cluster.api, addresses);
    await sentAtLeast(id, 300);
    await cluster.workers[0]!.kill();
    await cluster.addWorker();
    const done = await completed(id);
    const { sent, failed, unknown } = done.counts;
    expect(sent + failed + unknown).toBe(1500);
    expect(unknown).toBeLessThanOrEqual(unrecordedLimit(POOL_SIZE));
    expect(smtp.duplicates()).toEqual([]);
    const ready = (await (await fetch(`${cluster.api.url}/readyz`)).json()) as { broker: string };
    expect(ready.broker).toBe("up");
  });

  it("lets a worker stopped with SIGTERM finish what it holds and exit 0, leaving nothing unknown", async () => {
    smtp.setScript(() => ({ delayMs: 3 }));
    cluster = await startCluster({ env: env(), apis: 1, workers: 2 });
    const addresses = Array.from({ length: 1000 }, (_, i) => `term-${i}@example.com`);
    const id = await send(cluster.api, addresses);
    await sentAtLeast(id, 200);
    expect(await cluster.workers[0]!.stop()).toBe(0);
    const done = await completed(id);
    expect(done.counts).toMatchObject({ sent: 1000, unknown: 0, failed: 0 });
    expect(smtp.duplicates()).toEqual([]);
    // One identity per worker: every attempt names a worker the registry knows, and both sent some.
    const db = new pg.Client({ connectionString: postgres.url });
    await db.connect();
    try {
      const { rows } = await db.query<{ worker: string; n: number }>(
        `SELECT a.worker, count(*)::int AS n FROM lovage.attempts a JOIN lovage.recipients r ON r.id = a.recipient_id
         WHERE r.campaign_id = $1 GROUP BY a.worker`,
        [id],
      );
      const registered = await db.query<{ id: string }>("SELECT id FROM lovage.workers");
      for (const row of rows) expect(registered.rows.map((w) => w.id)).toContain(row.worker);
      expect(rows).toHaveLength(2);
    } finally {
      await db.end();
    }
  });

  it("answers 503 while PostgreSQL is down and finishes the campaign after it restarts", async () => {
    smtp.setScript(() => ({ delayMs: 2 }));
    cluster = await startCluster({ env: env(), apis: 1, workers: 2 });
    const addresses = Array.from({ length: 2000 }, (_, i) => `pg-${i}@example.com`);
    const id = await send(cluster.api, addresses);
    await sentAtLeast(id, 300);
    await postgres.stopServer();
    const during = await api<{ error: { code: string; message: string } }>(
      cluster.api,
      "GET",
      `/api/campaigns/${id}`,
    );
    expect(during.status).toBe(503);
    expect(during.body.error.code).toBe("unavailable");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await postgres.startServer();
    const done = await completed(id);
    const { sent, failed, unknown } = done.counts;
    expect(sent + failed + unknown).toBe(2000);
    expect(smtp.duplicates()).toEqual([]);
    expect(deliveredCount(addresses)).toBeGreaterThanOrEqual(sent);
  });
});
