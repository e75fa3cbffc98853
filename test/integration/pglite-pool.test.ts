/**
 * The embedded PostgreSQL as a pg.Pool: PGlite in its owner thread, node-postgres clients as
 * its sessions. One database for the file (it takes a second to open); tables per test.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPostgresBackend, runMigrations, withBackend } from "bullmq";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { preparePGliteDataDir } from "../../src/queue/pglite-datadir.js";
import { PGlitePool } from "../../src/queue/pglite-pool.js";
import { openPGliteThread, type PGliteThread } from "../../src/queue/pglite-thread.js";

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function nextNotification(client: pg.PoolClient, channel: string, timeoutMs = 2_000) {
  return new Promise<pg.Notification | "timed out">((resolve) => {
    const timer = setTimeout(() => resolve("timed out"), timeoutMs);
    client.on("notification", (message) => {
      if (message.channel !== channel) return;
      clearTimeout(timer);
      resolve(message);
    });
  });
}

describe("the embedded database in its own thread, as a pg.Pool", () => {
  let dir: string;
  let thread: PGliteThread;
  let pool: PGlitePool;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lovage-pglite-"));
    await preparePGliteDataDir(join(dir, "pgdata"));
    thread = await openPGliteThread({ dataDir: join(dir, "pgdata") });
    pool = new PGlitePool(thread);
  });

  afterAll(async () => {
    await pool?.end();
    await thread?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs BullMQ jobs end to end", async () => {
    const client = await pool.connect();
    try {
      await runMigrations(client, "bullmq");
    } finally {
      client.release();
    }
    await pool.query("SET search_path TO bullmq, public");
    const { Queue, QueueEvents, Worker } = withBackend(createPostgresBackend);
    const queue = new Queue<{ a: number }>("adapter", { connection: pool });
    const worker = new Worker<{ a: number }>("adapter", async (job) => job.data.a + 1, {
      connection: pool,
      concurrency: 5,
    });
    const done = new Promise<number>((resolve) => {
      let n = 0;
      worker.on("completed", () => ++n === 50 && resolve(n));
    });
    const jobs = await Promise.all(Array.from({ length: 50 }, (_, i) => queue.add("x", { a: i })));
    expect(await done).toBe(50);
    const job = await queue.getJob(jobs[3]!.id!);
    expect(job?.returnvalue).toBe(4);
    // A new QueueEvents LISTENs, then hears of the job at once: not after its 10 s blocking
    // timeout, as when its first NOTIFY was lost.
    for (let i = 0; i < 3; i++) {
      const events = new QueueEvents("adapter", { connection: pool });
      try {
        await events.waitUntilReady();
        const started = performance.now();
        const next = await queue.add("x", { a: 100 + i });
        expect(await next.waitUntilFinished(events, 8_000)).toBe(101 + i);
        expect(performance.now() - started).toBeLessThan(5_000);
      } finally {
        await events.close();
      }
    }
    await worker.close();
    await queue.close();
    await pool.query("SET search_path TO public");
  });

  it("reports PostgreSQL's errors with their fields, as node-postgres does from a server", async () => {
    await pool.query("CREATE TABLE errs (id int PRIMARY KEY, name text NOT NULL)");
    await pool.query("INSERT INTO errs VALUES ($1, $2)", [1, "one"]);
    const error = await pool.query("INSERT INTO errs VALUES ($1, $2)", [1, "again"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(pg.DatabaseError);
    expect(error).toMatchObject({
      code: "23505",
      detail: "Key (id)=(1) already exists.",
      constraint: "errs_pkey",
      table: "errs",
      schema: "public",
      severity: "ERROR",
    });
    const syntax = await pool.query("SELEC 1").catch((e: unknown) => e);
    expect(syntax).toMatchObject({ code: "42601", position: "1" });
    // The session is fine after an error, in and out of a transaction.
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await expect(client.query("INSERT INTO errs VALUES (2, NULL)")).rejects.toMatchObject({
        code: "23502",
      });
      await expect(client.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
    expect((await pool.query("SELECT count(*) AS n FROM errs")).rows).toEqual([{ n: "1" }]);
  });

  it("runs SQL of several statements without parameters, and returns values as node-postgres parses them", async () => {
    const results = (await pool.query(
      "CREATE TABLE vals (n int8, d numeric, t timestamptz, j jsonb); INSERT INTO vals VALUES (9007199254740993, 1.50, '2024-01-02T03:04:05Z', '{\"a\":[1]}'); SELECT * FROM vals",
    )) as unknown as pg.QueryResult[];
    expect(results).toHaveLength(3);
    expect(results[2]!.rows).toEqual([
      { n: "9007199254740993", d: "1.50", t: new Date("2024-01-02T03:04:05Z"), j: { a: [1] } },
    ]);
    const { rows } = await pool.query("SELECT $1::int4 AS i, $2::text[] AS a, $3::bytea AS b", [
      7,
      ["x", "y"],
      Buffer.from([1, 2]),
    ]);
    expect(rows).toEqual([{ i: 7, a: ["x", "y"], b: Buffer.from([1, 2]) }]);
  });

  it("never interleaves transactions: of two clients of one pool, or of two pools over one database", async () => {
    await pool.query("CREATE TABLE counter (v int NOT NULL); INSERT INTO counter VALUES (0)");
    const other = new PGlitePool(thread);
    try {
      // Each reads the counter, yields so the others get a chance to run, and writes it + 1:
      // interleaved, two would read the same value (and one BEGIN would join another's).
      const increment = async (from: PGlitePool) => {
        const client = await from.connect();
        try {
          await client.query("BEGIN");
          const { rows } = await client.query<{ v: number }>("SELECT v FROM counter");
          await tick(2);
          await client.query("UPDATE counter SET v = $1", [rows[0]!.v + 1]);
          await client.query("COMMIT");
          return rows[0]!.v;
        } finally {
          client.release();
        }
      };
      const seen = await Promise.all(Array.from({ length: 30 }, (_, i) => increment(i % 2 ? pool : other)));
      expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
      expect((await pool.query("SELECT v FROM counter")).rows).toEqual([{ v: 30 }]);
    } finally {
      await other.end();
    }
  });

  it("rolls back the transaction of a client destroyed inside it, and lets the others go on", async () => {
    await pool.query("CREATE TABLE abandoned (v int)");
    const client = await pool.connect();
    await client.query("BEGIN");
    await client.query("INSERT INTO abandoned VALUES (1)");
    const waiting = pool.query("SELECT count(*)::int AS n FROM abandoned");
    client.release(true);
    expect((await waiting).rows).toEqual([{ n: 0 }]);
  });

  it("delivers a NOTIFY sent right after a new LISTEN, and one committed by a transaction the LISTEN had to wait for", async () => {
    const listener = await pool.connect();
    const notifier = await pool.connect();
    try {
      const first = nextNotification(listener, "fresh_channel");
      const listening = listener.query("LISTEN fresh_channel");
      const notified = notifier.query("SELECT pg_notify('fresh_channel', 'at once')");
      await Promise.all([listening, notified]);
      expect(await first).toMatchObject({ channel: "fresh_channel", payload: "at once" });

      // The notifier holds the database in a transaction when the LISTEN arrives: on a
      // server the LISTEN would not wait for it, so its NOTIFY, committed after, is seen.
      await notifier.query("BEGIN");
      await notifier.query("SELECT pg_notify('late_channel', 'after commit')");
      const late = nextNotification(listener, "late_channel");
      await listener.query("LISTEN late_channel");
      await notifier.query("COMMIT");
      expect(await late).toMatchObject({ channel: "late_channel", payload: "after commit" });

      // Same, on a channel the database already listens on, and with the transaction rolled back.
      await notifier.query("BEGIN");
      const other = await pool.connect();
      try {
        const again = nextNotification(other, "late_channel", 300);
        await other.query("LISTEN late_channel");
        await notifier.query("SELECT pg_notify('late_channel', 'rolled back')");
        await notifier.query("ROLLBACK");
        expect(await again).toBe("timed out");
        const next = nextNotification(other, "late_channel");
        await notifier.query("NOTIFY late_channel, 'next'");
        expect(await next).toMatchObject({ payload: "next" });
      } finally {
        other.release();
      }
    } finally {
      listener.release();
      notifier.release();
    }
  });

  it("routes each notification to the clients listening on its channel, and an UNLISTEN to its client only", async () => {
    const a = await pool.connect();
    const b = await pool.connect();
    try {
      await a.query("LISTEN shared");
      await b.query("LISTEN shared");
      await b.query('LISTEN "Only B"');
      const seenByA: string[] = [];
      a.on("notification", (message) => seenByA.push(`${message.channel}:${message.payload}`));
      const toB = nextNotification(b, "Only B");
      await pool.query(`SELECT pg_notify('Only B', 'b')`);
      expect(await toB).toMatchObject({ payload: "b" });
      await a.query("UNLISTEN shared");
      const stillB = nextNotification(b, "shared");
      await pool.query("NOTIFY shared, 'after unlisten'");
      expect(await stillB).toMatchObject({ payload: "after unlisten" });
      await tick(50);
      expect(seenByA).toEqual([]);
    } finally {
      a.release();
      b.release();
    }
  });

  it("prepares each statement once for every client, and forgets them when the schema changes", async () => {
    await pool.query("CREATE TABLE prepared_t (id int PRIMARY KEY, a text)");
    await pool.query("INSERT INTO prepared_t VALUES (1, 'one'), (2, 'two')");
    const text = "SELECT * FROM prepared_t WHERE id = $1";
    const other = await pool.connect();
    try {
      for (let i = 0; i < 3; i++) {
        expect((await pool.query(text, [1])).rows).toEqual([{ id: 1, a: "one" }]);
        expect((await other.query(text, [2])).rows).toEqual([{ id: 2, a: "two" }]);
      }
      const prepared = await pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1",
        [text],
      );
      expect(prepared.rows).toEqual([{ n: 1 }]);
      // SELECT * of a prepared statement would fail with "cached plan must not change result type".
      await other.query("ALTER TABLE prepared_t ADD COLUMN b int DEFAULT 7");
      expect((await pool.query(text, [1])).rows).toEqual([{ id: 1, a: "one", b: 7 }]);
      // Inside a transaction too, where a failed statement could not be run again.
      await other.query("BEGIN");
      await other.query("ALTER TABLE prepared_t ADD COLUMN c int DEFAULT 8");
      expect((await other.query(text, [2])).rows).toEqual([{ id: 2, a: "two", b: 7, c: 8 }]);
      await other.query("COMMIT");
      await expect(pool.query("SELECT nope FROM prepared_t WHERE id = $1", [1])).rejects.toMatchObject({
        code: "42703",
      });
      await expect(pool.query("SELECT nope FROM prepared_t WHERE id = $1", [1])).rejects.toMatchObject({
        code: "42703",
      });
    } finally {
      other.release();
    }
  });

  it("refuses COPY FROM STDIN with an error instead of losing the database", async () => {
    await pool.query("CREATE TABLE copied (v int)");
    await expect(pool.query("COPY copied FROM STDIN")).rejects.toMatchObject({ code: "0A000" });
    expect((await pool.query("SELECT count(*)::int AS n FROM copied")).rows).toEqual([{ n: 0 }]);
  });

  it("keeps the event loop running while a long query runs", async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    await pool.query("SELECT count(*) FROM generate_series(1, 3000000)");
    const elapsedMs = performance.now() - started;
    clearInterval(timer);
    expect(elapsedMs).toBeGreaterThan(200);
    // A 10 ms timer on a free loop fires about elapsed/10 times; in-process it fired at most once.
    expect(ticks).toBeGreaterThan(elapsedMs / 10 / 2);
  });
});
