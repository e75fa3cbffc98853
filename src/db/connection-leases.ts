/**
 * Connections to a domain group shared by every worker through the store (migration 0011): a
 * lease is a row; taking one counts the live rows of the key under an advisory lock, so two
 * workers never both take the last one.
 */
import type pg from "pg";

/** Takes one of `limit` leases of `key` for `holder` until `leaseMs` from now; false when all are taken. */
export async function takeConnectionLease(
  pool: pg.Pool,
  key: string,
  holder: string,
  limit: number,
  leaseMs: number,
): Promise<boolean> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    try {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('lovage.connection_leases:' || $1))", [key]);
      await client.query("DELETE FROM lovage.connection_leases WHERE key = $1 AND expires_at < now()", [key]);
      const taken = await client.query(
        `INSERT INTO lovage.connection_leases (key, holder, expires_at)
         SELECT $1, $2, now() + make_interval(secs => $4::double precision / 1000)
         WHERE (SELECT count(*) FROM lovage.connection_leases WHERE key = $1) < $3`,
        [key, holder, limit, leaseMs],
      );
      await client.query("COMMIT");
      return taken.rowCount === 1;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    }
  } finally {
    client.release();
  }
}

export async function giveBackConnectionLease(pool: pg.Pool, key: string, holder: string): Promise<void> {
  await pool.query("DELETE FROM lovage.connection_leases WHERE key = $1 AND holder = $2", [key, holder]);
}
