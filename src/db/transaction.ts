/**
 * A transaction that PostgreSQL may abort to break a deadlock (or a serialization failure) is
 * run again: the database undid all of it, and its docs ask the application to retry. Seen in
 * the bench: cancelling a campaign of a million recipients while workers claimed and the
 * dispatcher queued its rows answered 500 with "deadlock detected".
 */
import type { Kysely, Transaction } from "kysely";
import type { Database } from "./schema.js";

/** SQLSTATE codes of a transaction the database rolled back and that may simply run again. */
const RETRYABLE = new Set(["40P01", "40001"]);
const TRIES = 5;

export async function inTransaction<T>(
  db: Kysely<Database>,
  work: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().execute(work);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= TRIES || typeof code !== "string" || !RETRYABLE.has(code)) throw error;
      // The other party goes on meanwhile; a short, random pause keeps the two from meeting again.
      await new Promise((resolve) => setTimeout(resolve, 20 * attempt + Math.random() * 50));
    }
  }
}
