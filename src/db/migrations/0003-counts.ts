import { sql, type Kysely } from "kysely";

/**
 * Counts by status kept as rows change, so a campaign of a million recipients is read without
 * counting a million rows; fewer indexes on recipients (every status change rewrites each of
 * them, and a million-line upload fills each); and an index for the recent send rate.
 *
 * The counters are maintained by statement-level triggers over transition tables: one upsert
 * per (campaign, status) per statement, whatever code moved the rows. The upserts run in
 * (campaign, status) order so that two statements never take the same counter rows in
 * opposite orders (no deadlock between concurrent workers).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE lovage.campaign_counts (
      campaign_id integer NOT NULL REFERENCES lovage.campaigns (id) ON DELETE CASCADE,
      status text NOT NULL,
      n integer NOT NULL,
      PRIMARY KEY (campaign_id, status)
    );

    INSERT INTO lovage.campaign_counts (campaign_id, status, n)
    SELECT campaign_id, status, count(*) FROM lovage.recipients GROUP BY campaign_id, status;

    CREATE FUNCTION lovage.count_recipient_changes() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO lovage.campaign_counts (campaign_id, status, n)
        SELECT campaign_id, status, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (campaign_id, status) DO UPDATE SET n = lovage.campaign_counts.n + EXCLUDED.n;
      ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO lovage.campaign_counts (campaign_id, status, n)
        SELECT campaign_id, status, sum(d) FROM (
          SELECT campaign_id, status, -1 AS d FROM old_rows
          UNION ALL SELECT campaign_id, status, 1 AS d FROM new_rows
        ) moved GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (campaign_id, status) DO UPDATE SET n = lovage.campaign_counts.n + EXCLUDED.n;
      ELSE
        -- An update, not an upsert: when a campaign is deleted its counters go with it first.
        UPDATE lovage.campaign_counts c SET n = c.n - gone.n
        FROM (SELECT campaign_id, status, count(*) AS n FROM old_rows GROUP BY 1, 2) gone
        WHERE c.campaign_id = gone.campaign_id AND c.status = gone.status;
      END IF;
      RETURN NULL;
    END
    $fn$;

    CREATE TRIGGER recipients_count_insert AFTER INSERT ON lovage.recipients
      REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION lovage.count_recipient_changes();
    CREATE TRIGGER recipients_count_update AFTER UPDATE ON lovage.recipients
      REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION lovage.count_recipient_changes();
    CREATE TRIGGER recipients_count_delete AFTER DELETE ON lovage.recipients
      REFERENCING OLD TABLE AS old_rows
      FOR EACH STATEMENT EXECUTE FUNCTION lovage.count_recipient_changes();

    -- LIKE '%…%' searches cannot use it, and the unique (campaign_id, email) index serves
    -- lookups of an address in a campaign.
    DROP INDEX lovage.recipients_email;
    -- Only the few rows in flight: pending rows are found through (campaign_id, status, id).
    DROP INDEX lovage.recipients_status;
    CREATE INDEX recipients_in_flight ON lovage.recipients (status) WHERE status IN ('queued', 'sending');
    CREATE INDEX attempts_campaign_finished ON lovage.attempts (campaign_id, finished_at);
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    DROP TRIGGER recipients_count_insert ON lovage.recipients;
    DROP TRIGGER recipients_count_update ON lovage.recipients;
    DROP TRIGGER recipients_count_delete ON lovage.recipients;
    DROP FUNCTION lovage.count_recipient_changes();
    DROP TABLE lovage.campaign_counts;
    DROP INDEX lovage.attempts_campaign_finished;
    DROP INDEX lovage.recipients_in_flight;
    CREATE INDEX recipients_status ON lovage.recipients (status) WHERE status IN ('pending', 'queued', 'sending');
    CREATE INDEX recipients_email ON lovage.recipients (email);
  `.execute(db);
}
