import { sql, type Kysely } from "kysely";

/**
 * The monitor's view of a worker: the jobs it runs now (with their task names), the emails it
 * sent, and a shutdown request that any API process writes and the worker reads at its next
 * heartbeat (remote control through the store, so it reaches a worker on any host and backend).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.workers
      ADD COLUMN running jsonb NOT NULL DEFAULT '[]'::jsonb,
      ADD COLUMN emails_sent integer NOT NULL DEFAULT 0,
      ADD COLUMN shutdown_requested_at timestamptz;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.workers
      DROP COLUMN running, DROP COLUMN emails_sent, DROP COLUMN shutdown_requested_at;
  `.execute(db);
}
