#!/usr/bin/env node
/** The `lovage` command. Exit codes: 0 ok, 1 failure, 2 usage error. */
import { LovageHttpError } from "../client.js";
import { migrate, user } from "./commands/admin.js";
import { call } from "./commands/call.js";
import { send } from "./commands/send.js";
import { api, start, worker } from "./commands/serve.js";
import { status } from "./commands/status.js";
import { tasks } from "./commands/tasks.js";
import { UsageError, type Command } from "./shared.js";

const COMMANDS: Command[] = [start, api, worker, send, call, tasks, status, migrate, user];

const HELP = `Usage: lovage COMMAND [OPTIONS]

A distributed task queue, and a bulk-email service built on it.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(9)} ${c.summary}`).join("\n")}

Run "lovage COMMAND --help" for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return name ? 0 : 2;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`lovage: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  try {
    return await command.run(args, process.env);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`lovage ${name}: ${error.message}\n(see lovage ${name} --help)`);
      return 2;
    }
    if (error instanceof LovageHttpError) {
      console.error(`lovage ${name}: ${error.message} (HTTP ${error.status})`);
      return 1;
    }
    console.error(`lovage ${name}: ${(error as Error).message}`);
    return 1;
  }
}

process.exit(await main(process.argv.slice(2)));
