/**
 * Users of the API and dashboard, and the settings the cluster shares (the JWT secret).
 * Passwords are kept as scrypt hashes only.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import type { Db } from "./recipients.js";

const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: Buffer,
  keylen: number,
) => Promise<Buffer>;

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, 64);
  return `scrypt$${salt.toString("base64")}$${hash.toString("base64")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, salt, hash] = stored.split("$");
  if (scheme !== "scrypt" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64");
  const actual = await scrypt(password, Buffer.from(salt, "base64"), expected.length);
  return timingSafeEqual(actual, expected);
}

export async function findUser(db: Db, username: string) {
  return db.selectFrom("lovage.users").selectAll().where("username", "=", username).executeTakeFirst();
}

/** Creates the user, or changes its password when it exists. */
export async function upsertUser(db: Db, username: string, password: string): Promise<void> {
  const passwordHash = await hashPassword(password);
  await db
    .insertInto("lovage.users")
    .values({ username, password_hash: passwordHash })
    .onConflict((oc) => oc.column("username").doUpdateSet({ password_hash: passwordHash }))
    .execute();
}

/** Creates the user only if it does not exist; returns whether it did. */
export async function createUserIfMissing(db: Db, username: string, password: string): Promise<boolean> {
  const passwordHash = await hashPassword(password);
  const rows = await db
    .insertInto("lovage.users")
    .values({ username, password_hash: passwordHash })
    .onConflict((oc) => oc.column("username").doNothing())
    .returning("id")
    .execute();
  return rows.length > 0;
}

/**
 * The value of a shared setting, created by the first process that asks: concurrent starters
 * all read the one that won the insert.
 */
export async function getOrCreateSetting(db: Db, key: string, create: () => string): Promise<string> {
  await db
    .insertInto("lovage.settings")
    .values({ key, value: create() })
    .onConflict((oc) => oc.column("key").doNothing())
    .execute();
  const row = await db
    .selectFrom("lovage.settings")
    .select("value")
    .where("key", "=", key)
    .executeTakeFirstOrThrow();
  return row.value;
}
