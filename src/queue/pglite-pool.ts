/**
 * The embedded PostgreSQL (PGlite in its own thread, `pglite-thread.ts`) as a `pg.Pool`, so that
 * BullMQ's PostgreSQL backend and Kysely both run on it, and see what they see on a server.
 *
 * Contract:
 * - It is a real node-postgres `pg.Pool` (query, connect() → client with query/release and
 *   `notification` events, end, the pool's events): each client's connection is a session of
 *   the owner thread instead of a socket. node-postgres writes the requests and parses the
 *   replies, so values, errors (DatabaseError with code, detail, constraint, …), multi-statement
 *   SQL without parameters (BullMQ's migrations) and prepared statements are as with `pg`.
 * - PGlite is one PostgreSQL backend, so sessions share it: the owner thread runs one request
 *   at a time in arrival order, and a session inside a transaction (from BEGIN until COMMIT
 *   or ROLLBACK, or an extended query until its Sync) holds the backend while the others wait.
 *   The lock lives in the owner thread, so two pools over one thread never interleave
 *   transactions either. Keep transactions short: everyone waits for them.
 * - BullMQ checks a client out for LISTEN and keeps it for good; that is fine, a session holds
 *   the backend only inside a transaction. A client destroyed inside a transaction is rolled
 *   back. (`pg` itself does not roll back a client released inside one: do not.)
 * - LISTEN takes effect at once even while another session holds the backend, and a session
 *   receives the notifications of its own channels; UNLISTEN affects only its session.
 * - Session settings are shared: `SET search_path` on one client is seen by all of them (the
 *   embedded broker sets `bullmq, public`; the store qualifies its tables with `lovage.`).
 *   Prepared statement names are shared too: a named statement must be the same SQL everywhere.
 * - COPY FROM STDIN is refused with an error (PGlite's single-user backend cannot take it).
 * - `end()` ends the pool's clients; the thread stays open: whoever opened it owns it.
 */
import pg from "pg";
import type { PGliteThread } from "./pglite-thread.js";

/** How many sessions one pool opens at most: BullMQ keeps one per worker and queue events for LISTEN. */
const MAX_SESSIONS = 20;

export class PGlitePool extends pg.Pool {
  constructor(thread: PGliteThread, options: { max?: number } = {}) {
    super({
      max: options.max ?? MAX_SESSIONS,
      // A session costs the thread nothing while idle; reopening one costs a round trip.
      idleTimeoutMillis: 0,
      stream: () => thread.connect(),
    });
  }
}
