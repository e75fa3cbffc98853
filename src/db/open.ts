/**
 * Opens the store: PostgreSQL from a URL, or PGlite (PostgreSQL in WebAssembly) in the data
 * directory, with Kysely on top, migrated to the latest schema. It owns what it opens and
 * closes it; it never creates tables outside schema `lovage`.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Kysely, Migrator, PostgresDialect, sql, type Migration } from "kysely";
import pg from "pg";
import { openBroker } from "../queue/connection.js";
import { preparePGliteDataDir } from "../queue/pglite-datadir.js";
import { PGlitePool } from "../queue/pglite-pool.js";
import { openPGliteThread, type PGliteThread } from "../queue/pglite-thread.js";
import * as m0001 from "./migrations/0001-init.js";
import * as m0002 from "./migrations/0002-workers.js";
import * as m0003 from "./migrations/0003-counts.js";
import * as m0004 from "./migrations/0004-schedules.js";
import * as m0005 from "./migrations/0005-roles.js";
import * as m0006 from "./migrations/0006-worker-control.js";
import * as m0007 from "./migrations/0007-figures.js";
import * as m0008 from "./migrations/0008-deliverability.js";
import * as m0009 from "./migrations/0009-pace.js";
import * as m0010 from "./migrations/0010-campaign-pace.js";
import * as m0011 from "./migrations/0011-connection-leases.js";
import type { Database } from "./schema.js";

const MIGRATIONS: Record<string, Migration> = {
  "0001-init": m0001,
  "0002-workers": m0002,
  "0003-counts": m0003,
  "0004-schedules": m0004,
  "0005-roles": m0005,
  "0006-worker-control": m0006,
  "0007-figures": m0007,
  "0008-deliverability": m0008,
  "0009-pace": m0009,
  "0010-campaign-pace": m0010,
  "0011-connection-leases": m0011,
};
/** Every migration, in the order they apply. */
export const MIGRATION_NAMES = Object.keys(MIGRATIONS);

export type Store =
  | {
      kind: "embedded";
      db: Kysely<Database>;
      pool: PGlitePool;
      ping: () => Promise<void>;
      close(): Promise<void>;
    }
  | {
      kind: "postgres";
      db: Kysely<Database>;
      pool: pg.Pool;
      ping: () => Promise<void>;
      close(): Promise<void>;
    };

export type EmbeddedStore = Extract<Store, { kind: "embedded" }>;

export function openDatabase(options: { databaseUrl?: undefined; dataDir: string }): Promise<EmbeddedStore>;
export function openDatabase(options: { databaseUrl?: string; dataDir: string }): Promise<Store>;
export async function openDatabase(options: { databaseUrl?: string; dataDir: string }): Promise<Store> {
  return options.databaseUrl ? openPostgres(options.databaseUrl) : openEmbedded(options.dataDir);
}

async function openPostgres(connectionString: string): Promise<Store> {
  const pool = new pg.Pool({ connectionString, max: 10, connectionTimeoutMillis: 5_000 });
  // An idle client's error (the server restarted) must not crash the process; the next query reconnects.
  pool.on("error", () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrateToLatest(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return {
    kind: "postgres",
    db,
    pool,
    ping: async () => {
      await pool.query("SELECT 1");
    },
    close: () => db.destroy(),
  };
}

/**
 * PGlite keeps its files in `<dataDir>/pgdata`. Two processes on one directory would corrupt
 * it, so a pid file refuses a second one while the first is alive. A new directory is a copy
 * of the build's template (or made by initdb in a child process), never initdb'd here; the
 * database then runs in its own thread (`queue/pglite-thread.ts`).
 */
async function openEmbedded(dataDir: string): Promise<Store> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = lockDataDir(dataDir);
  let thread: PGliteThread | undefined;
  try {
    const pgdata = join(dataDir, "pgdata");
    // The thread loads PGlite while the directory is made (both take a few hundred ms): the
    // copy, synchronous, starts only once the thread has been started.
    const template = usableTemplate(defaultTemplateDir());
    const prepared = Promise.resolve().then(() => preparePGliteDataDir(pgdata, { template }));
    thread = await openPGliteThread({ dataDir: pgdata }, prepared);
    const { pool, db } = overThread(thread);
    await migrateToLatest(db);
    const opened = thread;
    return {
      kind: "embedded",
      db,
      pool,
      ping: async () => {
        await pool.query("SELECT 1");
      },
      close: async () => {
        // pg's end() waits for every checked-out client: one never released (a BullMQ worker
        // left open) must not keep the process from stopping; closing the thread ends it.
        await Promise.race([db.destroy(), delay(5_000, undefined, { ref: false })]);
        await opened.close();
        releaseLock();
      },
    };
  } catch (error) {
    await thread?.close().catch(() => undefined);
    releaseLock();
    throw error;
  }
}

function overThread(thread: PGliteThread): { pool: PGlitePool; db: Kysely<Database> } {
  const pool = new PGlitePool(thread);
  // An idle client's error (the database thread died) must not crash the process: every
  // query then fails with the reason, and /readyz reports the database down.
  pool.on("error", () => undefined);
  return { pool, db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }) };
}

