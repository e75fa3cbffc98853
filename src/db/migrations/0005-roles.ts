import { sql, type Kysely } from "kysely";

/**
 * Users get a role and a token generation. Users that existed before roles could do
 * everything, so they become admins; after that every insert names its role. A token carries
 * the generation it was signed at: signing out or changing the password bumps it, which
 * revokes every token the user holds, in every API process at once.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE lovage.users
      ADD COLUMN role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'sender', 'viewer')),
      ADD COLUMN token_generation integer NOT NULL DEFAULT 0;
    ALTER TABLE lovage.users ALTER COLUMN role DROP DEFAULT;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE lovage.users DROP COLUMN role, DROP COLUMN token_generation`.execute(db);
}
