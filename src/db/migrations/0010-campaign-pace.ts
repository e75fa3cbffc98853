import { sql, type Kysely } from "kysely";

/**
 * A campaign's own pace (docs/pace.md): `servers`, the names of the SMTP servers it must use
 * (a JSON array; NULL: any configured server), and `error_budget`, its error budget's thresholds
 * (`{"share", "window", "minimum"}`, or `false` for none; NULL: LOVAGE_ERROR_BUDGET's).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.campaigns
      ADD COLUMN servers jsonb,
      ADD COLUMN error_budget jsonb;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE lovage.campaigns DROP COLUMN servers, DROP COLUMN error_budget;`.execute(db);
}
