import { sql, type Kysely } from "kysely";

/**
 * Periodic tasks: each schedule's definition, enabled or not. BullMQ's job schedulers run the
 * enabled ones; this table is what survives a disable (BullMQ forgets a removed scheduler) and
 * what every process re-applies at start.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE lovage.schedules (
      id text PRIMARY KEY,
      task text NOT NULL,
      queue text NOT NULL,
      cron text,
      every_ms bigint,
      timezone text,
      input jsonb NOT NULL DEFAULT 'null'::jsonb,
      enabled boolean NOT NULL DEFAULT true,
      source text NOT NULL CHECK (source IN ('code', 'api')),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      CHECK ((cron IS NULL) <> (every_ms IS NULL))
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE lovage.schedules`.execute(db);
}
