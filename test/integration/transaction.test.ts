/**
 * A transaction PostgreSQL aborts to break a deadlock runs again (src/db/transaction.ts), so a
 * user's cancel or pause meeting a worker's claim on the same rows does not answer 500.
 */
import pg from "pg";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Store } from "../../src/db/open.js";
import { inTransaction } from "../../src/db/transaction.js";
import { createTestDatabase } from "../helpers/backends.js";

describe("a transaction aborted by a deadlock", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let store: Store;
  let other: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    store = await openDatabase({ databaseUrl: database.url, dataDir: "/tmp" });
    await sql`CREATE TABLE lovage.deadlock_test (id int PRIMARY KEY, v int NOT NULL)`.execute(store.db);
    await sql`INSERT INTO lovage.deadlock_test VALUES (1, 0), (2, 0)`.execute(store.db);
    other = new pg.Client({ connectionString: database.url });
    await other.connect();
  });

  afterAll(async () => {
    await other?.end();
    await store?.close();
    await database?.drop();
  });

  it("runs again once the other party is through, and keeps only its last run's writes", async () => {
    // The other party holds row 1, then (once ours holds row 2 and waits for row 1) asks for
    // row 2: a deadlock. Ours began waiting first, so PostgreSQL aborts ours.
    await other.query("BEGIN");
    await other.query("UPDATE lovage.deadlock_test SET v = v + 10 WHERE id = 1");
    let runs = 0;
    let holdingRow2!: () => void;
    const holding = new Promise<void>((resolve) => (holdingRow2 = resolve));
    const ours = inTransaction(store.db, async (trx) => {
      runs++;
      await sql`UPDATE lovage.deadlock_test SET v = v + 1 WHERE id = 2`.execute(trx);
      holdingRow2();
      await sql`UPDATE lovage.deadlock_test SET v = v + 1 WHERE id = 1`.execute(trx);
      return runs;
    });
    await holding;
    await new Promise((resolve) => setTimeout(resolve, 200));
    await other.query("UPDATE lovage.deadlock_test SET v = v + 10 WHERE id = 2");
    await other.query("COMMIT");
    expect(await ours).toBe(2);
    const rows = await sql<{ id: number; v: number }>`
      SELECT id, v FROM lovage.deadlock_test ORDER BY id`.execute(store.db);
    expect(rows.rows).toEqual([
      { id: 1, v: 11 },
      { id: 2, v: 11 },
    ]);
  });

  it("does not run again on any other error", async () => {
    let runs = 0;
    await expect(
      inTransaction(store.db, async (trx) => {
        runs++;
        await sql`SELECT 1 / 0`.execute(trx);
      }),
    ).rejects.toThrow(/division by zero/);
    expect(runs).toBe(1);
  });
});
