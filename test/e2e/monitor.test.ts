/**
 * The monitor with real processes: `lovage api` and two `lovage worker`s on a Redis of the
 * test's own, a fresh PostgreSQL database and a real SMTP server. After a campaign, /metrics
 * counts what the store holds; a worker asked to shut down over HTTP finishes, leaves the list
 * and its process exits 0, and the events stream tells of it; after every process restarts, the
 * figures of the hour before are still there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CampaignView } from "../../src/api/present.js";
import type { WorkerView } from "../../src/db/workers.js";
import { createTestDatabase } from "../helpers/backends.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { api, waitFor } from "../helpers/lovage-process.js";
import { startRedisServer, type RedisServer } from "../helpers/services.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

interface Figures {
  emails: { sent: number; failed: number }[];
  jobs: { completed: number }[];
  byServer: { key: string; sent: number; failed: number }[];
  byDomainGroup: { key: string; sent: number }[];
}

const metric = (body: string, line: RegExp) => Number(line.exec(body)?.[1] ?? NaN);

describe("the monitor on a cluster", () => {
  let redis: RedisServer;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let smtp: TestSmtpServer;
  let cluster: Cluster;
  const env = () => ({
    LOVAGE_DATABASE_URL: database.url,
    LOVAGE_BROKER_URL: redis.url,
    LOVAGE_SMTP_URL: `${smtp.url}${smtp.url.includes("?") ? "&" : "?"}name=relay-e2e`,
    LOVAGE_SHUTDOWN_TIMEOUT_MS: "5000",
  });

  beforeAll(async () => {
    [redis, database, smtp] = await Promise.all([
      startRedisServer(),
      createTestDatabase(),
      // 5xx for the "bounce" addresses: failures are counted too.
      startTestSmtpServer({
        keepBodies: false,
        script: ({ recipient }) => (recipient.startsWith("bounce") ? { code: 550 } : "accept"),
      }),
    ]);
    cluster = await startCluster({ env: env(), workers: 2 });
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    await smtp?.close();
    await redis?.stop();
    await database?.drop();
  });

  const liveWorkers = async () =>
    (await api<{ workers: WorkerView[] }>(cluster.api, "GET", "/api/workers")).body.workers;
  const figures = async () => (await api<Figures>(cluster.api, "GET", "/api/figures?range=hour")).body;

  it("counts a campaign in /metrics as the store does, by server and status", async () => {
    const recipients = [
      ...Array.from({ length: 30 }, (_, i) => `user${i}@gmail.com`),
      ...Array.from({ length: 10 }, (_, i) => `user${i}@example.org`),
      "bounce1@example.org",
      "bounce2@example.org",
    ];
    const created = await api<{ campaign: CampaignView }>(cluster.api, "POST", "/api/campaigns", {
      from: "Figures <figures@lovage.test>",
      subject: "Figures",
      text: "Hello",
      recipients,
    });
    expect(created.status).toBe(202);
    const id = created.body.campaign.id;
    const done = await waitFor(
      async () => {
        const view = (await api<CampaignView>(cluster.api, "GET", `/api/campaigns/${id}`)).body;
        return view.status === "completed" ? view : undefined;
      },
      { timeoutMs: 60_000, message: "the campaign completes" },
    );
    expect(done.counts).toMatchObject({ sent: 40, failed: 2 });

    const scrape = await fetch(`${cluster.api.url}/metrics`);
    expect(scrape.status).toBe(200);
    const body = await scrape.text();
    expect(metric(body, /^lovage_emails_total\{status="sent",server="relay-e2e"\} (\d+)$/m)).toBe(40);
    expect(metric(body, /^lovage_emails_total\{status="failed",server="relay-e2e"\} (\d+)$/m)).toBe(2);
    expect(metric(body, /^lovage_smtp_duration_seconds_count\{server="relay-e2e"\} (\d+)$/m)).toBe(42);
    expect(metric(body, /^lovage_recipients\{status="sent"\} (\d+)$/m)).toBe(40);
    expect(metric(body, /^lovage_workers (\d+)$/m)).toBe(2);
    // Job figures are written by each worker every 5 s.
    await waitFor(async () => {
      const again = await (await fetch(`${cluster.api.url}/metrics`)).text();
      return (
        metric(
          again,
          /^lovage_jobs_total\{queue="email",task="lovage.send-batch",state="completed"\} (\d+)$/m,
        ) >= 1
      );
    });

    const seen = await figures();
    expect(seen.byServer.find((s) => s.key === "relay-e2e")).toMatchObject({ sent: 40, failed: 2 });
    expect(seen.byDomainGroup.find((g) => g.key === "gmail")?.sent).toBe(30);
    expect(seen.emails.reduce((n, p) => n + p.sent, 0)).toBe(40);
  }, 120_000);

  it("shuts a worker down on request: it leaves the list, its process exits 0, the stream tells", async () => {
    const workers = await waitFor(async () => {
      const live = await liveWorkers();
      return live.length === 2 ? live : undefined;
    });
    expect(workers.reduce((n, w) => n + w.emailsSent, 0)).toBe(40);
    const events = new AbortController();
    const stream = await fetch(`${cluster.api.url}/api/events?token=${cluster.api.token}`, {
      signal: events.signal,
    });
    const reader = stream.body!.getReader();
    let heard = "";
    const reading = (async () => {
      for (;;) {
        const chunk = (await reader.read()) as { value?: Uint8Array; done: boolean };
        if (chunk.done || !chunk.value) return;
        heard += Buffer.from(chunk.value).toString();
      }
    })().catch(() => undefined);
    try {
      await waitFor(() => heard.includes("event: workers"), { message: "a workers event" });
      const target = workers[0]!;
      const member = cluster.workers.find((w) => w.output().includes(target.id))!;
      expect(member).toBeDefined();
      const exited = new Promise<number | null>((resolve) => {
        if (member.child.exitCode !== null) resolve(member.child.exitCode);
        else member.child.once("exit", (code) => resolve(code));
      });
      const asked = await api<WorkerView>(
        cluster.api,
        "POST",
        `/api/workers/${encodeURIComponent(target.id)}/shutdown`,
      );
      expect(asked.status).toBe(202);
      expect(asked.body.shutdownRequestedAt).not.toBeNull();
      // It reads the request at its next heartbeat (5 s), stops, and its process exits by itself.
      expect(await exited).toBe(0);
      const left = await liveWorkers();
      expect(left.map((w) => w.id)).toEqual([workers[1]!.id]);
      await waitFor(
        () => {
          const last = heard.split("event: workers\ndata: ").pop()!.split("\n")[0]!;
          const listed = (JSON.parse(last) as { workers: WorkerView[] }).workers.map((w) => w.id);
          return listed.length === 1 && listed[0] === workers[1]!.id;
        },
        { message: "a workers event without the stopped worker" },
      );
    } finally {
      events.abort();
      await reading;
    }
  }, 60_000);

  it("still shows the hour before after every process restarts", async () => {
    const before = await figures();
    const jobsBefore = before.jobs.reduce((n, p) => n + p.completed, 0);
    expect(jobsBefore).toBeGreaterThan(0);
    // Every process stops (SIGTERM, as a deploy does) and new ones start on the same store.
    for (const member of [...cluster.workers, ...cluster.apis]) await member.stop();
    await cluster.stop();
    cluster = await startCluster({ env: env(), workers: 1 });
    const after = await figures();
    expect(after.emails.reduce((n, p) => n + p.sent, 0)).toBe(40);
    expect(after.byServer.find((s) => s.key === "relay-e2e")).toMatchObject({ sent: 40, failed: 2 });
    expect(after.jobs.reduce((n, p) => n + p.completed, 0)).toBeGreaterThanOrEqual(jobsBefore);
    const body = await (await fetch(`${cluster.api.url}/metrics`)).text();
    expect(metric(body, /^lovage_emails_total\{status="sent",server="relay-e2e"\} (\d+)$/m)).toBe(40);
  }, 120_000);
});
