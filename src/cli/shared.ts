/** What the CLI's commands share: usage errors, argument parsing, and connecting to a running Lovage. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { connect, type LovageClient } from "../client.js";
import { ConfigError, loadConfig, type Config } from "../config.js";

/** A mistake in how the command was called: exit code 2, with the command's help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export interface Command {
  name: string;
  summary: string;
  help: string;
  run(args: string[], env: NodeJS.ProcessEnv): Promise<number>;
}

type WithHelp<T> = T & { help: { type: "boolean"; short: "h" } };
/** What parseArgs returns for these options (named so that declarations can be emitted). */
export type Parsed<T> = ReturnType<
  typeof parseArgs<{ args: string[]; options: WithHelp<T>; allowPositionals: boolean; strict: true }>
>;

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  allowPositionals = false,
): Parsed<T> {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function configFrom(env: NodeJS.ProcessEnv): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError)
      throw new UsageError(`invalid settings:\n  ${error.problems.join("\n  ")}`);
    throw error;
  }
}

export const CONNECTION_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  username: { type: "string" },
  password: { type: "string" },
} as const;

export const CONNECTION_HELP = `Connection (for a running Lovage):
  --url URL          default $LOVAGE_URL or http://127.0.0.1:5000
  --token TOKEN      default $LOVAGE_TOKEN
  --username NAME    with --password, log in instead of a token (default admin)
  --password PASS    default $LOVAGE_PASSWORD, then $LOVAGE_ADMIN_PASSWORD`;

export async function connectFrom(
  values: { url?: string; token?: string; username?: string; password?: string },
  env: NodeJS.ProcessEnv,
): Promise<LovageClient> {
  const token = values.token ?? env.LOVAGE_TOKEN;
  const password = values.password ?? env.LOVAGE_PASSWORD ?? env.LOVAGE_ADMIN_PASSWORD;
  if (!token && !password) {
    throw new UsageError(
      "no credentials: give --token (or LOVAGE_TOKEN), or --password (or LOVAGE_PASSWORD)",
    );
  }
  return connect({
    url: values.url ?? env.LOVAGE_URL ?? `http://127.0.0.1:${env.PORT ?? 5000}`,
    token,
    username: values.username ?? "admin",
    password,
  });
}
