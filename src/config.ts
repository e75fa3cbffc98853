/**
 * Every setting Lovage reads, validated once. `loadConfig(env)` is pure: it is the only code
 * that looks at environment variables (main and the CLI pass `process.env`), it reports every
 * problem at once with the setting's name, and it returns a frozen object.
 */
import { resolve } from "node:path";
import { parseMailbox } from "./mail/message.js";
import { parseSmtpServerUrl, parseSmtpServerUrls } from "./mail/smtp-server-url.js";
import { parseDomainLimits, type DomainGroup } from "./mail/rate-limits.js";
import { parseErrorBudgetText } from "./mail/error-budget.js";
import type { ErrorBudget } from "./mail/send-batch.js";
import { decodePercent, redactUrl, urlPassword, urlUsername, type Secrets } from "./redact.js";

export { redactUrl };

export type Topology = "embedded" | "distributed";

export interface Config {
  /** `LOVAGE_DATA_DIR`, default `./data`: the embedded database and generated secrets. */
  readonly dataDir: string;
  /** `LOVAGE_DATABASE_URL`: `postgres://…`; unset means the embedded PGlite in `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** `LOVAGE_BROKER_URL`: `redis://…`; unset means BullMQ on the database. */
  readonly brokerUrl: string | undefined;
  /** `LOVAGE_SMTP_URL`: comma-separated `smtp://`/`smtps://` URLs; empty means the mail catcher. */
  readonly smtpUrls: readonly string[];
  /** `LOVAGE_SMTP_CA_FILE`: PEM certificates that verify the SMTP servers' certificates; unset: the system's trusted CAs. Verification is always on. */
  readonly smtpCaFile: string | undefined;
  /** `LOVAGE_SMTP_EHLO_NAME`: the name Lovage gives in EHLO; default the host name of `LOVAGE_PUBLIC_URL`, else the machine's if it has a dot. */
  readonly smtpEhloName: string | undefined;
  /** `LOVAGE_PUBLIC_URL`: where users and mailbox providers reach the API (`https://mail.example.com`), without a trailing slash; unset: no unsubscribe links. */
  readonly publicUrl: string | undefined;
  /** `LOVAGE_DEFAULT_FROM`: the sender of campaigns that give none (`News <news@example.com>`); unset with a relay: campaigns must give `from`. */
  readonly defaultFrom: string | undefined;
  /** `LOVAGE_UNSUBSCRIBE_MAILTO`: an address put in List-Unsubscribe as a mailto: beside the link (needs `LOVAGE_PUBLIC_URL`); unset: the link alone. */
  readonly unsubscribeMailto: string | undefined;
  /** `LOVAGE_BOUNCE_ADDRESS`: the envelope sender of every message (where bounces go); `{token}` in its local part becomes the recipient's token (VERP: `bounces+{token}@example.com`); unset: the From address. */
  readonly bounceAddress: string | undefined;
  /** `LOVAGE_BOUNCE_SMTP_PORT`: where the bounce listener (DSN and ARF reports over SMTP) listens, on `LOVAGE_HOST`; unset: no listener. */
  readonly bounceSmtpPort: number | undefined;
  /** `LOVAGE_SOFT_BOUNCE_LIMIT`, default 3: soft bounces of one recipient that count as a hard bounce. */
  readonly softBounceLimit: number;
  /** `LOVAGE_SES_WEBHOOK_SECRET`: accepts unsigned posts to `/api/webhooks/ses?secret=…` with it; unset: only SNS-signed ones. */
  readonly sesWebhookSecret: string | undefined;
  /** `LOVAGE_DKIM_DOMAIN`, `LOVAGE_DKIM_SELECTOR`, `LOVAGE_DKIM_KEY_FILE` (a PEM private key): every message is signed; unset: no DKIM signature. */
  readonly dkim: { readonly domain: string; readonly selector: string; readonly keyFile: string } | undefined;
  /** `LOVAGE_HOST`, default `127.0.0.1`. */
  readonly host: string;
  /** `PORT`, default 5000; 0 picks a free port. */
  readonly port: number;
  /** `LOVAGE_CATCHER_PORT`, default 2525; 0 picks a free port. */
  readonly catcherPort: number;
  /** `LOVAGE_JWT_SECRET`: unset means one generated once and kept in the database. */
  readonly jwtSecret: string | undefined;
  /** `LOVAGE_TOKEN_TTL_MS`, default 43200000 (12 h): how long a sign-in token is valid. */
  readonly tokenTtlMs: number;
  /** `LOVAGE_ADMIN_PASSWORD`: unset means generated and printed once on first start. */
  readonly adminPassword: string | undefined;
  /** `LOVAGE_TASKS`: comma-separated module paths whose exported tasks are registered; default: the bundled `add` example. */
  readonly taskModules: readonly string[];
  /** `LOVAGE_CONCURRENCY`, default 20: jobs one worker process runs at once; the send-batch jobs among them share the SMTP pool, a chunk of recipients at a time. */
  readonly concurrency: number;
  /** `LOVAGE_QUEUES`: queues a worker listens on; default all of them. */
  readonly queues: readonly string[] | undefined;
  /** `LOVAGE_BATCH_SIZE`, default 50: recipients per send-batch job. */
  readonly batchSize: number;
  /** `LOVAGE_MAX_ATTEMPTS`, default unset: a cap on SMTP transactions per recipient besides LOVAGE_RETRY_MAX_AGE. */
  readonly maxAttempts: number | undefined;
  /** `LOVAGE_RETRY_BASE_MS`, default 10000: first retry delay; doubles each attempt (at most an hour apart), with jitter. */
  readonly retryBaseMs: number;
  /** `LOVAGE_RETRY_MAX_AGE`, default `24h`: a recipient that keeps getting 4xx (or cannot be tried) is failed once its first try is this old. */
  readonly retryMaxAgeMs: number;
  /** `LOVAGE_DOMAIN_LIMITS`: rate and connection limits per recipient domain or provider group; google, microsoft and yahoo are built in. */
  readonly domainGroups: readonly DomainGroup[];
  /** `LOVAGE_ERROR_BUDGET`, default `10%/200/50`: pause a campaign whose 5xx exceed the share of its last N attempts, after M; `off` disables. */
  readonly errorBudget: ErrorBudget | undefined;
  /** `LOVAGE_SMTP_SUSPEND_PATTERN`, default `^421[ -]4\.7\.28`: a reply matching this regular expression suspends the server. */
  readonly smtpSuspendPattern: RegExp;
  /** `LOVAGE_SMTP_SUSPEND_MS`, default 600000: how long a server is suspended. */
  readonly smtpSuspendMs: number;
  /** `LOVAGE_LEASE_MS`, default 120000: how long a recipient may stay `sending` before it is `unknown`. */
  readonly leaseMs: number;
  /** `LOVAGE_JOB_LOCK_MS`, default 30000: a job whose worker stops renewing its lock this long is taken over by another. */
  readonly jobLockMs: number;
  /** `LOVAGE_SMTP_POOL_SIZE`, default 10: connections per SMTP server per worker process; against a remote server it bounds the rate (connections ÷ round trip). */
  readonly smtpPoolSize: number;
  /** `LOVAGE_SMTP_TIMEOUT_MS`, default 30000: socket and greeting timeout per SMTP transaction. */
  readonly smtpTimeoutMs: number;
  /** `LOVAGE_MAX_UPLOAD_BYTES`, default 104857600 (100 MiB): largest uploaded recipients file. */
  readonly maxUploadBytes: number;
  /** `LOVAGE_MAX_BODY_BYTES`, default 10485760 (10 MiB): largest JSON request body. */
  readonly maxBodyBytes: number;
  /** `LOVAGE_SHUTDOWN_TIMEOUT_MS`, default 30000: how long SIGTERM waits for jobs in flight. */
  readonly shutdownTimeoutMs: number;
  /** `LOVAGE_LOG_LEVEL`, default `info`. */
  readonly logLevel: string;
  /** `LOVAGE_TASK_RESULT_RETENTION_MS`, default 86400000 (one day): how long a completed job and its result are kept. */
  readonly taskResultRetentionMs: number;
  /** `LOVAGE_TASK_ERROR_RETENTION_MS`, default 604800000 (seven days): how long a failed or cancelled job and its error are kept. */
  readonly taskErrorRetentionMs: number;
  /** `LOVAGE_FIGURES_RETENTION_DAYS`, default 30: how long the per-minute figures (charts) are kept. */
  readonly figuresRetentionDays: number;
  /**
   * `LOVAGE_METRICS_TOKEN`: when set, `GET /metrics` answers only with `Authorization: Bearer
   * <token>`; unset, it is open (as /healthz). At least 16 characters.
   */
  readonly metricsToken: string | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** A fully qualified host name, as EHLO wants it (RFC 5321 §4.1.1.1), ASCII. */
const HOST_NAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i;

export const DEFAULT_TASK_MODULES = ["lovage:examples/add/tasks.js"];

/** Reads and validates every setting; throws a ConfigError listing every problem at once. */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const text = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === "" ? undefined : value;
  };
  const integer = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name}: expected a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const url = (name: string, schemes: string[], example: string): string | undefined => {
    const raw = text(name);
    if (raw === undefined) return undefined;
    const problem = urlProblem(raw, schemes, example);
    if (problem === undefined) return raw;
    problems.push(`${name}: ${problem}`);
    return undefined;
  };
  const list = (name: string): string[] | undefined => {
    const raw = text(name);
    if (raw === undefined) return undefined;
    return raw
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  };

  const smtpUrls = splitUrls(text("LOVAGE_SMTP_URL") ?? "").filter((raw) => {
    const problem =
      urlProblem(raw, ["smtp", "smtps"], "smtp://user:pass@relay:587") ?? smtpParameterProblem(raw);
    if (problem !== undefined) problems.push(`LOVAGE_SMTP_URL: ${problem}`);
    return problem === undefined;
  });
  if (smtpUrls.length > 1) {
    try {
      parseSmtpServerUrls(smtpUrls);
    } catch (error) {
      problems.push(`LOVAGE_SMTP_URL: ${(error as Error).message}`);
    }
  }
  const publicUrl = url("LOVAGE_PUBLIC_URL", ["http", "https"], "https://mail.example.com");
  if (publicUrl !== undefined && /[?#]/.test(publicUrl)) {
    problems.push(`LOVAGE_PUBLIC_URL: expected no query or fragment, got "${publicUrl}"`);
  }
  const defaultFrom = text("LOVAGE_DEFAULT_FROM");
  if (defaultFrom !== undefined) {
    const parsed = parseMailbox(defaultFrom);
    if (!parsed.ok)
      problems.push(
        `LOVAGE_DEFAULT_FROM: expected an address or "Name <address>", got "${defaultFrom}": ${parsed.reason}`,
      );
  }
  const dkimDomain = text("LOVAGE_DKIM_DOMAIN");
  const dkimSelector = text("LOVAGE_DKIM_SELECTOR");
  const dkimKeyFile = text("LOVAGE_DKIM_KEY_FILE");
  const dkimGiven = [dkimDomain, dkimSelector, dkimKeyFile].filter((v) => v !== undefined).length;
  if (dkimGiven > 0 && dkimGiven < 3) {
    const missing = [
      ["LOVAGE_DKIM_DOMAIN", dkimDomain],
      ["LOVAGE_DKIM_SELECTOR", dkimSelector],
      ["LOVAGE_DKIM_KEY_FILE", dkimKeyFile],
    ]
      .filter(([, value]) => value === undefined)
      .map(([name]) => name);
    problems.push(
      `${missing.join(", ")}: DKIM signing needs the domain, the selector and the key file together`,
    );
  }
  if (dkimDomain !== undefined && !HOST_NAME.test(dkimDomain)) {
    problems.push(
      `LOVAGE_DKIM_DOMAIN: expected a domain such as example.com (ASCII; punycode for an IDN), got "${dkimDomain}"`,
    );
  }
  if (
    dkimSelector !== undefined &&
    !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(dkimSelector)
  ) {
    problems.push(
      `LOVAGE_DKIM_SELECTOR: expected letters, digits, "-" and dots, like lovage1, got "${dkimSelector}"`,
    );
  }
  const unsubscribeMailto = text("LOVAGE_UNSUBSCRIBE_MAILTO");
  if (unsubscribeMailto !== undefined) {
    const parsed = parseMailbox(unsubscribeMailto);
    if (!parsed.ok || parsed.mailbox.name !== "" || /[?&%]/.test(unsubscribeMailto))
      problems.push(
        `LOVAGE_UNSUBSCRIBE_MAILTO: expected a bare address like unsubscribe@example.com, got "${unsubscribeMailto}"`,
      );
    else if (publicUrl === undefined)
      problems.push(
        "LOVAGE_UNSUBSCRIBE_MAILTO: needs LOVAGE_PUBLIC_URL too (the mailto goes beside the one-click link)",
      );
  }
  const bounceAddress = text("LOVAGE_BOUNCE_ADDRESS");
  if (bounceAddress !== undefined) {
    const sample = bounceAddress.replace("{token}", "abcdefghijklmnopqrstuvwxyz");
    const parsed = parseMailbox(sample);
    if (
      !parsed.ok ||
      parsed.mailbox.name !== "" ||
      bounceAddress.split("{token}").length > 2 ||
      /[{}]/.test(sample)
    )
      problems.push(
        `LOVAGE_BOUNCE_ADDRESS: expected a bare address, optionally with one {token} in the local part (bounces+{token}@example.com), got "${bounceAddress}"`,
      );
    else if (
      bounceAddress.includes("{token}") &&
      bounceAddress.indexOf("{token}") > bounceAddress.lastIndexOf("@")
    )
      problems.push(
        `LOVAGE_BOUNCE_ADDRESS: {token} must be in the local part (before the @), got "${bounceAddress}"`,
      );
  }
  const sesWebhookSecret = text("LOVAGE_SES_WEBHOOK_SECRET");
  if (sesWebhookSecret !== undefined && !/^[\w-]{16,200}$/.test(sesWebhookSecret)) {
    problems.push(
      `LOVAGE_SES_WEBHOOK_SECRET: expected 16 to 200 letters, digits, "_" or "-" (it goes in a URL), got ${sesWebhookSecret.length} characters`,
    );
  }
  const ehloName = text("LOVAGE_SMTP_EHLO_NAME");
  if (ehloName !== undefined && !HOST_NAME.test(ehloName)) {
    problems.push(
      `LOVAGE_SMTP_EHLO_NAME: expected a host name such as mail.example.com (letters, digits, "-" and dots), got "${ehloName}"`,
    );
  }

  const logLevel = text("LOVAGE_LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOVAGE_LOG_LEVEL: expected one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  }
  const duration = (name: string, fallback: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    const match = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d)$/.exec(raw);
    const units: Record<string, number> = { s: 1_000, m: 60_000, min: 60_000, h: 3600_000, d: 86400_000 };
    const ms = match ? Number(match[1]) * units[match[2]!]! : NaN;
    if (!(ms >= 60_000) || ms > 30 * 86400_000) {
      problems.push(
        `${name}: expected a duration from 1m to 30d with a unit (like 24h, 90m, 2d), got "${raw}"`,
      );
      return fallback;
    }
    return ms;
  };
  let domainGroups: DomainGroup[] = [];
  try {
    domainGroups = parseDomainLimits(text("LOVAGE_DOMAIN_LIMITS"));
  } catch (error) {
    problems.push(`LOVAGE_DOMAIN_LIMITS: ${(error as Error).message}`);
  }
  let errorBudget: ErrorBudget | undefined = { share: 0.1, window: 200, minimum: 50 };
  const budgetRaw = text("LOVAGE_ERROR_BUDGET");
  if (budgetRaw !== undefined) {
    try {
      errorBudget = parseErrorBudgetText(budgetRaw) || undefined;
    } catch (error) {
      problems.push(`LOVAGE_ERROR_BUDGET: ${(error as Error).message}`);
    }
  }
  let smtpSuspendPattern = /^421[ -]4\.7\.28/;
  const suspendRaw = text("LOVAGE_SMTP_SUSPEND_PATTERN");
  if (suspendRaw !== undefined) {
    try {
      smtpSuspendPattern = new RegExp(suspendRaw, "i");
    } catch (error) {
      problems.push(`LOVAGE_SMTP_SUSPEND_PATTERN: not a regular expression: ${(error as Error).message}`);
    }
  }
  const maxAttemptsRaw = text("LOVAGE_MAX_ATTEMPTS");
  const jwtSecret = text("LOVAGE_JWT_SECRET");
  if (jwtSecret !== undefined && jwtSecret.length < 32) {
    problems.push(`LOVAGE_JWT_SECRET: expected at least 32 characters, got ${jwtSecret.length}`);
  }
  const adminPassword = text("LOVAGE_ADMIN_PASSWORD");
  if (adminPassword !== undefined && adminPassword.length < 8) {
    problems.push(`LOVAGE_ADMIN_PASSWORD: expected at least 8 characters, got ${adminPassword.length}`);
  }

  const metricsToken = text("LOVAGE_METRICS_TOKEN");
  if (metricsToken !== undefined && metricsToken.length < 16) {
    problems.push(`LOVAGE_METRICS_TOKEN: expected at least 16 characters, got ${metricsToken.length}`);
  }

  const config: Config = {
    dataDir: dataDirOf(env),
    databaseUrl: url("LOVAGE_DATABASE_URL", ["postgres", "postgresql"], "postgres://user@host:5432/lovage"),
    brokerUrl: url("LOVAGE_BROKER_URL", ["redis", "rediss"], "redis://127.0.0.1:6379"),
    smtpUrls,
    smtpCaFile: text("LOVAGE_SMTP_CA_FILE"),
    smtpEhloName: ehloName,
    publicUrl: publicUrl?.replace(/\/+$/, ""),
    defaultFrom,
    unsubscribeMailto,
    bounceAddress,
    bounceSmtpPort:
      text("LOVAGE_BOUNCE_SMTP_PORT") === undefined
        ? undefined
        : integer("LOVAGE_BOUNCE_SMTP_PORT", 0, 0, 65535),
    softBounceLimit: integer("LOVAGE_SOFT_BOUNCE_LIMIT", 3, 1, 100),
    sesWebhookSecret,
    dkim:
      dkimDomain && dkimSelector && dkimKeyFile
        ? { domain: dkimDomain, selector: dkimSelector, keyFile: dkimKeyFile }
        : undefined,
    host: text("LOVAGE_HOST") ?? "127.0.0.1",
    port: integer("PORT", 5000, 0, 65535),
    catcherPort: integer("LOVAGE_CATCHER_PORT", 2525, 0, 65535),
    jwtSecret,
    tokenTtlMs: integer("LOVAGE_TOKEN_TTL_MS", 12 * 60 * 60 * 1000, 60_000, 366 * 24 * 60 * 60 * 1000),
    adminPassword,
    taskModules: list("LOVAGE_TASKS") ?? DEFAULT_TASK_MODULES,
    concurrency: integer("LOVAGE_CONCURRENCY", 20, 1, 1000),
    queues: list("LOVAGE_QUEUES"),
    batchSize: integer("LOVAGE_BATCH_SIZE", 50, 1, 10_000),
    maxAttempts: maxAttemptsRaw === undefined ? undefined : integer("LOVAGE_MAX_ATTEMPTS", 5, 1, 1000),
    retryBaseMs: integer("LOVAGE_RETRY_BASE_MS", 10_000, 0),
    retryMaxAgeMs: duration("LOVAGE_RETRY_MAX_AGE", 24 * 3600_000),
    domainGroups,
    errorBudget,
    smtpSuspendPattern,
    smtpSuspendMs: integer("LOVAGE_SMTP_SUSPEND_MS", 600_000, 1_000),
    leaseMs: integer("LOVAGE_LEASE_MS", 120_000, 1_000),
    jobLockMs: integer("LOVAGE_JOB_LOCK_MS", 30_000, 1_000),
    smtpPoolSize: integer("LOVAGE_SMTP_POOL_SIZE", 10, 1, 100),
    smtpTimeoutMs: integer("LOVAGE_SMTP_TIMEOUT_MS", 30_000, 100),
    maxUploadBytes: integer("LOVAGE_MAX_UPLOAD_BYTES", 100 * 1024 * 1024, 1024),
    maxBodyBytes: integer("LOVAGE_MAX_BODY_BYTES", 10 * 1024 * 1024, 1024),
    shutdownTimeoutMs: integer("LOVAGE_SHUTDOWN_TIMEOUT_MS", 30_000, 0),
    logLevel,
    taskResultRetentionMs: integer(
      "LOVAGE_TASK_RESULT_RETENTION_MS",
      24 * 3600_000,
      1_000,
      366 * 24 * 3600_000,
    ),
    taskErrorRetentionMs: integer(
      "LOVAGE_TASK_ERROR_RETENTION_MS",
      7 * 24 * 3600_000,
      1_000,
      366 * 24 * 3600_000,
    ),
    figuresRetentionDays: integer("LOVAGE_FIGURES_RETENTION_DAYS", 30, 1, 3660),
    metricsToken,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    ...config,
    smtpUrls: Object.freeze([...config.smtpUrls]),
    taskModules: Object.freeze([...config.taskModules]),
    domainGroups: Object.freeze([...config.domainGroups]),
    queues: config.queues && Object.freeze([...config.queues]),
    dkim: config.dkim && Object.freeze({ ...config.dkim }),
  });
}

