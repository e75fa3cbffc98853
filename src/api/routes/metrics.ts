/**
 * `GET /metrics` for Prometheus: the process's own metrics, and Lovage's from the store and the
 * broker, so that every API process answers the same whole-cluster figures: emails by status
 * and SMTP server, jobs by queue, task and state, their durations as histograms, queue depth,
 * live workers, recipients by status. Counters come from the figures' totals (never pruned, so
 * they only grow); the pending email figures are rolled up first, so the counts match the store
 * at the moment of the scrape. With LOVAGE_METRICS_TOKEN set, only a bearer of it is answered.
 */
import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import {
  DURATION_BUCKETS_MS,
  addHistograms,
  emailTotals,
  jobTotals,
  rollUpEmails,
} from "../../db/figures.js";
import { countsByStatus } from "../../db/recipients.js";
import { countSmtpEvents } from "../../db/smtp.js";
import { liveWorkers } from "../../db/workers.js";
import { domainGroup } from "../../monitor/domain-groups.js";
import { createQueueAdmin } from "../../queue/queues.js";
import type { AppDeps } from "../app.js";
import { ApiError } from "../errors.js";
import { noQuery } from "../input.js";
import { smtpServers } from "../present.js";
import { DEFAULT_WORKER_TIMEOUT_MS, knownQueues } from "./queues.js";

/** An attempt's outcome as the email status a dashboard counts. */
const EMAIL_STATUS: Record<string, string> = {
  sent: "sent",
  failed: "failed",
  retry: "deferred",
  unknown: "unknown",
};

const serverLabel = (server: string) => server || "unknown";

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

interface HistogramSeries {
  labels: Record<string, string>;
  hist: number[];
  n: number;
  sumMs: number;
}

