/**
 * Where a new PGlite data directory comes from, so that a serving process never runs initdb
 * itself (initdb in-process leaves it at about 840 MB RSS for good, and takes 6–16 s).
 *
 * - `npm run build` makes a template: a data directory fresh from initdb, made by the installed
 *   PGlite in a child process (`pglite-initdb.ts --template`), with the PGlite version it was
 *   made by. It is rebuilt when that version changes.
 * - A new data directory is a copy of the template when its version is the installed one;
 *   otherwise (no template, another version) initdb runs in a child process that exits.
 * - Either way it is made beside its final place and renamed into it, so a crash midway leaves
 *   no half-made directory to open next time.
 *
 * It never touches a directory that has PG_VERSION, and refuses one that is not empty and has
 * none (something else is there).
 */
import { fork } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const TEMPLATE_VERSION_FILE = "pglite-version";

/** The installed PGlite's version (its package.json is not exported: found from its entry). */
export function pgliteVersion(): string {
  let dir = dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
}

/** `<package root>/dist/pglite-template`, whether this runs from dist/ or from the sources. */
export function defaultTemplateDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, "dist", "pglite-template");
}

/** True if `templateDir` holds a data directory made by the installed PGlite. */
export function templateIsCurrent(templateDir: string): boolean {
  try {
    const version = readFileSync(join(templateDir, TEMPLATE_VERSION_FILE), "utf8").trim();
    return version === pgliteVersion() && existsSync(join(templateDir, "pgdata", "PG_VERSION"));
  } catch {
    return false;
  }
}

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
 * Makes sure `pgdata` is a PGlite data directory, and says where it came from: it was there,
 * it was copied from the template, or initdb made it (in a child process).
 */
export async function preparePGliteDataDir(
  pgdata: string,
  options: { templateDir?: string } = {},
): Promise<"existing" | "template" | "initdb"> {
  if (existsSync(join(pgdata, "PG_VERSION"))) return "existing";
  if (existsSync(pgdata) && readdirSync(pgdata).length > 0) {
    throw new Error(
      `${pgdata} is not empty but holds no PostgreSQL data directory (no PG_VERSION); move it away`,
    );
  }
  const templateDir = options.templateDir ?? defaultTemplateDir();
  const staging = `${pgdata}.new-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  let source: "template" | "initdb";
  try {
    if (templateIsCurrent(templateDir)) {
      cpSync(join(templateDir, "pgdata"), staging, { recursive: true });
      source = "template";
    } else {
      await initdbInChildProcess(staging);
      source = "initdb";
    }
    rmSync(pgdata, { recursive: true, force: true });
    renameSync(staging, pgdata);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return source;
}