export function topologyOf(config: Pick<Config, "databaseUrl" | "brokerUrl">): Topology {
  return config.databaseUrl === undefined ? "embedded" : "distributed";
}

/** `LOVAGE_DATA_DIR` as an absolute path; the CLI reads it alone to find the admin password file. */
export function dataDirOf(env: Env): string {
  return resolve(env.LOVAGE_DATA_DIR?.trim() || "./data");
}

/**
 * Why a URL setting is refused, or undefined if it is fine. Beyond the scheme, its user name and
 * password must read the same to WHATWG URL (which pg, ioredis and Lovage use) as to a reader
 * who splits at the last `@`: otherwise an unencoded `/`, `?` or `#` would silently move the
 * host into the password, or the password into the path. See docs/secrets.md.
 */
function urlProblem(raw: string, schemes: string[], example: string): string | undefined {
  const got = `got "${redactUrl(raw)}"`;
  const expected = `expected ${schemes.map((s) => `${s}://`).join(" or ")} (like ${example}), ${got}`;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1]?.toLowerCase();
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    const hasUserinfo = urlUsername(raw) !== undefined || urlPassword(raw) !== undefined;
    if (scheme === undefined || !schemes.includes(scheme) || !hasUserinfo) return expected;
    return `not a valid URL (a /, ?, #, % or space in the user name or password must be percent-encoded: %2F, %3F, %23, %25, %20), ${got}`;
  }
  if (!schemes.includes(parsed.protocol.replace(/:$/, ""))) return expected;
  // pg re-encodes a whole URL that holds a space, which turns a %2F in the password into a
  // literal "%2F": the password would then depend on the reader.
  if (`${urlUsername(raw) ?? ""}:${urlPassword(raw) ?? ""}`.includes(" ")) {
    return `the user name or password holds a space: percent-encode it (%20), ${got}`;
  }
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(parsed.username);
    password = decodeURIComponent(parsed.password);
  } catch {
    return `the user name or password holds a % that starts no %XX escape (write a % as %25), ${got}`;
  }
  if (
    username !== decodePercent(urlUsername(raw) ?? "") ||
    password !== decodePercent(urlPassword(raw) ?? "")
  ) {
    return `the user name or password holds a / ? or # that ends the address: percent-encode it (%2F, %3F, %23), ${got}`;
  }
  return undefined;
}

