/**
 * Start-up failures as one line that names the setting to look at and the cause, as a driver or
 * the OS reported it: `LOVAGE_DATABASE_URL: cannot connect to 127.0.0.1:5433 (ECONNREFUSED)`,
 * `PORT: 5000 is already in use`. The wrapped error keeps the original as its `cause`.
 */

/** A start-up failure that the named setting can fix; the CLI prints its message alone. */
export class SettingError extends Error {
  constructor(
    readonly setting: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${setting}: ${reason}`, options);
    this.name = "SettingError";
  }
}

interface SystemError extends Error {
  code?: unknown;
  syscall?: string;
  address?: string;
  port?: number;
  hostname?: string;
}

/**
 * The error that says what happened: the innermost `cause` (a migration or a pool wraps the
 * connection's error), the first of an AggregateError (one per address of a host name).
 */
function rootCause(error: unknown): SystemError {
  let current = error;
  for (let depth = 0; depth < 10; depth++) {
    if (current instanceof AggregateError && current.errors.length > 0) current = current.errors[0];
    else if (current instanceof Error && current.cause !== undefined) current = current.cause;
    else break;
  }
  return current instanceof Error ? current : new Error(String(current));
}

/** Where a URL points, `host:port`, for errors that do not say. */
function addressOf(url: string | undefined, defaultPort: number): string | undefined {
  if (url === undefined) return undefined;
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || "localhost"}:${parsed.port || defaultPort}`;
  } catch {
    return undefined;
  }
}

const UNREACHABLE = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET"]);

/** Why connecting to a service failed, in a few words. */
export function connectFailure(error: unknown, target?: { url?: string; defaultPort: number }): string {
  const root = rootCause(error);
  const code = typeof root.code === "string" ? root.code : undefined;
  const where =
    root.address !== undefined && root.port !== undefined
      ? `${root.address}:${root.port}`
      : addressOf(target?.url, target?.defaultPort ?? 0);
  if (code !== undefined && UNREACHABLE.has(code))
    return `cannot connect to ${where ?? "the server"} (${code})`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return `cannot resolve the host name ${root.hostname ?? where ?? ""} (${code})`;
  }
  if (/timeout|timed out/i.test(root.message))
    return `cannot connect to ${where ?? "the server"} (timed out)`;
  // A PostgreSQL or Redis answer (`database "x" does not exist`, `WRONGPASS …`) says it best.
  return root.message.split("\n")[0] ?? root.message;
}

/** The first line of an error's own message, for errors that already say what failed. */
export function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0] ?? message;
}

/** Why listening on a port failed: `5000 is already in use`. */
export function listenFailure(error: unknown, port: number): string {
  const root = rootCause(error);
  if (root.code === "EADDRINUSE") return `${port} is already in use`;
  if (root.code === "EACCES") return `${port} needs privileges this process does not have (EACCES)`;
  if (root.code === "EADDRNOTAVAIL") return `${root.address ?? "the address"} is not an address of this host`;
  return root.message.split("\n")[0] ?? root.message;
}

/** Which setting a listen error is about: the port (in use, privileged) or the host address. */
export function listenSetting(error: unknown, settings: { port: string; host: string }): string {
  const code = rootCause(error).code;
  return code === "EADDRINUSE" || code === "EACCES" ? settings.port : settings.host;
}

/** Awaits `opening`; if it fails, throws a SettingError naming `setting` with `describe`'s reason. */
export async function naming<T>(
  setting: string | ((error: unknown) => string),
  opening: Promise<T>,
  describe: (error: unknown) => string,
): Promise<T> {
  try {
    return await opening;
  } catch (error) {
    const name = typeof setting === "string" ? setting : setting(error);
    // Some errors already name their setting (the embedded data directory's lock).
    if (error instanceof Error && error.message.startsWith(`${name}: `)) throw error;
    throw new SettingError(name, describe(error), { cause: error });
  }
}
