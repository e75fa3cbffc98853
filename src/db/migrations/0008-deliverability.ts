import { sql, type Kysely } from "kysely";

/**
 * What goes on the wire beside the body: a campaign's Reply-To, extra headers and whether it
 * carries List-Unsubscribe; the recipient's address as typed (its local part's case, which the
 * lowercased `email` dedupe key loses). The suppression list: one row per address that must not
 * be mailed (unsubscribed, bounced, complained, or added by hand), read by every claim. The new
 * recipient statuses (`suppressed`, `bounced`, `complained`) need no trigger change: 0003's
 * counters count any status text.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.campaigns
      ADD COLUMN reply_to text,
      ADD COLUMN headers jsonb NOT NULL DEFAULT '{}',
      ADD COLUMN list_unsubscribe boolean NOT NULL DEFAULT true;
    -- NULL: the same as email (most addresses are typed in lowercase).
    ALTER TABLE lovage.recipients ADD COLUMN address text;
    -- Sends to addresses suppressed by hand (reason manual), never to the others.
    ALTER TABLE lovage.campaigns ADD COLUMN ignore_manual_suppressions boolean NOT NULL DEFAULT false;
    -- Soft bounces counted per recipient; the address is suppressed after LOVAGE_SOFT_BOUNCE_LIMIT.
    ALTER TABLE lovage.recipients ADD COLUMN soft_bounces integer NOT NULL DEFAULT 0;

    CREATE TABLE lovage.suppressions (
      -- The lowercased address, as recipients.email: the claim joins on it.
      email text PRIMARY KEY,
      reason text NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
      campaign_id integer REFERENCES lovage.campaigns (id) ON DELETE SET NULL,
      detail text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX suppressions_created ON lovage.suppressions (created_at, email);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TABLE lovage.suppressions;
    ALTER TABLE lovage.recipients DROP COLUMN address, DROP COLUMN soft_bounces;
    ALTER TABLE lovage.campaigns DROP COLUMN ignore_manual_suppressions;
    ALTER TABLE lovage.campaigns DROP COLUMN reply_to, DROP COLUMN headers, DROP COLUMN list_unsubscribe;
  `.execute(db);
}
