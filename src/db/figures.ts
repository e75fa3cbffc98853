/**
 * Durable per-minute figures (migration 0006): emails by SMTP server, recipient domain group and
 * outcome; jobs by queue, task and state with their wait and run times; queue depth. Each
 * minute table has a totals twin that pruning never touches, so that the /metrics counters
 * only grow. Durations are cumulative histograms over DURATION_BUCKETS_MS, which add up across
 * workers and minutes; percentiles are read from them.
 *
 * Email figures are rolled up from what the attempts' trigger left in the pending table: each
 * roll-up deletes the rows it takes (SKIP LOCKED, so several API processes share the work and
 * none counts a row twice) and adds them to the minutes and totals in the same transaction.
 */
import { sql, type Kysely } from "kysely";
import type { Db } from "./recipients.js";
import type { Database } from "./schema.js";

/** Histogram bounds in ms, as written in migration 0006 (the attempts trigger). */
export const DURATION_BUCKETS_MS = Object.freeze([
  5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
]);

/** Cumulative counts: entry i counts the values ≤ DURATION_BUCKETS_MS[i]. */
export function histogramOf(valuesMs: readonly number[]): number[] {
  return DURATION_BUCKETS_MS.map((le) => valuesMs.filter((v) => v <= le).length);
}

export function addHistograms(a: readonly number[], b: readonly number[]): number[] {
  return DURATION_BUCKETS_MS.map((_, i) => (a[i] ?? 0) + (b[i] ?? 0));
}

/**
 * The p-th quantile (0–1) of `n` values whose cumulative histogram is `hist`, in ms, by linear
 * interpolation inside its bucket (as Prometheus's histogram_quantile); values past the last
 * bound count as that bound. Null when there are none.
 */
export function quantileOf(hist: readonly number[], n: number, p: number): number | null {
  if (n <= 0) return null;
  const rank = p * n;
  let below = 0;
  let lower = 0;
  for (let i = 0; i < DURATION_BUCKETS_MS.length; i++) {
    const upper = DURATION_BUCKETS_MS[i]!;
    const count = hist[i] ?? 0;
    if (count >= rank) {
      const inBucket = count - below;
      return inBucket > 0 ? lower + ((upper - lower) * (rank - below)) / inBucket : upper;
    }
    below = count;
    lower = upper;
  }
  return DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.length - 1]!;
}

const ROLL_UP_BATCH = 5_000;

interface Sum {
  n: number;
  sum: number;
  hist: number[];
}

function addTo<K>(map: Map<K, Sum>, key: K, n: number, sum: number, hist: readonly number[]) {
  const entry = map.get(key) ?? { n: 0, sum: 0, hist: DURATION_BUCKETS_MS.map(() => 0) };
  entry.n += n;
  entry.sum += sum;
  entry.hist = addHistograms(entry.hist, hist);
  map.set(key, entry);
}

/**
 * Moves the pending email figures into the minutes and totals, grouping each recipient domain
 * with `groupOf`; adds each worker's sent emails to its row. Answers how many attempts it counted.
 */
