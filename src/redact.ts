/**
 * Keeps secrets out of everything Lovage prints. Two tools, used together:
 *
 * - `redactUrl` hides the password of one URL as the user wrote it, for the places that print
 *   a setting on purpose (the start log, a refused setting).
 * - `createRedactor` removes known secret values (and their encoded forms) from any text: every
 *   log line and every error message passes through one, because a driver's message may quote
 *   a URL or a password in a form no pattern can foresee.
 *
 * The userinfo of a URL is found by the LAST `@` after the scheme's `//`, never by WHATWG
 * `new URL()`: it fails or mis-splits when the password holds an unencoded `/`, `?`, `#` (it
 * ends the authority there), and the text must be redacted even when it does not parse. An `@`
 * in the path or query therefore hides more than the password, never less.
 */

/** What a URL's userinfo is made of, as written (nothing decoded). */
interface Userinfo {
  /** Everything up to the userinfo: `postgres://`, or "" for a URL written without a scheme. */
  prefix: string;
  username: string;
  /** Undefined when the userinfo has no `:`. */
  password: string | undefined;
  /** From the host on: `db:5432/lovage`. */
  rest: string;
}

function splitUserinfo(raw: string): Userinfo | undefined {
  const slashes = raw.indexOf("//");
  const start = slashes >= 0 ? slashes + 2 : 0;
  const at = raw.lastIndexOf("@");
  if (at < start) return undefined;
  const userinfo = raw.slice(start, at);
  const colon = userinfo.indexOf(":");
  return {
    prefix: raw.slice(0, start),
    username: colon >= 0 ? userinfo.slice(0, colon) : userinfo,
    password: colon >= 0 ? userinfo.slice(colon + 1) : undefined,
    rest: raw.slice(at + 1),
  };
}

/** The password of a URL as written (still percent-encoded), or undefined if it has none. */
export function urlPassword(raw: string): string | undefined {
  return splitUserinfo(raw)?.password || undefined;
}

/** The user name of a URL as written (still percent-encoded), or undefined if it has none. */
export function urlUsername(raw: string): string | undefined {
  return splitUserinfo(raw)?.username || undefined;
}

/** The URL with its password replaced by `***`, otherwise as the user wrote it. */
export function redactUrl(raw: string): string {
  const parts = splitUserinfo(raw);
  if (parts?.password === undefined) return raw;
  return `${parts.prefix}${parts.username}:***@${parts.rest}`;
}

/** Decodes the valid `%XX` sequences and leaves a stray `%` as it is (as libpq and pg do). */
export function decodePercent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

/** `text` percent-encoded the way WHATWG URL encodes a password (it leaves `%`, `!`, `$`… as they are). */
function whatwgUserinfoEncoding(text: string): string {
  const url = new URL("x://host");
  url.password = text;
  return url.password;
}

/**
 * Shorter secrets are not searched for in text: a 3-character password would hide every word
 * that holds it. The settings that hold secrets ask for 8 or more characters where Lovage
 * chooses (admin password, JWT secret); URLs are still redacted by `redactUrl`.
 */
export const MIN_SECRET_LENGTH = 4;

/** Every form in which `secret` may show up in a message: as given, decoded, and encoded. */
function formsOf(secret: string, fromUrl: boolean): string[] {
  const plain = fromUrl ? decodePercent(secret) : secret;
  const forms = new Set([secret, plain, encodeURIComponent(plain), whatwgUserinfoEncoding(plain)]);
  if (fromUrl) forms.add(whatwgUserinfoEncoding(secret));
  return [...forms].filter((form) => form.length >= MIN_SECRET_LENGTH);
}

/** The secrets that settings hold: the passwords of URL settings, and plain secret values. */
export interface Secrets {
  urls?: readonly (string | undefined)[];
  values?: readonly (string | undefined)[];
}

export type Redactor = (text: string) => string;

export const CENSOR = "***";

/** Every form of every secret, longest first. */
function formsOfSecrets(secrets: Secrets): string[] {
  const forms = new Set<string>();
  for (const url of secrets.urls ?? []) {
    const password = url === undefined ? undefined : urlPassword(url);
    if (password !== undefined) for (const form of formsOf(password, true)) forms.add(form);
  }
  for (const value of secrets.values ?? []) {
    if (value) for (const form of formsOf(value, false)) forms.add(form);
  }
  // Longest first: a form that holds a shorter one must go whole, not leave its remainder.
  return [...forms].sort((a, b) => b.length - a.length);
}

function replaceAll(text: string, forms: readonly string[]): string {
  let result = text;
  for (const form of forms) if (result.includes(form)) result = result.split(form).join(CENSOR);
  return result;
}

/** A function that replaces every form of every secret in a text with `***`. */
export function createRedactor(secrets: Secrets): Redactor {
  const forms = formsOfSecrets(secrets);
  return forms.length === 0 ? (text) => text : (text) => replaceAll(text, forms);
}

/**
 * Redacts one serialized JSON log line. A secret can sit in it JSON-escaped (a `"` or `\` in a
 * password), so a line that holds one in any form is parsed, every string in it redacted, and
 * serialized again; the others pass untouched, cheaply.
 */
export function createJsonLineRedactor(secrets: Secrets): Redactor {
  const forms = formsOfSecrets(secrets);
  const probes = [...new Set([...forms, ...forms.map((form) => JSON.stringify(form).slice(1, -1))])];
  if (forms.length === 0) return (line) => line;
  const redact: Redactor = (text) => replaceAll(text, forms);
  return (line) => {
    if (!probes.some((probe) => line.includes(probe))) return line;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return redact(line);
    }
    const redacted = JSON.stringify(deepRedact(parsed, redact));
    return line.endsWith("\n") ? `${redacted}\n` : redacted;
  };
}

function deepRedact(value: unknown, redact: Redactor): unknown {
  if (typeof value === "string") return redact(value);
  if (Array.isArray(value)) return value.map((item) => deepRedact(item, redact));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [redact(key), deepRedact(item, redact)]),
    );
  }
  return value;
}
