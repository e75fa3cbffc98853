/**
 * The per-minute figures for the dashboard's charts: emails and jobs over a range, by bucket,
 * with failure counts, wait and run time percentiles, queue depth, and the range's breakdown by
 * SMTP server, recipient domain group and task. The figures are the store's (src/db/figures.ts):
 * they survive restarts; pending email figures are rolled up first, so a chart is current.
 */
import type { FastifyInstance } from "fastify";
import {
  addHistograms,
  emailBreakdown,
  emailSeries,
  jobBreakdown,
  jobSeries,
  quantileOf,
  queueSeries,
  rollUpEmails,
  type EmailBreakdownRow,
} from "../../db/figures.js";
import { domainGroup } from "../../monitor/domain-groups.js";
import type { AppDeps } from "../app.js";

/** Each range and the width of its buckets. */
const RANGES = {
  hour: { ms: 3600_000, stepMinutes: 1 },
  day: { ms: 24 * 3600_000, stepMinutes: 10 },
  week: { ms: 7 * 24 * 3600_000, stepMinutes: 60 },
  month: { ms: 30 * 24 * 3600_000, stepMinutes: 360 },
} as const;
type Range = keyof typeof RANGES;

const EMAIL_STATUS: Record<string, "sent" | "failed" | "deferred" | "unknown"> = {
  sent: "sent",
  failed: "failed",
  retry: "deferred",
  unknown: "unknown",
};

const round = (ms: number | null) => (ms === null ? null : Math.round(ms * 10) / 10);

function emailCounts() {
  return { sent: 0, failed: 0, deferred: 0, unknown: 0 };
}

function byKey(rows: EmailBreakdownRow[], label: (key: string) => string) {
  const keyed = new Map<string, ReturnType<typeof emailCounts> & { hist: number[]; n: number }>();
  for (const row of rows) {
    const key = label(row.key);
    const entry = keyed.get(key) ?? { ...emailCounts(), hist: [], n: 0 };
    const status = EMAIL_STATUS[row.outcome];
    if (status) entry[status] += row.n;
    entry.hist = addHistograms(entry.hist, row.durationHist);
    entry.n += row.n;
    keyed.set(key, entry);
  }
  return [...keyed].map(([key, { hist, n, ...counts }]) => ({
    key,
    ...counts,
    smtpP50Ms: round(quantileOf(hist, n, 0.5)),
    smtpP95Ms: round(quantileOf(hist, n, 0.95)),
  }));
}

export async function figureRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get<{ Querystring: { range?: Range } }>(
    "/api/figures",
    {
      config: { access: "signed-in" },
      schema: {
        summary:
          "Per-minute figures over a range: emails by outcome, jobs by state with wait and run time p50/p95, queue depth, and breakdowns",
        tags: ["figures"],
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { range: { type: "string", enum: Object.keys(RANGES), default: "hour" } },
        },
      },
    },
    async (request) => {
      const range = request.query.range ?? "hour";
      const { ms, stepMinutes } = RANGES[range];
      const stepMs = stepMinutes * 60_000;
      // From the start of the bucket that holds `now - range`, so the first bucket is whole.
      const since = new Date(Math.floor((Date.now() - ms) / stepMs) * stepMs);
      await rollUpEmails(deps.db, domainGroup);
      const [emails, jobs, queues, servers, groups, tasks] = await Promise.all([
        emailSeries(deps.db, since, stepMinutes),
        jobSeries(deps.db, since, stepMinutes),
        queueSeries(deps.db, since, stepMinutes),
        emailBreakdown(deps.db, since, "server"),
        emailBreakdown(deps.db, since, "domain_group"),
        jobBreakdown(deps.db, since),
      ]);

      const emailPoints = new Map<number, ReturnType<typeof emailCounts>>();
      for (const point of emails) {
        const at = point.at.getTime();
        const entry = emailPoints.get(at) ?? emailCounts();
        const status = EMAIL_STATUS[point.outcome];
        if (status) entry[status] += point.n;
        emailPoints.set(at, entry);
      }
      const jobPoints = new Map<
        number,
        {
          completed: number;
          failed: number;
          retried: number;
          cancelled: number;
          wait: number[];
          run: number[];
          n: number;
        }
      >();
      for (const point of jobs) {
        const at = point.at.getTime();
        const entry = jobPoints.get(at) ?? {
          completed: 0,
          failed: 0,
          retried: 0,
          cancelled: 0,
          wait: [],
          run: [],
          n: 0,
        };
        if (point.state in entry) entry[point.state as "completed"] += point.n;
        entry.wait = addHistograms(entry.wait, point.waitHist);
        entry.run = addHistograms(entry.run, point.runHist);
        entry.n += point.n;
        jobPoints.set(at, entry);
      }
      const byTask = new Map<
        string,
        {
          queue: string;
          task: string;
          counts: Record<string, number>;
          wait: number[];
          run: number[];
          n: number;
        }
      >();
      for (const row of tasks) {
        const key = JSON.stringify([row.queue, row.task]);
        const entry = byTask.get(key) ?? {
          queue: row.queue,
          task: row.task,
          counts: {},
          wait: [],
          run: [],
          n: 0,
        };
        entry.counts[row.state] = (entry.counts[row.state] ?? 0) + row.n;
        entry.wait = addHistograms(entry.wait, row.waitHist);
        entry.run = addHistograms(entry.run, row.runHist);
        entry.n += row.n;
        byTask.set(key, entry);
      }
      return {
        range,
        stepMinutes,
        since: since.toISOString(),
        until: new Date().toISOString(),
        emails: [...emailPoints].map(([at, counts]) => ({ at: new Date(at).toISOString(), ...counts })),
        jobs: [...jobPoints].map(([at, { wait, run, n, ...counts }]) => ({
          at: new Date(at).toISOString(),
          ...counts,
          waitP50Ms: round(quantileOf(wait, n, 0.5)),
          waitP95Ms: round(quantileOf(wait, n, 0.95)),
          runP50Ms: round(quantileOf(run, n, 0.5)),
          runP95Ms: round(quantileOf(run, n, 0.95)),
        })),
        queues: queues.map((point) => ({ ...point, at: point.at.toISOString() })),
        byServer: byKey(servers, (key) => key || "unknown"),
        byDomainGroup: byKey(groups, (key) => key),
        byTask: [...byTask.values()].map(({ wait, run, n, counts, ...rest }) => ({
          ...rest,
          completed: counts.completed ?? 0,
          failed: counts.failed ?? 0,
          retried: counts.retried ?? 0,
          cancelled: counts.cancelled ?? 0,
          waitP50Ms: round(quantileOf(wait, n, 0.5)),
          waitP95Ms: round(quantileOf(wait, n, 0.95)),
          runP50Ms: round(quantileOf(run, n, 0.5)),
          runP95Ms: round(quantileOf(run, n, 0.95)),
        })),
      };
    },
  );
}