/** Why an SMTP URL's parameters are refused (smtp-server-url.ts), naming the server, or undefined. */
function smtpParameterProblem(raw: string): string | undefined {
  try {
    parseSmtpServerUrl(raw);
    return undefined;
  } catch (error) {
    return `server "${redactUrl(raw)}": ${(error as Error).message}`;
  }
}

/**
 * Splits a comma-separated list of URLs. A piece that does not start with a scheme belongs to
 * the URL before it: a password may hold a comma.
 */
function splitUrls(raw: string): string[] {
  const urls: string[] = [];
  for (const piece of raw.split(",")) {
    if (piece.trim() === "") continue;
    const last = urls.length - 1;
    if (last >= 0 && !/^\s*[a-z][a-z0-9+.-]*:\/\//i.test(piece)) urls[last] += `,${piece}`;
    else urls.push(piece);
  }
  return urls.map((url) => url.trim());
}

/**
 * The secrets the settings in `env` hold, for redaction: the passwords of the URL settings and
 * the secret values, including the CLI's own (LOVAGE_URL, LOVAGE_PASSWORD, LOVAGE_TOKEN). It
 * reads the raw values, so it works on settings loadConfig refuses.
 */
export function secretsInEnv(env: Env): Secrets {
  const smtp = env.LOVAGE_SMTP_URL?.trim();
  return {
    urls: [
      env.LOVAGE_DATABASE_URL?.trim(),
      env.LOVAGE_BROKER_URL?.trim(),
      smtp,
      ...splitUrls(smtp ?? ""),
      env.LOVAGE_URL?.trim(),
    ],
    values: [
      env.LOVAGE_ADMIN_PASSWORD?.trim(),
      env.LOVAGE_JWT_SECRET?.trim(),
      env.LOVAGE_PASSWORD?.trim(),
      env.LOVAGE_TOKEN?.trim(),
      env.LOVAGE_METRICS_TOKEN?.trim(),
      env.LOVAGE_SES_WEBHOOK_SECRET?.trim(),
    ],
  };
}

/** The secrets a loaded configuration holds, for the logger's redaction. */
export function secretsInConfig(
  config: Pick<Config, "databaseUrl" | "brokerUrl" | "smtpUrls" | "jwtSecret" | "adminPassword"> &
    Partial<Pick<Config, "metricsToken" | "sesWebhookSecret">>,
): Secrets {
  return {
    urls: [config.databaseUrl, config.brokerUrl, ...config.smtpUrls],
    values: [config.jwtSecret, config.adminPassword, config.metricsToken, config.sesWebhookSecret],
  };
}
