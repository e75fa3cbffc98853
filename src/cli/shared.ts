/** What the CLI's commands share: usage errors, argument parsing, and connecting to a running Lovage. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { connect, LovageHttpError, type LovageClient } from "../client.js";
import { ConfigError, dataDirOf, loadConfig, type Config } from "../config.js";
import type { Secrets } from "../redact.js";
import { adminPasswordPath, readAdminPasswordFile } from "./admin-password-file.js";

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
  --url URL          default $LOVAGE_URL or http://127.0.0.1:$PORT (5000)
  --token TOKEN      default $LOVAGE_TOKEN
  --username NAME    with --password, log in instead of a token (default admin)
  --password PASS    default $LOVAGE_PASSWORD, then $LOVAGE_ADMIN_PASSWORD, then the
                     password the first start generated ($LOVAGE_DATA_DIR/admin-password),
                     when this machine ran it`;

/** The secrets given on the command line, for redaction of what the CLI prints. */
export function secretsInArgs(args: readonly string[]): Secrets {
  const urls: string[] = [];
  const values: string[] = [];
  args.forEach((arg, index) => {
    const match = /^--(url|password|token)(?:=(.*))?$/s.exec(arg);
    const value = match?.[2] ?? args[index + 1];
    if (match && value !== undefined) (match[1] === "url" ? urls : values).push(value);
  });
  return { urls, values };
}

export async function connectFrom(
  values: { url?: string; token?: string; username?: string; password?: string },
  env: NodeJS.ProcessEnv,
): Promise<LovageClient> {
  // An empty value counts as none: `--password "$LOVAGE_ADMIN_PASSWORD"` with the variable unset.
  const token = values.token || env.LOVAGE_TOKEN || undefined;
  const username = values.username || "admin";
  let password = values.password || env.LOVAGE_PASSWORD || env.LOVAGE_ADMIN_PASSWORD || undefined;
  let passwordFile: string | undefined;
  if (!token && !password && username === "admin") {
    const dataDir = dataDirOf(env);
    password = readAdminPasswordFile(dataDir);
    if (password) passwordFile = adminPasswordPath(dataDir);
  }
  if (!token && !password) {
    throw new UsageError(
      `no credentials: give --token (or LOVAGE_TOKEN), or --password (or LOVAGE_PASSWORD); on the machine that ran the first start, the password it generated is read from ${adminPasswordPath(dataDirOf(env))} (set LOVAGE_DATA_DIR if it is elsewhere)`,
    );
  }
  try {
    return await connect({
      url: values.url || env.LOVAGE_URL || `http://127.0.0.1:${env.PORT || 5000}`,
      token,
      username,
      password,
    });
  } catch (error) {
    if (passwordFile && error instanceof LovageHttpError && error.status === 401) {
      throw new LovageHttpError(
        error.status,
        error.code,
        `${error.message} (tried the password in ${passwordFile}; give --password or --token)`,
        error.details,
      );
    }
    throw error;
  }
}
