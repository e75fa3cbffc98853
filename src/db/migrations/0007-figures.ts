import { sql, type Kysely } from "kysely";

/**
 * Durable per-minute figures (see src/db/figures.ts): emails by SMTP server, recipient domain
 * group and outcome; jobs by queue, task and state with their wait and run times; queue depth.
 * Each minute table has a totals twin that is never pruned, so that /metrics counters only grow.
 *
 * Email figures come from the attempts themselves: a statement-level trigger on lovage.attempts
 * writes one row per (minute, server, domain, outcome, worker) of each insert into a small
 * pending table, and the roll-up (src/db/figures.ts) moves those rows into the minute and total
 * tables, grouping domains in TypeScript (src/monitor/domain-groups.ts). Whatever writes
 * attempts is counted, and the send path is not touched.
 *
 * Durations are histograms of cumulative counts (Prometheus's `le` buckets), in the bucket
 * bounds of DURATION_BUCKETS_MS in src/db/figures.ts: histograms add up across workers and
 * minutes, where percentiles would not. The bounds are written out in the trigger (a migration
 * is frozen).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.attempts ADD COLUMN server text;

    CREATE FUNCTION lovage.add_histograms(a integer[], b integer[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE AS $fn$
      SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i)
      FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
    $fn$;

    -- Histograms of several rows added up (a null state is an empty histogram).
    CREATE AGGREGATE lovage.sum_histograms (integer[]) (SFUNC = lovage.add_histograms, STYPE = integer[]);

    CREATE TABLE lovage.email_figures_pending (
      id bigserial PRIMARY KEY,
      minute timestamptz NOT NULL,
      server text NOT NULL,
      domain text NOT NULL,
      outcome text NOT NULL,
      worker text NOT NULL,
      n integer NOT NULL,
      duration_ms_sum double precision NOT NULL,
      duration_hist integer[] NOT NULL
    );

    -- One pass per statement: counts per bucket as FILTER aggregates (no per-row function call).
    CREATE FUNCTION lovage.note_attempts() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      INSERT INTO lovage.email_figures_pending
        (minute, server, domain, outcome, worker, n, duration_ms_sum, duration_hist)
      SELECT minute, server, domain, outcome, worker, count(*), sum(ms), ARRAY[
          count(*) FILTER (WHERE ms <= 5),
          count(*) FILTER (WHERE ms <= 10),
          count(*) FILTER (WHERE ms <= 25),
          count(*) FILTER (WHERE ms <= 50),
          count(*) FILTER (WHERE ms <= 100),
          count(*) FILTER (WHERE ms <= 250),
          count(*) FILTER (WHERE ms <= 500),
          count(*) FILTER (WHERE ms <= 1000),
          count(*) FILTER (WHERE ms <= 2500),
          count(*) FILTER (WHERE ms <= 5000),
          count(*) FILTER (WHERE ms <= 10000),
          count(*) FILTER (WHERE ms <= 30000),
          count(*) FILTER (WHERE ms <= 60000),
          count(*) FILTER (WHERE ms <= 300000)
        ]::int[]
      FROM (
        SELECT date_trunc('minute', a.finished_at) AS minute, coalesce(a.server, '') AS server,
          lower(split_part(r.email, '@', 2)) AS domain, a.outcome, coalesce(a.worker, '') AS worker,
          extract(epoch FROM a.finished_at - a.started_at) * 1000 AS ms
        FROM new_rows a JOIN lovage.recipients r ON r.id = a.recipient_id
      ) attempt
      GROUP BY 1, 2, 3, 4, 5;
      RETURN NULL;
    END
    $fn$;

    CREATE TRIGGER attempts_figures AFTER INSERT ON lovage.attempts
      REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION lovage.note_attempts();

    CREATE TABLE lovage.email_minutes (
      minute timestamptz NOT NULL,
      server text NOT NULL,
      domain_group text NOT NULL,
      outcome text NOT NULL,
      n integer NOT NULL,
      duration_ms_sum double precision NOT NULL,
      duration_hist integer[] NOT NULL,
      PRIMARY KEY (minute, server, domain_group, outcome)
    );

    CREATE TABLE lovage.email_totals (
      server text NOT NULL,
      outcome text NOT NULL,
      n bigint NOT NULL,
      duration_ms_sum double precision NOT NULL,
      duration_hist integer[] NOT NULL,
      PRIMARY KEY (server, outcome)
    );

    CREATE TABLE lovage.job_minutes (
      minute timestamptz NOT NULL,
      queue text NOT NULL,
      task text NOT NULL,
      state text NOT NULL,
      n integer NOT NULL,
      wait_ms_sum double precision NOT NULL,
      wait_hist integer[] NOT NULL,
      run_ms_sum double precision NOT NULL,
      run_hist integer[] NOT NULL,
      PRIMARY KEY (minute, queue, task, state)
    );

    CREATE TABLE lovage.job_totals (
      queue text NOT NULL,
      task text NOT NULL,
      state text NOT NULL,
      n bigint NOT NULL,
      run_ms_sum double precision NOT NULL,
      run_hist integer[] NOT NULL,
      PRIMARY KEY (queue, task, state)
    );

    CREATE TABLE lovage.queue_minutes (
      minute timestamptz NOT NULL,
      queue text NOT NULL,
      waiting integer NOT NULL,
      active integer NOT NULL,
      delayed integer NOT NULL,
      failed integer NOT NULL,
      PRIMARY KEY (minute, queue)
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TRIGGER attempts_figures ON lovage.attempts;
    DROP FUNCTION lovage.note_attempts();
    DROP TABLE lovage.email_figures_pending, lovage.email_minutes, lovage.email_totals,
      lovage.job_minutes, lovage.job_totals, lovage.queue_minutes;
    DROP AGGREGATE lovage.sum_histograms(integer[]);
    DROP FUNCTION lovage.add_histograms(integer[], integer[]);
    ALTER TABLE lovage.attempts DROP COLUMN server;
  `.execute(db);
}
