/**
 * A process that runs PGlite's initdb and exits, so that initdb's memory (about 840 MB) never
 * stays in a serving process.
 *
 *   node pglite-initdb.js PGDATA              a new data directory at PGDATA (must not exist)
 *   node pglite-initdb.js --template DIR      DIR/pgdata and DIR/pglite-version: the template
 *                                             a new data directory is copied from (`npm run
 *                                             build`); does nothing if DIR is already current
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { TEMPLATE_VERSION_FILE, pgliteVersion, templateIsCurrent } from "./pglite-datadir.js";

async function initdb(pgdata: string): Promise<void> {
  if (existsSync(pgdata)) throw new Error(`${pgdata} exists already`);
  mkdirSync(dirname(pgdata), { recursive: true });
  const db = await PGlite.create(pgdata);
  await db.close();
}

async function main(args: string[]): Promise<void> {
  if (args[0] === "--template" && args[1]) {
    const templateDir = args[1];
    if (templateIsCurrent(templateDir)) return;
    const staging = `${templateDir}.new-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    await initdb(join(staging, "pgdata"));
    writeFileSync(join(staging, TEMPLATE_VERSION_FILE), `${pgliteVersion()}\n`);
    rmSync(templateDir, { recursive: true, force: true });
    renameSync(staging, templateDir);
    console.log(`PGlite ${pgliteVersion()} data directory template: ${templateDir}`);
  } else if (args.length === 1 && args[0] && !args[0].startsWith("-")) {
    await initdb(args[0]);
  } else {
    throw new Error("usage: pglite-initdb PGDATA | pglite-initdb --template DIR");
  }
}

main(process.argv.slice(2)).then(
  // PGlite may leave handles behind: this process has done its one job.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
