import { sql, type Kysely } from "kysely";

/**
 * Sending at the receiver's pace (docs/pace.md):
 * - recipients: `retry_since` (when the current attempt budget's age started: the first try
 *   after creation or after a user's retry) and `attempt_base` (the attempts made before that
 *   retry, which stay in the log but no longer count against the budget);
 * - campaigns: `budget_since` (the error budget counts attempts after it: a resume starts a
 *   fresh window) and `auto_resume_at` (a campaign paused because every server was suspended
 *   resumes by itself then);
 * - rate_limits: the counters rate-limiter-flexible keeps when the store holds them (its own
 *   layout: key, points, expire in epoch ms), so every worker shares them;
 * - smtp_servers: each worker's view of each SMTP server (state, figures), rewritten every few
 *   seconds, so the API (another process) can answer /readyz and /api/smtp;
 * - smtp_events: a server taken out or back, a rate lowered or raised, a suspension.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.recipients
      ADD COLUMN retry_since timestamptz,
      ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;
    ALTER TABLE lovage.campaigns
      ADD COLUMN budget_since timestamptz,
      ADD COLUMN auto_resume_at timestamptz;

    CREATE TABLE lovage.rate_limits (
      key varchar(255) PRIMARY KEY,
      points integer NOT NULL DEFAULT 0,
      expire bigint
    );

    CREATE TABLE lovage.smtp_servers (
      worker_id text NOT NULL,
      name text NOT NULL,
      state text NOT NULL,
      until timestamptz,
      sent integer NOT NULL,
      failed integer NOT NULL,
      deferred integer NOT NULL,
      rate double precision NOT NULL,
      limit_rate double precision,
      connections integer NOT NULL,
      reply text,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (worker_id, name)
    );

    CREATE TABLE lovage.smtp_events (
      id serial PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      scope text NOT NULL,
      name text NOT NULL,
      kind text NOT NULL,
      reply text,
      rate double precision,
      connections integer,
      until timestamptz,
      worker text
    );
    CREATE INDEX smtp_events_at ON lovage.smtp_events (at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE lovage.smtp_events;
    DROP TABLE lovage.smtp_servers;
    DROP TABLE lovage.rate_limits;
    ALTER TABLE lovage.campaigns DROP COLUMN budget_since, DROP COLUMN auto_resume_at;
    ALTER TABLE lovage.recipients DROP COLUMN retry_since, DROP COLUMN attempt_base;
  `.execute(db);
}