export async function rollUpEmails(
  db: Kysely<Database>,
  groupOf: (domain: string) => string,
): Promise<number> {
  let counted = 0;
  for (;;) {
    const taken = await db.transaction().execute(async (trx) => {
      const rows = await sql<{
        minute: Date;
        server: string;
        domain: string;
        outcome: string;
        worker: string;
        n: number;
        duration_ms_sum: number;
        duration_hist: number[];
      }>`
        DELETE FROM lovage.email_figures_pending WHERE id IN (
          SELECT id FROM lovage.email_figures_pending ORDER BY id LIMIT ${ROLL_UP_BATCH}
          FOR UPDATE SKIP LOCKED)
        RETURNING minute, server, domain, outcome, worker, n, duration_ms_sum, duration_hist`.execute(trx);
      const minutes = new Map<string, Sum>();
      const totals = new Map<string, Sum>();
      const sentByWorker = new Map<string, number>();
      for (const row of rows.rows) {
        const group = groupOf(row.domain);
        addTo(
          minutes,
          JSON.stringify([row.minute.toISOString(), row.server, group, row.outcome]),
          row.n,
          row.duration_ms_sum,
          row.duration_hist,
        );
        addTo(
          totals,
          JSON.stringify([row.server, row.outcome]),
          row.n,
          row.duration_ms_sum,
          row.duration_hist,
        );
        if (row.outcome === "sent" && row.worker)
          sentByWorker.set(row.worker, (sentByWorker.get(row.worker) ?? 0) + row.n);
      }
      // Sorted keys: two roll-ups never take the same rows in opposite orders (no deadlock).
      const minuteRows = [...minutes].sort(([a], [b]) => (a < b ? -1 : 1));
      if (minuteRows.length > 0) {
        await trx
          .insertInto("lovage.email_minutes")
          .values(
            minuteRows.map(([key, s]) => {
              const [minute, server, group, outcome] = JSON.parse(key) as string[];
              return {
                minute: new Date(minute!),
                server: server!,
                domain_group: group!,
                outcome: outcome!,
                n: s.n,
                duration_ms_sum: s.sum,
                duration_hist: s.hist,
              };
            }),
          )
          .onConflict((oc) =>
            oc.columns(["minute", "server", "domain_group", "outcome"]).doUpdateSet({
              n: sql`email_minutes.n + excluded.n`,
              duration_ms_sum: sql`email_minutes.duration_ms_sum + excluded.duration_ms_sum`,
              duration_hist: sql`lovage.add_histograms(email_minutes.duration_hist, excluded.duration_hist)`,
            }),
          )
          .execute();
      }
      const totalRows = [...totals].sort(([a], [b]) => (a < b ? -1 : 1));
      if (totalRows.length > 0) {
        await trx
          .insertInto("lovage.email_totals")
          .values(
            totalRows.map(([key, s]) => {
              const [server, outcome] = JSON.parse(key) as string[];
              return {
                server: server!,
                outcome: outcome!,
                n: s.n,
                duration_ms_sum: s.sum,
                duration_hist: s.hist,
              };
            }),
          )
          .onConflict((oc) =>
            oc.columns(["server", "outcome"]).doUpdateSet({
              n: sql`email_totals.n + excluded.n`,
              duration_ms_sum: sql`email_totals.duration_ms_sum + excluded.duration_ms_sum`,
              duration_hist: sql`lovage.add_histograms(email_totals.duration_hist, excluded.duration_hist)`,
            }),
          )
          .execute();
      }
      const workers = [...sentByWorker].sort(([a], [b]) => (a < b ? -1 : 1));
      if (workers.length > 0) {
        await sql`
          UPDATE lovage.workers w SET emails_sent = w.emails_sent + i.n
          FROM unnest(${workers.map(([id]) => id)}::text[], ${workers.map(([, n]) => n)}::int[]) AS i(id, n)
          WHERE w.id = i.id`.execute(trx);
      }
      return { rows: rows.rows.length, attempts: rows.rows.reduce((total, row) => total + row.n, 0) };
    });
    counted += taken.attempts;
    if (taken.rows < ROLL_UP_BATCH) return counted;
  }
}

/** One ended job attempt, as a worker reports it. */
export interface JobFigure {
  queue: string;
  task: string;
  state: string;
  waitMs: number;
  runMs: number;
  finishedAt: Date;
}

