/**
 * The generated admin password, kept in `<data dir>/admin-password` (mode 0600) so that the CLI
 * on the same machine can log in with no credentials given. Only the first start writes it (the
 * password is generated then, and shown once); a password chosen later (LOVAGE_ADMIN_PASSWORD,
 * `lovage user admin`) makes the file wrong, so it is removed then.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const ADMIN_PASSWORD_FILE = "admin-password";

export function adminPasswordPath(dataDir: string): string {
  return join(dataDir, ADMIN_PASSWORD_FILE);
}

/**
 * Writes the file whole or not at all, readable by its owner only from its first byte: the
 * temporary file is created with mode 0600 (never a wider one narrowed afterwards), then renamed.
 */
export function writeAdminPasswordFile(dataDir: string, password: string): string {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = adminPasswordPath(dataDir);
  const temporary = `${path}.${process.pid}.tmp`;
  rmSync(temporary, { force: true });
  writeFileSync(temporary, `${password}\n`, { mode: 0o600, flag: "wx" });
  renameSync(temporary, path);
  return path;
}

/** The saved password, or undefined if there is no file or this user cannot read it. */
export function readAdminPasswordFile(dataDir: string): string | undefined {
  try {
    return readFileSync(adminPasswordPath(dataDir), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

export function removeAdminPasswordFile(dataDir: string): void {
  rmSync(adminPasswordPath(dataDir), { force: true });
}
