/**
 * Where a new embedded data directory comes from: the build's template (made here in a
 * temporary directory, as `npm run build` makes dist/pglite-template), or initdb in a child
 * process. Neither may leave initdb's memory in this process.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATION_NAMES, buildEmbeddedTemplate, usableTemplate } from "../../src/db/open.js";
import { preparePGliteDataDir } from "../../src/queue/pglite-datadir.js";
import { PGlitePool } from "../../src/queue/pglite-pool.js";
import { openPGliteThread } from "../../src/queue/pglite-thread.js";

function peakRssMb(): number {
  const status = readFileSync("/proc/self/status", "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
}

describe("embedded data directories", () => {
  let dir: string;
  let templateDir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "lovage-datadir-"));
    templateDir = join(dir, "template");
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("builds a migrated template with initdb in a child process, not in this one", async () => {
    const before = peakRssMb();
    expect(await buildEmbeddedTemplate(templateDir)).toBe(true);
    // initdb in this process would add about 840 MB; the migrations' database thread ~200 MB.
    expect(peakRssMb() - before).toBeLessThan(400);
    expect(usableTemplate(templateDir)).toBe(join(templateDir, "pgdata"));
    expect(await buildEmbeddedTemplate(templateDir)).toBe(false);
  }, 120_000);

  it("copies the template into a new data directory, which opens migrated, and leaves it alone after", async () => {
    const pgdata = join(dir, "one", "pgdata");
    expect(await preparePGliteDataDir(pgdata, { template: usableTemplate(templateDir) })).toBe("template");
    const thread = await openPGliteThread({ dataDir: pgdata });
    const pool = new PGlitePool(thread);
    try {
      const { rows } = await pool.query<{ name: string }>(
        "SELECT name FROM lovage.kysely_migration ORDER BY name",
      );
      expect(rows.map((row) => row.name)).toEqual(MIGRATION_NAMES);
      const bullmq = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM bullmq.migration");
      expect(bullmq.rows[0]!.n).toBeGreaterThan(0);
      await pool.query("CREATE TABLE public.mine (v int)");
    } finally {
      await pool.end();
      await thread.close();
    }
    expect(await preparePGliteDataDir(pgdata, { template: usableTemplate(templateDir) })).toBe("existing");
    const again = await openPGliteThread({ dataDir: pgdata });
    const reopened = new PGlitePool(again);
    try {
      expect((await reopened.query("SELECT count(*)::int AS n FROM public.mine")).rows).toEqual([{ n: 0 }]);
    } finally {
      await reopened.end();
      await again.close();
    }
  });

  it("does not use a template made by another PGlite, or one with a migration this code does not know", () => {
    const manifestFile = join(templateDir, "manifest.json");
    const manifest = readFileSync(manifestFile, "utf8");
    try {
      const made = JSON.parse(manifest) as { pglite: string; migrations: string[] };
      writeFileSync(manifestFile, JSON.stringify({ ...made, pglite: "0.0.1" }));
      expect(usableTemplate(templateDir)).toBeUndefined();
      writeFileSync(
        manifestFile,
        JSON.stringify({ ...made, migrations: [...made.migrations, "9999-future"] }),
      );
      expect(usableTemplate(templateDir)).toBeUndefined();
      writeFileSync(manifestFile, JSON.stringify({ ...made, migrations: made.migrations.slice(0, 1) }));
      expect(usableTemplate(templateDir)).toBe(join(templateDir, "pgdata"));
    } finally {
      writeFileSync(manifestFile, manifest);
    }
    expect(usableTemplate(join(dir, "no-such-template"))).toBeUndefined();
  });

  it("refuses a directory that is not empty and holds no data directory", async () => {
    const pgdata = join(dir, "other", "pgdata");
    mkdirSync(pgdata, { recursive: true });
    writeFileSync(join(pgdata, "notes.txt"), "not a database");
    await expect(preparePGliteDataDir(pgdata, { template: usableTemplate(templateDir) })).rejects.toThrow(
      /not empty but holds no PostgreSQL data directory/,
    );
    await expect(openPGliteThread({ dataDir: pgdata })).rejects.toThrow(/no PG_VERSION/);
  });
});