/** Adds ended job attempts to the minutes and totals, in one transaction. */
export async function recordJobFigures(db: Kysely<Database>, jobs: readonly JobFigure[]): Promise<void> {
  if (jobs.length === 0) return;
  const groups = new Map<string, JobFigure[]>();
  for (const job of jobs) {
    const minute = new Date(Math.floor(job.finishedAt.getTime() / 60_000) * 60_000).toISOString();
    const key = JSON.stringify([minute, job.queue, job.task, job.state]);
    groups.set(key, [...(groups.get(key) ?? []), job]);
  }
  const rows = [...groups]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([key, list]) => {
      const [minute, queue, task, state] = JSON.parse(key) as string[];
      return {
        minute: new Date(minute!),
        queue: queue!,
        task: task!,
        state: state!,
        n: list.length,
        wait_ms_sum: list.reduce((total, job) => total + job.waitMs, 0),
        wait_hist: histogramOf(list.map((job) => job.waitMs)),
        run_ms_sum: list.reduce((total, job) => total + job.runMs, 0),
        run_hist: histogramOf(list.map((job) => job.runMs)),
      };
    });
  const totals = new Map<string, Sum>();
  for (const row of rows)
    addTo(totals, JSON.stringify([row.queue, row.task, row.state]), row.n, row.run_ms_sum, row.run_hist);
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto("lovage.job_minutes")
      .values(rows)
      .onConflict((oc) =>
        oc.columns(["minute", "queue", "task", "state"]).doUpdateSet({
          n: sql`job_minutes.n + excluded.n`,
          wait_ms_sum: sql`job_minutes.wait_ms_sum + excluded.wait_ms_sum`,
          wait_hist: sql`lovage.add_histograms(job_minutes.wait_hist, excluded.wait_hist)`,
          run_ms_sum: sql`job_minutes.run_ms_sum + excluded.run_ms_sum`,
          run_hist: sql`lovage.add_histograms(job_minutes.run_hist, excluded.run_hist)`,
        }),
      )
      .execute();
    await trx
      .insertInto("lovage.job_totals")
      .values(
        [...totals]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([key, s]) => {
            const [queue, task, state] = JSON.parse(key) as string[];
            return { queue: queue!, task: task!, state: state!, n: s.n, run_ms_sum: s.sum, run_hist: s.hist };
          }),
      )
      .onConflict((oc) =>
        oc.columns(["queue", "task", "state"]).doUpdateSet({
          n: sql`job_totals.n + excluded.n`,
          run_ms_sum: sql`job_totals.run_ms_sum + excluded.run_ms_sum`,
          run_hist: sql`lovage.add_histograms(job_totals.run_hist, excluded.run_hist)`,
        }),
      )
      .execute();
  });
}

export interface QueueDepth {
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
}

/** The queues' depth in the minute of `at` (a later sample in the same minute replaces it). */
export async function recordQueueDepth(db: Db, at: Date, depths: readonly QueueDepth[]): Promise<void> {
  if (depths.length === 0) return;
  const minute = new Date(Math.floor(at.getTime() / 60_000) * 60_000);
  await db
    .insertInto("lovage.queue_minutes")
    .values([...depths].sort((a, b) => (a.queue < b.queue ? -1 : 1)).map((d) => ({ minute, ...d })))
    .onConflict((oc) =>
      oc.columns(["minute", "queue"]).doUpdateSet({
        waiting: sql`excluded.waiting`,
        active: sql`excluded.active`,
        delayed: sql`excluded.delayed`,
        failed: sql`excluded.failed`,
      }),
    )
    .execute();
}

/** Removes minutes older than `retentionMs`; the totals stay. */
export async function pruneFigures(db: Db, retentionMs: number): Promise<void> {
  const before = new Date(Date.now() - retentionMs);
  await db.deleteFrom("lovage.email_minutes").where("minute", "<", before).execute();
  await db.deleteFrom("lovage.job_minutes").where("minute", "<", before).execute();
  await db.deleteFrom("lovage.queue_minutes").where("minute", "<", before).execute();
}

/** Buckets of `stepMinutes` from `since`: each row's `at` is its bucket's start. */
const bucket = (stepMinutes: number) =>
  sql<Date>`to_timestamp(floor(extract(epoch FROM minute) / ${stepMinutes * 60}) * ${stepMinutes * 60})`;

export interface EmailPoint {
  at: Date;
  outcome: string;
  n: number;
}

