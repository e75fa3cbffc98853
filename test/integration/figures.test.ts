/**
 * The durable figures on each backend (embedded PGlite, Redis + PostgreSQL, PostgreSQL alone):
 * email figures rolled up from the attempts as recorded (by server, domain group, outcome),
 * counted once however many roll-ups run at once; job figures with their percentiles; the
 * dashboard's figures route; and /metrics, whose counters match the store, behind its token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertCampaign } from "../../src/db/campaigns.js";
import {
  emailBreakdown,
  emailTotals,
  jobBreakdown,
  quantileOf,
  recordJobFigures,
  rollUpEmails,
} from "../../src/db/figures.js";
import { insertRecipients, listRecipients, recordOutcomes, type Outcome } from "../../src/db/recipients.js";
import { liveWorkers, recordHeartbeat } from "../../src/db/workers.js";
import { buildApp } from "../../src/api/app.js";
import { domainGroup } from "../../src/monitor/domain-groups.js";
import { createProducer } from "../../src/queue/producer.js";
import { TaskRegistry } from "../../src/queue/task.js";
import { BACKENDS, openBackend, type Backend } from "../helpers/backends.js";
import { openSignedInApp } from "../helpers/api-app.js";

const sent: Outcome = { kind: "sent", messageId: "<m@x>", response: "250 ok" };
const deferred = (): Outcome => ({ kind: "retry", code: 451, error: "try later", retryAt: new Date() });
const failed: Outcome = { kind: "failed", code: 550, error: "no such user" };

describe.each(BACKENDS)("figures on %s", (backendName) => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await openBackend(backendName);
  }, 60_000);

  afterAll(async () => {
    await backend?.close();
  });

  /** A campaign whose recipients got these outcomes, recorded by `worker` through `server`. */
  async function attempts(server: string, worker: string, outcomes: [email: string, outcome: Outcome][]) {
    const db = backend.store.db;
    const campaignId = await insertCampaign(db, {
      name: server,
      from: "a@example.com",
      subject: "s",
      text: "t",
      html: null,
      priority: 0,
      sendAt: null,
      replyTo: null,
      headers: {},
      listUnsubscribe: true,
      ignoreManualSuppressions: false,
    });
    await insertRecipients(
      db,
      campaignId,
      outcomes.map(([email], i) => ({ line: i + 1, email, fields: {} })),
    );
    const rows = await listRecipients(db, { campaignId, limit: 1000 });
    const byEmail = new Map(rows.map((row) => [row.email, row.id]));
    await recordOutcomes(
      db,
      outcomes.map(([email, outcome]) => ({
        recipientId: byEmail.get(email)!,
        campaignId,
        attempt: 1,
        startedAt: new Date(Date.now() - 40),
        outcome,
        server,
      })),
      worker,
    );
  }

  it("rolls up email figures by server, domain group and outcome, each attempt counted once", async () => {
    const db = backend.store.db;
    await recordHeartbeat(db, {
      id: "w-figures",
      host: "h",
      pid: 1,
      queues: ["email"],
      concurrency: 1,
      startedAt: new Date(),
      processed: 0,
      failed: 0,
      active: 0,
      watchdogRestarts: 0,
      lastJobAt: null,
      running: [],
    });
    await attempts("relay-a", "w-figures", [
      ["ann@gmail.com", sent],
      ["bob@GoogleMail.com", sent],
      ["cat@hotmail.co.uk", sent],
      ["dan@outlook.com", deferred()],
      ["eve@yahoo.fr", failed],
      ["fay@example.org", sent],
    ]);
    // Two processes rolling up at once share the rows: together they count each attempt once.
    const [first, second] = await Promise.all([rollUpEmails(db, domainGroup), rollUpEmails(db, domainGroup)]);
    expect(first + second).toBe(6);
    expect(await rollUpEmails(db, domainGroup)).toBe(0);

    const totals = (await emailTotals(db)).filter((t) => t.server === "relay-a");
    expect(Object.fromEntries(totals.map((t) => [t.outcome, t.n]))).toEqual({ sent: 4, retry: 1, failed: 1 });
    const sentTotal = totals.find((t) => t.outcome === "sent")!;
    // Each attempt took about 40 ms: the median lies in the 25–50 ms bucket or the next.
    expect(quantileOf(sentTotal.durationHist, sentTotal.n, 0.5)).toBeGreaterThan(25);
    expect(quantileOf(sentTotal.durationHist, sentTotal.n, 0.5)).toBeLessThanOrEqual(250);

    const groups = await emailBreakdown(db, new Date(Date.now() - 3600_000), "domain_group");
    const count = (group: string, outcome: string) =>
      groups.find((g) => g.key === group && g.outcome === outcome)?.n ?? 0;
    expect([count("gmail", "sent"), count("microsoft", "sent"), count("microsoft", "retry")]).toEqual([
      2, 1, 1,
    ]);
    expect([count("yahoo", "failed"), count("other", "sent")]).toEqual([1, 1]);

    const worker = (await liveWorkers(db, 60_000)).find((w) => w.id === "w-figures");
    expect(worker?.emailsSent).toBe(4);
  });

  it("keeps job figures per queue, task and state with their run time percentiles", async () => {
    const db = backend.store.db;
    const now = new Date();
    await recordJobFigures(db, [
      ...Array.from({ length: 9 }, () => ({
        queue: "q-jobs",
        task: "resize",
        state: "completed",
        waitMs: 3,
        runMs: 80,
        finishedAt: now,
      })),
      { queue: "q-jobs", task: "resize", state: "completed", waitMs: 3, runMs: 4_000, finishedAt: now },
      { queue: "q-jobs", task: "resize", state: "failed", waitMs: 3, runMs: 20, finishedAt: now },
    ]);
    // A second worker's flush in the same minute adds to the same rows.
    await recordJobFigures(db, [
      { queue: "q-jobs", task: "resize", state: "completed", waitMs: 3, runMs: 80, finishedAt: now },
    ]);
    const rows = (await jobBreakdown(db, new Date(Date.now() - 3600_000))).filter(
      (r) => r.queue === "q-jobs",
    );
    const completed = rows.find((r) => r.state === "completed")!;
    expect(completed.n).toBe(11);
    expect(rows.find((r) => r.state === "failed")?.n).toBe(1);
    expect(quantileOf(completed.runHist, completed.n, 0.5)).toBeLessThanOrEqual(100);
    expect(quantileOf(completed.runHist, completed.n, 0.95)).toBeGreaterThan(2_500);
  });

  it("answers the figures for the charts and /metrics counters that match the store, behind the token", async () => {
    await attempts("relay-m", "w-metrics", [
      ["one@gmail.com", sent],
      ["two@example.org", sent],
      ["three@example.org", failed],
    ]);
    const producer = createProducer(backend.broker);
    const { app, call } = await openSignedInApp(backend, producer, []);
    try {
      const figures = await call({ method: "GET", url: "/api/figures?range=hour" });
      expect(figures.statusCode, figures.body).toBe(200);
      const body = figures.json<{
        stepMinutes: number;
        emails: { sent: number; failed: number }[];
        byServer: { key: string; sent: number; failed: number }[];
        byTask: { queue: string; completed: number }[];
      }>();
      expect(body.stepMinutes).toBe(1);
      expect(body.byServer.find((s) => s.key === "relay-m")).toMatchObject({ sent: 2, failed: 1 });
      expect(body.emails.reduce((n, p) => n + p.sent, 0)).toBeGreaterThanOrEqual(2);
      expect(body.byTask.find((t) => t.queue === "q-jobs")?.completed).toBe(11);
      expect((await call({ method: "GET", url: "/api/figures?range=year" })).statusCode).toBe(400);

      const metrics = await app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toContain('lovage_emails_total{status="sent",server="relay-m"} 2');
      expect(metrics.body).toContain('lovage_emails_total{status="failed",server="relay-m"} 1');
      expect(metrics.body).toContain('lovage_emails_total{status="deferred",server="relay-a"} 1');
      expect(metrics.body).toContain('lovage_jobs_total{queue="q-jobs",task="resize",state="completed"} 11');
      expect(metrics.body).toContain('lovage_smtp_duration_seconds_count{server="relay-m"} 3');
      expect(metrics.body).toContain(
        'lovage_job_duration_seconds_bucket{queue="q-jobs",task="resize",le="+Inf"} 12',
      );
      expect(metrics.body).toMatch(/lovage_queue_jobs\{queue="email",state="waiting"\} 0/);
      expect(metrics.body).toMatch(/^lovage_workers \d+$/m);
    } finally {
      await app.close();
    }

    const token = "a-metrics-token-of-some-length";
    const guarded = await buildApp({
      db: backend.store.db,
      broker: backend.broker,
      producer,
      registry: new TaskRegistry(),
      jwtSecret: "a-test-secret-of-at-least-32-characters-long",
      maxBodyBytes: 1024 * 1024,
      maxUploadBytes: 1024 * 1024,
      defaultFrom: "Lovage <no-reply@lovage.test>",
      catcherEnabled: true,
      metricsToken: token,
      ping: { database: backend.store.ping, broker: backend.broker.ping },
    });
    try {
      const refused = await guarded.inject({ method: "GET", url: "/metrics" });
      expect(refused.statusCode).toBe(401);
      expect(refused.body).toContain("LOVAGE_METRICS_TOKEN");
      const wrong = await guarded.inject({
        method: "GET",
        url: "/metrics",
        headers: { authorization: `Bearer ${token}x` },
      });
      expect(wrong.statusCode).toBe(401);
      const allowed = await guarded.inject({
        method: "GET",
        url: "/metrics",
        headers: { authorization: `Bearer ${token}` },
      });
      expect(allowed.statusCode).toBe(200);
      expect(allowed.body).toContain("lovage_emails_total");
    } finally {
      await guarded.close();
    }
  });
});
