/** `lovage migrate` and `lovage user`: run against the database directly, not over HTTP. */
import type { Config } from "../../config.js";
import { ROLES, type Role } from "../../db/schema.js";
import { removeAdminPasswordFile } from "../admin-password-file.js";
import { UsageError, configFrom, parse, type Command } from "../shared.js";

/** The store of the settings, migrated; its errors name LOVAGE_DATABASE_URL or the data directory. */
async function openConfiguredStore(config: Config) {
  // Loaded here, not at the top: the other commands and --help need no database driver.
  const { createLogger, openStore } = await import("../../main.js");
  return openStore(config, createLogger(config));
}

export const migrate: Command = {
  name: "migrate",
  summary: "Bring the database (and BullMQ's PostgreSQL schema) to the latest version",
  help: `Usage: lovage migrate

Applies pending migrations to LOVAGE_DATABASE_URL (or the embedded database). Safe to run
from several hosts at once: an advisory lock lets one of them do it. Every start does it too.`,
  async run(args, env) {
    const { values } = parse(args, {});
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const config = configFrom(env);
    const store = await openConfiguredStore(config);
    try {
      // Opening BullMQ on PostgreSQL migrates its schema too; Redis needs none.
      if (!config.brokerUrl)
        await (await (await import("../../main.js")).openBrokerFor(config, store)).close();
    } finally {
      await store.close();
    }
    console.log("database is up to date");
    return 0;
  },
};

export const user: Command = {
  name: "user",
  summary: "Create a user or change its password and role",
  help: `Usage: lovage user NAME --password PASSWORD [--role admin|sender|viewer]

Creates the user NAME for the API and dashboard, or sets its password (signing it out
everywhere) if it exists. A new user needs --role; an existing one keeps its role unless
--role is given. Roles: admin (everything, users), sender (campaigns, tasks), viewer (read
only). While Lovage runs, admins can do the same from the dashboard or /api/users.`,
  async run(args, env) {
    const { values, positionals } = parse(
      args,
      { password: { type: "string" }, role: { type: "string" } },
      true,
    );
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [name] = positionals;
    if (!name) throw new UsageError("which user? lovage user NAME --password PASSWORD");
    if (!values.password || values.password.length < 8)
      throw new UsageError("--password of at least 8 characters is required");
    const role = values.role;
    if (role !== undefined && !isRole(role))
      throw new UsageError(`--role: expected one of ${ROLES.join(", ")}, got "${role}"`);
    const config = configFrom(env);
    const { findUserForLogin, upsertUser } = await import("../../db/users.js");
    const store = await openConfiguredStore(config);
    try {
      const existing = await findUserForLogin(store.db, name);
      const chosen = role ?? existing?.user.role;
      if (chosen === undefined)
        throw new UsageError(`${name} is a new user: give it --role (${ROLES.join(", ")})`);
      await upsertUser(store.db, name, values.password, chosen);
    } finally {
      await store.close();
    }
    // The generated password saved for the CLI no longer works.
    if (name === "admin") removeAdminPasswordFile(config.dataDir);
    console.log(`user ${name} saved`);
    return 0;
  },
};

function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
