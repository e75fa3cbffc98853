import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { createPostgresBackend, runMigrations, withBackend } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PGlitePool, pgCompatibleParsers } from "../../src/queue/pglite-pool.js";

describe("PGlite pool adapter", () => {
  let dir: string;
  let db: PGlite;
  let pool: PGlitePool;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lovage-pglite-"));
    db = await PGlite.create(dir, { parsers: pgCompatibleParsers });
    pool = new PGlitePool(db);
    const client = await pool.connect();
    try {
      await runMigrations(client as never, "bullmq");
    } finally {
      client.release();
    }
    await db.exec("SET search_path TO bullmq, public");
  });

  afterAll(async () => {
    await pool.end();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs BullMQ jobs end to end", async () => {
    const { Queue, Worker } = withBackend(createPostgresBackend);
    const queue = new Queue<{ a: number }>("adapter", { connection: pool as never });
    const worker = new Worker<{ a: number }>("adapter", async (job) => job.data.a + 1, {
      connection: pool as never,
      concurrency: 5,
    });
    const jobs = await Promise.all(Array.from({ length: 50 }, (_, i) => queue.add("x", { a: i })));
    const done = await new Promise<number>((resolve) => {
      let n = 0;
      worker.on("completed", () => ++n === 50 && resolve(n));
    });
    expect(done).toBe(50);
    const job = await queue.getJob(jobs[3]!.id!);
    expect(job?.returnvalue).toBe(4);
    await worker.close();
    await queue.close();
  });
});