export async function emailSeries(db: Db, since: Date, stepMinutes: number): Promise<EmailPoint[]> {
  const rows = await sql<{ at: Date; outcome: string; n: number }>`
    SELECT ${bucket(stepMinutes)} AS at, outcome, sum(n)::int AS n FROM lovage.email_minutes
    WHERE minute >= ${since} GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.rows;
}

export interface EmailBreakdownRow {
  key: string;
  outcome: string;
  n: number;
  durationMsSum: number;
  durationHist: number[];
}

/** Emails since `since` by server or by domain group, and outcome. */
export async function emailBreakdown(
  db: Db,
  since: Date,
  by: "server" | "domain_group",
): Promise<EmailBreakdownRow[]> {
  const rows = await sql<{ key: string; outcome: string; n: number; sum: number; hist: number[] }>`
    SELECT ${sql.ref(by)} AS key, outcome, sum(n)::int AS n, sum(duration_ms_sum)::float8 AS sum,
      lovage.sum_histograms(duration_hist) AS hist
    FROM lovage.email_minutes WHERE minute >= ${since} GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.rows.map((r) => ({
    key: r.key,
    outcome: r.outcome,
    n: r.n,
    durationMsSum: r.sum,
    durationHist: r.hist,
  }));
}

export interface JobPoint {
  at: Date;
  state: string;
  n: number;
  waitHist: number[];
  runHist: number[];
}

export async function jobSeries(db: Db, since: Date, stepMinutes: number): Promise<JobPoint[]> {
  const rows = await sql<{ at: Date; state: string; n: number; wait_hist: number[]; run_hist: number[] }>`
    SELECT ${bucket(stepMinutes)} AS at, state, sum(n)::int AS n,
      lovage.sum_histograms(wait_hist) AS wait_hist, lovage.sum_histograms(run_hist) AS run_hist
    FROM lovage.job_minutes WHERE minute >= ${since} GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.rows.map((r) => ({
    at: r.at,
    state: r.state,
    n: r.n,
    waitHist: r.wait_hist,
    runHist: r.run_hist,
  }));
}

export interface JobBreakdownRow {
  queue: string;
  task: string;
  state: string;
  n: number;
  waitHist: number[];
  runHist: number[];
}

export async function jobBreakdown(db: Db, since: Date): Promise<JobBreakdownRow[]> {
  const rows = await sql<{
    queue: string;
    task: string;
    state: string;
    n: number;
    wait_hist: number[];
    run_hist: number[];
  }>`
    SELECT queue, task, state, sum(n)::int AS n, lovage.sum_histograms(wait_hist) AS wait_hist,
      lovage.sum_histograms(run_hist) AS run_hist
    FROM lovage.job_minutes WHERE minute >= ${since} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`.execute(db);
  return rows.rows.map((r) => ({ ...r, waitHist: r.wait_hist, runHist: r.run_hist }));
}

export interface QueuePoint extends QueueDepth {
  at: Date;
}

/** The deepest sample of each bucket, per queue. */
export async function queueSeries(db: Db, since: Date, stepMinutes: number): Promise<QueuePoint[]> {
  const rows = await sql<QueuePoint>`
    SELECT ${bucket(stepMinutes)} AS at, queue, max(waiting)::int AS waiting, max(active)::int AS active,
      max(delayed)::int AS delayed, max(failed)::int AS failed
    FROM lovage.queue_minutes WHERE minute >= ${since} GROUP BY 1, 2 ORDER BY 1, 2`.execute(db);
  return rows.rows;
}

export interface EmailTotal {
  server: string;
  outcome: string;
  n: number;
  durationMsSum: number;
  durationHist: number[];
}

export async function emailTotals(db: Db): Promise<EmailTotal[]> {
  const rows = await db
    .selectFrom("lovage.email_totals")
    .selectAll()
    .orderBy("server")
    .orderBy("outcome")
    .execute();
  return rows.map((r) => ({
    server: r.server,
    outcome: r.outcome,
    n: Number(r.n),
    durationMsSum: r.duration_ms_sum,
    durationHist: r.duration_hist,
  }));
}

export interface JobTotal {
  queue: string;
  task: string;
  state: string;
  n: number;
  runMsSum: number;
  runHist: number[];
}

export async function jobTotals(db: Db): Promise<JobTotal[]> {
  const rows = await db
    .selectFrom("lovage.job_totals")
    .selectAll()
    .orderBy("queue")
    .orderBy("task")
    .orderBy("state")
    .execute();
  return rows.map((r) => ({
    queue: r.queue,
    task: r.task,
    state: r.state,
    n: Number(r.n),
    runMsSum: r.run_ms_sum,
    runHist: r.run_hist,
  }));
}