/** A histogram in the text format, from cumulative counts over DURATION_BUCKETS_MS. */
function histogramText(name: string, help: string, series: HistogramSeries[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
  for (const s of series) {
    const base = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
    const labels = (extra: string[]) => `{${[...base, ...extra].join(",")}}`;
    DURATION_BUCKETS_MS.forEach((le, i) =>
      lines.push(`${name}_bucket${labels([`le="${le / 1000}"`])} ${s.hist[i] ?? 0}`),
    );
    lines.push(`${name}_bucket${labels(['le="+Inf"'])} ${s.n}`);
    lines.push(`${name}_sum${labels([])} ${s.sumMs / 1000}`);
    lines.push(`${name}_count${labels([])} ${s.n}`);
  }
  return `${lines.join("\n")}\n`;
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function metricsRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const admin = createQueueAdmin(deps.broker);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "lovage_" });
  new Gauge({
    name: "lovage_recipients",
    help: "Recipients by status, across all campaigns",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      const counts = await countsByStatus(deps.db);
      this.reset();
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  const emails = new Counter({
    name: "lovage_emails_total",
    help: "SMTP attempts by outcome (sent, failed, deferred: retried later, unknown) and SMTP server",
    labelNames: ["status", "server"],
    registers: [registry],
  });
  const jobs = new Counter({
    name: "lovage_jobs_total",
    help: "Ended job attempts by queue, task and state (completed, failed, retried, cancelled)",
    labelNames: ["queue", "task", "state"],
    registers: [registry],
  });
  new Gauge({
    name: "lovage_queue_jobs",
    help: "Jobs in each queue by state",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      const infos = await Promise.all(knownQueues(deps).map((name) => admin.info(name)));
      this.reset();
      for (const info of infos)
        for (const [state, n] of Object.entries(info.counts)) this.set({ queue: info.name, state }, n);
    },
  });
  new Gauge({
    name: "lovage_workers",
    help: "Live worker processes",
    registers: [registry],
    async collect() {
      this.set((await liveWorkers(deps.db, deps.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS)).length);
    },
  });

  const serverGauge = (
    name: string,
    help: string,
    value: (s: Awaited<ReturnType<typeof smtpServers>>[number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ["server"],
      registers: [registry],
      async collect() {
        const servers = await smtpServers(deps.db, deps.workerTimeoutMs ?? DEFAULT_WORKER_TIMEOUT_MS);
        this.reset();
        for (const server of servers) this.set({ server: server.name }, value(server));
      },
    });
  serverGauge(
    "lovage_smtp_server_up",
    "1 when the SMTP server is in (any worker can use it), 0 when out or suspended",
    (s) => (s.state === "in" || s.state === "probing" ? 1 : 0),
  );
  serverGauge(
    "lovage_smtp_server_rate",
    "Messages per second the SMTP server accepted, over the last 10 s, all workers",
    (s) => s.rate,
  );
  serverGauge(
    "lovage_smtp_server_sent",
    "Messages the SMTP server accepted since the workers started",
    (s) => s.sent,
  );
  serverGauge(
    "lovage_smtp_server_deferred",
    "Messages answered 4xx or not tried on the SMTP server",
    (s) => s.deferred,
  );
  new Gauge({
    name: "lovage_smtp_events",
    help: "Pace events (out, in, slower, faster, suspended, resumed, connections) by server, last 7 days",
    labelNames: ["server", "kind"],
    registers: [registry],
    async collect() {
      const rows = await countSmtpEvents(deps.db);
      this.reset();
      for (const row of rows) this.set({ server: row.name, kind: row.kind }, row.n);
    },
  });

  app.get(
    "/metrics",
    {
      // Public unless LOVAGE_METRICS_TOKEN is set: then the handler checks its own token, which
      // is not a user's (a scraper has no user).
      config: { access: "public" },
      schema: { hide: true, querystring: noQuery },
    },
    async (request, reply) => {
      if (deps.metricsToken !== undefined) {
        const header = request.headers.authorization ?? "";
        const given = header.startsWith("Bearer ") ? header.slice("Bearer ".length) : "";
        if (!sameToken(given, deps.metricsToken))
          throw new ApiError(
            "unauthorized",
            "GET /metrics needs Authorization: Bearer <the LOVAGE_METRICS_TOKEN value>",
          );
      }
      await rollUpEmails(deps.db, domainGroup);
      const [emailRows, jobRows] = await Promise.all([emailTotals(deps.db), jobTotals(deps.db)]);
      emails.reset();
      for (const row of emailRows)
        emails.inc(
          { status: EMAIL_STATUS[row.outcome] ?? row.outcome, server: serverLabel(row.server) },
          row.n,
        );
      jobs.reset();
      for (const row of jobRows) jobs.inc({ queue: row.queue, task: row.task, state: row.state }, row.n);

      const smtp = new Map<string, HistogramSeries>();
      for (const row of emailRows) {
        const server = serverLabel(row.server);
        const s = smtp.get(server) ?? { labels: { server }, hist: [], n: 0, sumMs: 0 };
        smtp.set(server, {
          ...s,
          hist: addHistograms(s.hist, row.durationHist),
          n: s.n + row.n,
          sumMs: s.sumMs + row.durationMsSum,
        });
      }
      const durations = new Map<string, HistogramSeries>();
      for (const row of jobRows) {
        const key = JSON.stringify([row.queue, row.task]);
        const s = durations.get(key) ?? {
          labels: { queue: row.queue, task: row.task },
          hist: [],
          n: 0,
          sumMs: 0,
        };
        durations.set(key, {
          ...s,
          hist: addHistograms(s.hist, row.runHist),
          n: s.n + row.n,
          sumMs: s.sumMs + row.runMsSum,
        });
      }
      const body =
        (await registry.metrics()) +
        histogramText("lovage_smtp_duration_seconds", "Time of one SMTP attempt, by SMTP server", [
          ...smtp.values(),
        ]) +
        histogramText("lovage_job_duration_seconds", "Run time of one job attempt, by queue and task", [
          ...durations.values(),
        ]);
      return reply.header("content-type", registry.contentType).send(body);
    },
  );
}
