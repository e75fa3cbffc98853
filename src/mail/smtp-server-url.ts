/**
 * One SMTP server as `LOVAGE_SMTP_URL` names it: `smtp://user:pass@relay:587?tls=required&rate=14`.
 *
 * Owns: the query parameters a server URL may carry, their meaning and their checks. An unknown
 * parameter is an error naming it, never silently ignored. It does no I/O; the transport turns a
 * spec into connections.
 */

/**
 * - `opportunistic` (default for `smtp://`): STARTTLS whenever the server offers it.
 * - `required`: never send without TLS (STARTTLS for `smtp://`; `smtps://` always has it).
 * - `none`: never use TLS; only for a local catcher or a test server.
 * - `implicit`: `smtps://`, TLS from the first byte.
 */
export type SmtpTlsMode = "opportunistic" | "required" | "none" | "implicit";

export interface SmtpServerSpec {
  /** `name=`, default `host:port`: how logs, events, figures and campaigns name this server. */
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly tls: SmtpTlsMode;
  readonly auth: { readonly user: string; readonly pass: string } | undefined;
  /** `rate=`: messages per second to this server across every worker; undefined is no limit. */
  readonly rate: number | undefined;
  /** `connections=`: simultaneous connections to this server across every worker; undefined is the pool size. */
  readonly connections: number | undefined;
  /** `weight=`, default 1: its share of the messages among the servers that are in. */
  readonly weight: number;
}

const PARAMETERS = ["tls", "rate", "connections", "weight", "name"] as const;

/** Parses one server URL; throws an Error whose message names the parameter that is wrong. */
export function parseSmtpServerUrl(raw: string): SmtpServerSpec {
  const url = new URL(raw);
  const implicit = url.protocol === "smtps:";
  if (!implicit && url.protocol !== "smtp:") {
    throw new Error(`expected smtp:// or smtps://, got ${url.protocol}//`);
  }
  for (const key of new Set(url.searchParams.keys())) {
    if (!(PARAMETERS as readonly string[]).includes(key)) {
      const hint =
        key === "starttls" ? " (STARTTLS is used whenever offered; tls=required insists on it)" : "";
      throw new Error(`unknown parameter "${key}"${hint}; known: ${PARAMETERS.join(", ")}`);
    }
    if (url.searchParams.getAll(key).length > 1)
      throw new Error(`parameter "${key}" is given more than once`);
  }
  const param = (key: (typeof PARAMETERS)[number]) => url.searchParams.get(key) ?? undefined;

  let tls: SmtpTlsMode = implicit ? "implicit" : "opportunistic";
  const tlsParam = param("tls");
  if (tlsParam !== undefined) {
    if (implicit) {
      if (tlsParam !== "required") throw new Error(`tls=${tlsParam}: smtps:// always uses TLS`);
    } else if (tlsParam === "required" || tlsParam === "none" || tlsParam === "opportunistic") {
      tls = tlsParam;
    } else {
      throw new Error(`tls: expected required, none or opportunistic, got "${tlsParam}"`);
    }
  }

  const port = Number(url.port || (implicit ? 465 : 25));
  const name = param("name") ?? `${url.hostname}:${port}`;
  if (!/^[\w.:[\]-]{1,64}$/.test(name)) {
    throw new Error(`name: expected 1 to 64 letters, digits, "_", "-", ".", ":", got "${name}"`);
  }
  return {
    name,
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    tls,
    auth: url.username
      ? { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) }
      : undefined,
    rate: positiveNumber("rate", param("rate")),
    connections: wholeNumber("connections", param("connections")),
    weight: positiveNumber("weight", param("weight")) ?? 1,
  };
}

/** Checks that no two servers share a name, since campaigns and figures refer to servers by it. */
export function parseSmtpServerUrls(raws: readonly string[]): SmtpServerSpec[] {
  const specs = raws.map(parseSmtpServerUrl);
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.name))
      throw new Error(`two servers are named "${spec.name}": give each a distinct name=`);
    seen.add(spec.name);
  }
  return specs;
}

function positiveNumber(key: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
  if (!(value > 0) || !Number.isFinite(value))
    throw new Error(`${key}: expected a number above 0, got "${raw}"`);
  return value;
}

function wholeNumber(key: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(value) || value < 1 || value > 1000) {
    throw new Error(`${key}: expected a whole number from 1 to 1000, got "${raw}"`);
  }
  return value;
}
