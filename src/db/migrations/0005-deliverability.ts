import { sql, type Kysely } from "kysely";

/**
 * What goes on the wire beside the body: a campaign's Reply-To, extra headers and whether it
 * carries List-Unsubscribe; the recipient's address as typed (its local part's case, which the
 * lowercased `email` dedupe key loses).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.campaigns
      ADD COLUMN reply_to text,
      ADD COLUMN headers jsonb NOT NULL DEFAULT '{}',
      ADD COLUMN list_unsubscribe boolean NOT NULL DEFAULT true;
    -- NULL: the same as email (most addresses are typed in lowercase).
    ALTER TABLE lovage.recipients ADD COLUMN address text;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.recipients DROP COLUMN address;
    ALTER TABLE lovage.campaigns DROP COLUMN reply_to, DROP COLUMN headers, DROP COLUMN list_unsubscribe;
  `.execute(db);
}
