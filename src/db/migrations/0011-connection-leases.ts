import { sql, type Kysely } from "kysely";

/**
 * Connections to a domain group (`LOVAGE_DOMAIN_LIMITS`' `Nconn`) held by every worker, when
 * the store holds the counters (no Redis): one row per SMTP transaction under way, with a lease
 * so that a worker that dies gives its connections back (docs/pace.md).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE lovage.connection_leases (
      key text NOT NULL,
      holder text NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (key, holder)
    );
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE lovage.connection_leases;`.execute(db);
}
