import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { MIGRATION_NAMES } from "../../src/db/open.js";
import { createTestDatabase } from "../helpers/backends.js";
import { CLI } from "../helpers/lovage-process.js";

const run = promisify(execFile);

describe("lovage migrate", () => {
  it("migrates a fresh database once when several hosts start at the same moment", async () => {
    const database = await createTestDatabase();
    try {
      const env = { ...process.env, LOVAGE_DATABASE_URL: database.url, LOVAGE_LOG_LEVEL: "warn" };
      const results = await Promise.all(
        [1, 2, 3, 4].map(() => run(process.execPath, [CLI, "migrate"], { env })),
      );
      for (const result of results) expect(result.stdout).toContain("database is up to date");
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        const store = await client.query<{ name: string }>(
          "SELECT name FROM lovage.kysely_migration ORDER BY name",
        );
        expect(store.rows.map((row) => row.name)).toEqual(MIGRATION_NAMES);
        const broker = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM bullmq.migration");
        expect(broker.rows[0]!.n).toBeGreaterThan(0);
        const duplicates = await client.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM (SELECT version FROM bullmq.migration GROUP BY version HAVING count(*) > 1) d",
        );
        expect(duplicates.rows[0]!.n).toBe(0);
      } finally {
        await client.end();
      }
    } finally {
      await database.drop();
    }
  });
});
