/**
 * `node pglite-initdb.js PGDATA`: runs PGlite's initdb into PGDATA (which must not exist) and
 * exits, so that initdb's memory (about 840 MB) never stays in a serving process.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { PGlite } from "@electric-sql/pglite";

async function initdb(pgdata: string | undefined): Promise<void> {
  if (!pgdata || pgdata.startsWith("-")) throw new Error("usage: pglite-initdb PGDATA");
  if (existsSync(pgdata)) throw new Error(`${pgdata} exists already`);
  mkdirSync(dirname(pgdata), { recursive: true });
  const db = await PGlite.create(pgdata);
  await db.close();
}

initdb(process.argv[2]).then(
  // PGlite may leave handles behind: this process has done its one job.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