/**
 * What an embedded data directory template was made by: a data directory is only as good as
 * the PGlite that reads it, and a template is only worth copying if it saves the migrations.
 */
interface TemplateManifest {
  pglite: string;
  bullmq: string;
  migrations: string[];
}

const MANIFEST_FILE = "manifest.json";

function packageVersion(name: string): string {
  // Neither exports its package.json: find it from the entry point.
  let dir = dirname(createRequire(import.meta.url).resolve(name));
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version: string };
      if (manifest.name === name) return manifest.version;
    }
    if (dirname(dir) === dir) throw new Error(`no package.json found for ${name}`);
    dir = dirname(dir);
  }
}

function currentManifest(): TemplateManifest {
  return {
    pglite: packageVersion("@electric-sql/pglite"),
    bullmq: packageVersion("bullmq"),
    migrations: Object.keys(MIGRATIONS),
  };
}

/** `<package root>/dist/pglite-template`, whether this runs from dist/ or from the sources. */
export function defaultTemplateDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, "dist", "pglite-template");
}

/**
 * The template's data directory if a new one can start from it: made by this PGlite and
 * BullMQ, with no migration this code does not know (the newer ones run at start). Else none:
 * initdb then runs in a child process, which takes seconds longer.
 */
export function usableTemplate(templateDir: string): string | undefined {
  try {
    const made = JSON.parse(readFileSync(join(templateDir, MANIFEST_FILE), "utf8")) as TemplateManifest;
    const now = currentManifest();
    const pgdata = join(templateDir, "pgdata");
    const usable =
      made.pglite === now.pglite &&
      made.bullmq === now.bullmq &&
      made.migrations.every((name) => now.migrations.includes(name)) &&
      existsSync(join(pgdata, "PG_VERSION"));
    return usable ? pgdata : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes the template a first start copies (`npm run build` runs this, in its own process): a
 * data directory fresh from initdb with the store's and BullMQ's migrations applied, so that
 * a first start neither runs initdb nor migrates from nothing. Returns false if the template
 * there is already current.
 */
export async function buildEmbeddedTemplate(templateDir: string): Promise<boolean> {
  const manifest = currentManifest();
  try {
    const made = readFileSync(join(templateDir, MANIFEST_FILE), "utf8");
    if (made === JSON.stringify(manifest) && usableTemplate(templateDir)) return false;
  } catch {
    // No template yet.
  }
  const staging = `${templateDir}.new-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  try {
    const pgdata = join(staging, "pgdata");
    await preparePGliteDataDir(pgdata);
    const thread = await openPGliteThread({ dataDir: pgdata });
    try {
      const { pool, db } = overThread(thread);
      await migrateToLatest(db);
      const broker = await openBroker({ kind: "embedded", pool });
      await broker.close();
      await db.destroy();
    } finally {
      await thread.close();
    }
    writeFileSync(join(staging, MANIFEST_FILE), JSON.stringify(manifest));
    rmSync(templateDir, { recursive: true, force: true });
    renameSync(staging, templateDir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return true;
}

function lockDataDir(dataDir: string): () => void {
  const lockFile = join(dataDir, "lovage.pid");
  let holder: number | undefined;
  try {
    holder = Number(readFileSync(lockFile, "utf8").trim());
  } catch {
    holder = undefined;
  }
  if (holder && holder !== process.pid && isAlive(holder)) {
    throw new Error(
      `LOVAGE_DATA_DIR: ${dataDir} is in use by another Lovage process (pid ${holder}); stop it or choose another directory`,
    );
  }
  writeFileSync(lockFile, String(process.pid));
  return () => rmSync(lockFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Applies pending migrations; Kysely holds an advisory lock, so concurrent starters run them once. */
export async function migrateToLatest(db: Kysely<Database>): Promise<void> {
  // Kysely's migrator first introspects the whole catalog for its two tables (0.3 s of a
  // start on PGlite): a database with exactly the known migrations needs none of that.
  if (await hasExactlyTheMigrations(db)) return;
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => MIGRATIONS },
    migrationTableSchema: "lovage",
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === "Error");
    throw new Error(`database migration ${failed?.migrationName ?? ""} failed`, { cause: error });
  }
}

/** True if every migration here is applied and none unknown here is (the migrator reports those). */
async function hasExactlyTheMigrations(db: Kysely<Database>): Promise<boolean> {
  const table = await sql<{ present: boolean }>`
    SELECT to_regclass('lovage.kysely_migration') IS NOT NULL AS present`.execute(db);
  if (!table.rows[0]?.present) return false;
  const { rows } = await sql<{ name: string }>`SELECT name FROM lovage.kysely_migration`.execute(db);
  const applied = new Set(rows.map((row) => row.name));
  const known = Object.keys(MIGRATIONS);
  return applied.size === known.length && known.every((name) => applied.has(name));
}
