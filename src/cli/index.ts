#!/usr/bin/env node
/**
 * The `lovage` command. Exit codes: 0 ok, 1 failure, 2 usage error. Every error it prints, even
 * one nobody caught, goes through the redactor of the secrets in the settings and arguments.
 */
import { inspect } from "node:util";
import { LovageHttpError } from "../client.js";
import { secretsInEnv } from "../config.js";
import { createRedactor } from "../redact.js";
import { migrate, user } from "./commands/admin.js";
import { call } from "./commands/call.js";
import { send } from "./commands/send.js";
import { api, start, worker } from "./commands/serve.js";
import { status } from "./commands/status.js";
import { tasks } from "./commands/tasks.js";
import { secretsInArgs, UsageError, type Command } from "./shared.js";
import { token } from "./commands/token.js";

const COMMANDS: Command[] = [start, api, worker, send, call, tasks, status, token, migrate, user];

const HELP = `Usage: lovage COMMAND [OPTIONS]

A distributed task queue, and a bulk-email service built on it.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(9)} ${c.summary}`).join("\n")}

Run "lovage COMMAND --help" for a command's options.`;

const argv = process.argv.slice(2);
const fromEnv = secretsInEnv(process.env);
const fromArgs = secretsInArgs(argv);
const redact = createRedactor({
  urls: [...(fromEnv.urls ?? []), ...(fromArgs.urls ?? [])],
  values: [...(fromEnv.values ?? []), ...(fromArgs.values ?? [])],
});
const printError = (text: string) => console.error(redact(text));

// A driver's error that escaped every handler may quote a URL (Node's ERR_INVALID_URL holds the
// input): print it redacted, then exit as Node would.
const crash = (error: unknown) => {
  printError(`lovage: unexpected error: ${inspect(error)}`);
  process.exit(1);
};
process.on("uncaughtException", crash);
process.on("unhandledRejection", crash);

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(HELP);
    return name ? 0 : 2;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    printError(`lovage: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  try {
    return await command.run(args, process.env);
  } catch (error) {
    if (error instanceof UsageError) {
      printError(`lovage ${name}: ${error.message}\n(see lovage ${name} --help)`);
      return 2;
    }
    if (error instanceof LovageHttpError) {
      printError(`lovage ${name}: ${error.message} (HTTP ${error.status})`);
      return 1;
    }
    printError(`lovage ${name}: ${(error as Error).message}`);
    return 1;
  }
}

process.exit(await main(argv));
