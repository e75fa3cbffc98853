/**
 * Where a new PGlite data directory comes from, so that a serving process never runs initdb
 * itself (initdb in-process leaves it at about 840 MB RSS for good, and takes 6–16 s): a copy
 * of a template data directory (the caller's, e.g. one made at build time), or else initdb in
 * a child process that exits (`pglite-initdb.ts`). Either way it is made beside its final
 * place and renamed into it, so a crash midway leaves no half-made directory to open.
 *
 * It never touches a directory that has PG_VERSION, and refuses one that is not empty and has
 * none (something else is there).
 */
import { fork } from "node:child_process";
import { constants, copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** A sibling module of this one, as a file path (`.ts` when the sources run directly). */
export function siblingModule(name: string): string {
  const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return fileURLToPath(new URL(`./${name}${extension}`, import.meta.url));
}

/** Runs initdb into `pgdata` (which must not exist) in a child process, and waits for it to exit. */
export async function initdbInChildProcess(pgdata: string): Promise<void> {
  const child = fork(siblingModule("pglite-initdb"), [pgdata], {
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (exitCode) => resolve(exitCode));
  });
  if (code !== 0) throw new Error(`initdb of ${pgdata} failed (exit ${code}): ${stderr.trim().slice(-2000)}`);
}

/**
 * Copies a data directory (about 1,100 files): half the time of fs.cpSync, which checks and
 * stats every path on the way; a copy-on-write clone where the filesystem can.
 */
function copyTree(from: string, to: string): void {
  mkdirSync(to, { mode: 0o700 });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) copyTree(source, target);
    else copyFileSync(source, target, constants.COPYFILE_FICLONE);
  }
}

/**
 * Makes sure `pgdata` is a PGlite data directory, and says where it came from: it was there,
 * it was copied from `template` (a data directory made by this PGlite version), or initdb
 * made it in a child process.
 */
export async function preparePGliteDataDir(
  pgdata: string,
  options: { template?: string } = {},
): Promise<"existing" | "template" | "initdb"> {
  if (existsSync(join(pgdata, "PG_VERSION"))) return "existing";
  if (existsSync(pgdata) && readdirSync(pgdata).length > 0) {
    throw new Error(
      `${pgdata} is not empty but holds no PostgreSQL data directory (no PG_VERSION); move it away`,
    );
  }
  const staging = `${pgdata}.new-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(dirname(staging), { recursive: true });
  try {
    if (options.template) {
      copyTree(options.template, staging);
    } else {
      await initdbInChildProcess(staging);
    }
    rmSync(pgdata, { recursive: true, force: true });
    renameSync(staging, pgdata);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return options.template ? "template" : "initdb";
}
