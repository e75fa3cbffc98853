/**
 * Users of the API and dashboard, and the settings the cluster shares (the JWT secret).
 * Passwords are kept as scrypt hashes only. A user's token generation is part of every token
 * it is given; bumping it revokes them all.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import type { Db } from "./recipients.js";
import type { Role } from "./schema.js";

const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: Buffer,
  keylen: number,
) => Promise<Buffer>;

export interface User {
  id: number;
  username: string;
  role: Role;
  tokenGeneration: number;
  createdAt: Date;
}

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

const USER_COLUMNS = ["id", "username", "role", "token_generation", "created_at"] as const;

function toUser(row: {
  id: number;
  username: string;
  role: Role;
  token_generation: number;
  created_at: Date;
}): User {
  return {
    id: row.id,
    username: row.username,
    role: row.role,
    tokenGeneration: row.token_generation,
    createdAt: row.created_at,
  };
}

/** The user and its password hash, for signing in. */
export async function findUserForLogin(db: Db, username: string) {
  const row = await db
    .selectFrom("lovage.users")
    .select([...USER_COLUMNS, "password_hash"])
    .where("username", "=", username)
    .executeTakeFirst();
  return row && { user: toUser(row), passwordHash: row.password_hash };
}

export async function findUserById(db: Db, id: number): Promise<User | undefined> {
  const row = await db
    .selectFrom("lovage.users")
    .select(USER_COLUMNS)
    .where("id", "=", id)
    .executeTakeFirst();
  return row && toUser(row);
}

export async function listUsers(db: Db): Promise<User[]> {
  const rows = await db.selectFrom("lovage.users").select(USER_COLUMNS).orderBy("id").execute();
  return rows.map(toUser);
}

/** Creates the user; undefined when the name is taken. */
export async function insertUser(
  db: Db,
  user: { username: string; password: string; role: Role },
): Promise<User | undefined> {
  const row = await db
    .insertInto("lovage.users")
    .values({ username: user.username, password_hash: await hashPassword(user.password), role: user.role })
    .onConflict((oc) => oc.column("username").doNothing())
    .returning(USER_COLUMNS)
    .executeTakeFirst();
  return row && toUser(row);
}

/** Why a change to users was refused. */
export type UserChangeRefusal = "missing" | "last-admin";

/**
 * The last admin may be neither demoted nor deleted, or nobody could manage users; the check is
 * part of the statement, so two admins demoting each other at once cannot both succeed.
 */
const otherAdminExists = (db: Db, id: number) =>
  db
    .selectFrom("lovage.users as other")
    .select("other.id")
    .where("other.role", "=", "admin")
    .where("other.id", "<>", id);

/**
 * Changes a user's role or password. A new password revokes every token the user holds, as
 * `revokeTokens` does; a role change needs no revocation, since each request reads the role.
 */
export async function updateUser(
  db: Db,
  id: number,
  change: { role?: Role; password?: string },
): Promise<User | UserChangeRefusal> {
  const passwordHash = change.password === undefined ? undefined : await hashPassword(change.password);
  let query = db
    .updateTable("lovage.users")
    .set((eb) => ({
      ...(change.role === undefined ? {} : { role: change.role }),
      ...(passwordHash === undefined
        ? {}
        : { password_hash: passwordHash, token_generation: eb("token_generation", "+", 1) }),
    }))
    .where("id", "=", id);
  if (change.role !== undefined && change.role !== "admin") {
    query = query.where((eb) => eb.or([eb("role", "<>", "admin"), eb.exists(otherAdminExists(db, id))]));
  }
  const row = await query.returning(USER_COLUMNS).executeTakeFirst();
  if (row) return toUser(row);
  return (await findUserById(db, id)) ? "last-admin" : "missing";
}

export async function revokeTokens(db: Db, id: number): Promise<void> {
  await db
    .updateTable("lovage.users")
    .set((eb) => ({ token_generation: eb("token_generation", "+", 1) }))
    .where("id", "=", id)
    .execute();
}

export async function deleteUser(db: Db, id: number): Promise<true | UserChangeRefusal> {
  const rows = await db
    .deleteFrom("lovage.users")
    .where("id", "=", id)
    .where((eb) => eb.or([eb("role", "<>", "admin"), eb.exists(otherAdminExists(db, id))]))
    .returning("id")
    .execute();
  if (rows.length > 0) return true;
  return (await findUserById(db, id)) ? "last-admin" : "missing";
}

/** The user a token names, if the token's generation is still the user's. */
export async function findTokenHolder(db: Db, id: number, tokenGeneration: number) {
  return db
    .selectFrom("lovage.users")
    .select(["id", "username", "role"])
    .where("id", "=", id)
    .where("token_generation", "=", tokenGeneration)
    .executeTakeFirst();
}

/**
 * Creates the user, or sets its password (revoking its tokens) and role when they differ: the
 * bootstrap admin of `LOVAGE_ADMIN_PASSWORD` and `lovage user`.
 */
export async function upsertUser(db: Db, username: string, password: string, role: Role): Promise<void> {
  // A restart with the same LOVAGE_ADMIN_PASSWORD must not sign everyone out.
  const existing = await findUserForLogin(db, username);
  if (existing && existing.user.role === role && (await verifyPassword(password, existing.passwordHash)))
    return;
  const passwordHash = await hashPassword(password);
  await db
    .insertInto("lovage.users")
    .values({ username, password_hash: passwordHash, role })
    .onConflict((oc) =>
      oc.column("username").doUpdateSet((eb) => ({
        password_hash: passwordHash,
        role,
        token_generation: eb("lovage.users.token_generation", "+", 1),
      })),
    )
    .execute();
}

/** Creates the user only if it does not exist; returns whether it did. */
export async function createUserIfMissing(
  db: Db,
  username: string,
  password: string,
  role: Role = "admin",
): Promise<boolean> {
  return (await insertUser(db, { username, password, role })) !== undefined;
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
