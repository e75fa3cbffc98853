import { sql, type Kysely } from "kysely";

/** The worker registry: each worker process's identity, counters and heartbeat. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE lovage.workers (
      id text PRIMARY KEY,
      host text NOT NULL,
      pid integer NOT NULL,
      queues jsonb NOT NULL,
      concurrency integer NOT NULL,
      started_at timestamptz NOT NULL,
      heartbeat_at timestamptz NOT NULL,
      processed integer NOT NULL DEFAULT 0,
      failed integer NOT NULL DEFAULT 0,
      active integer NOT NULL DEFAULT 0,
      watchdog_restarts integer NOT NULL DEFAULT 0,
      last_job_at timestamptz,
      stopped_at timestamptz
    );
    CREATE INDEX workers_heartbeat ON lovage.workers (heartbeat_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE lovage.workers`.execute(db);
}
