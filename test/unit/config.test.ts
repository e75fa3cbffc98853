import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, secretsInEnv, topologyOf } from "../../src/config.js";
import { parseDomainLimits } from "../../src/mail/rate-limits.js";
import { createRedactor } from "../../src/redact.js";

/** The problems loadConfig reports for `env`; fails the test if it accepted the settings. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error(`expected loadConfig to refuse ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("gives every setting its documented default when the environment is empty", () => {
    const config = loadConfig({});
    expect(config).toEqual({
      dataDir: resolve("./data"),
      databaseUrl: undefined,
      brokerUrl: undefined,
      smtpUrls: [],
      smtpCaFile: undefined,
      smtpEhloName: undefined,
      publicUrl: undefined,
      defaultFrom: undefined,
      unsubscribeMailto: undefined,
      bounceAddress: undefined,
      bounceSmtpPort: undefined,
      softBounceLimit: 3,
      sesWebhookSecret: undefined,
      dkim: undefined,
      host: "127.0.0.1",
      port: 5000,
      catcherPort: 2525,
      jwtSecret: undefined,
      tokenTtlMs: 43_200_000,
      adminPassword: undefined,
      taskModules: ["lovage:examples/add/tasks.js"],
      concurrency: 20,
      queues: undefined,
      batchSize: 50,
      maxAttempts: undefined,
      retryBaseMs: 10_000,
      retryMaxAgeMs: 24 * 3600_000,
      domainGroups: parseDomainLimits(undefined),
      errorBudget: { share: 0.1, window: 200, minimum: 50 },
      smtpSuspendPattern: /^421[ -]4\.7\.28/,
      smtpSuspendMs: 600_000,
      leaseMs: 120_000,
      jobLockMs: 30_000,
      smtpPoolSize: 10,
      smtpTimeoutMs: 30_000,
      maxUploadBytes: 100 * 1024 * 1024,
      maxBodyBytes: 10 * 1024 * 1024,
      shutdownTimeoutMs: 30_000,
      logLevel: "info",
      taskResultRetentionMs: 24 * 3600_000,
      taskErrorRetentionMs: 7 * 24 * 3600_000,
      figuresRetentionDays: 30,
      metricsToken: undefined,
    });
    expect(topologyOf(config)).toBe("embedded");
  });

  it("treats empty and blank values as unset", () => {
    const config = loadConfig({ PORT: "", LOVAGE_BROKER_URL: "   ", LOVAGE_LOG_LEVEL: "", LOVAGE_TASKS: "" });
    expect(config.port).toBe(5000);
    expect(config.brokerUrl).toBeUndefined();
    expect(config.logLevel).toBe("info");
    expect(config.taskModules).toEqual(["lovage:examples/add/tasks.js"]);
  });

  it("reads valid settings, trimming values and splitting lists on commas", () => {
    const config = loadConfig({
      LOVAGE_DATA_DIR: "/var/lib/lovage",
      LOVAGE_DATABASE_URL: "postgres://lovage:s3cret@db:5432/lovage",
      LOVAGE_BROKER_URL: " rediss://:pw@cache:6380/2 ",
      LOVAGE_SMTP_URL: "smtp://relay1:25, smtps://user:pw@relay2:465,",
      LOVAGE_HOST: "0.0.0.0",
      PORT: "0",
      LOVAGE_CATCHER_PORT: "0",
      LOVAGE_JWT_SECRET: "x".repeat(32),
      LOVAGE_ADMIN_PASSWORD: "correct horse",
      LOVAGE_TASKS: "./tasks/a.js, ./tasks/b.js",
      LOVAGE_CONCURRENCY: "25",
      LOVAGE_QUEUES: "email,default",
      LOVAGE_BATCH_SIZE: "100",
      LOVAGE_MAX_ATTEMPTS: "3",
      LOVAGE_RETRY_BASE_MS: "0",
      LOVAGE_RETRY_MAX_AGE: "90m",
      LOVAGE_ERROR_BUDGET: "5%/100/20",
      LOVAGE_LEASE_MS: "60000",
      LOVAGE_JOB_LOCK_MS: "5000",
      LOVAGE_SMTP_POOL_SIZE: "2",
      LOVAGE_SMTP_TIMEOUT_MS: "5000",
      LOVAGE_MAX_UPLOAD_BYTES: "2048",
      LOVAGE_MAX_BODY_BYTES: "1024",
      LOVAGE_SHUTDOWN_TIMEOUT_MS: "0",
      LOVAGE_LOG_LEVEL: "debug",
    });
    expect(config).toMatchObject({
      dataDir: "/var/lib/lovage",
      databaseUrl: "postgres://lovage:s3cret@db:5432/lovage",
      brokerUrl: "rediss://:pw@cache:6380/2",
      smtpUrls: ["smtp://relay1:25", "smtps://user:pw@relay2:465"],
      host: "0.0.0.0",
      port: 0,
      catcherPort: 0,
      taskModules: ["./tasks/a.js", "./tasks/b.js"],
      concurrency: 25,
      queues: ["email", "default"],
      batchSize: 100,
      maxAttempts: 3,
      retryBaseMs: 0,
      retryMaxAgeMs: 90 * 60_000,
      errorBudget: { share: 0.05, window: 100, minimum: 20 },
      leaseMs: 60_000,
      jobLockMs: 5_000,
      smtpPoolSize: 2,
      smtpTimeoutMs: 5_000,
      maxUploadBytes: 2048,
      maxBodyBytes: 1024,
      shutdownTimeoutMs: 0,
      logLevel: "debug",
    });
    expect(topologyOf(config)).toBe("distributed");
  });

  it("names the setting, what was expected and what it got for a broker URL that is not Redis", () => {
    expect(problemsOf({ LOVAGE_BROKER_URL: "http://cache:6379" })).toEqual([
      'LOVAGE_BROKER_URL: expected redis:// or rediss:// (like redis://127.0.0.1:6379), got "http://cache:6379"',
    ]);
  });

  const badSettings: [name: string, value: string, expected: RegExp][] = [
    ["LOVAGE_DATABASE_URL", "mysql://db/lovage", /expected postgres:\/\/ or postgresql:\/\//],
    ["LOVAGE_DATABASE_URL", "not a url", /expected postgres:\/\/ or postgresql:\/\//],
    ["LOVAGE_BROKER_URL", "cache:6379", /expected redis:\/\/ or rediss:\/\//],
    ["LOVAGE_SMTP_URL", "http://relay:25", /expected smtp:\/\/ or smtps:\/\//],
    ["PORT", "abc", /expected a whole number from 0 to 65535/],
    ["PORT", "70000", /expected a whole number from 0 to 65535/],
    ["LOVAGE_CATCHER_PORT", "-1", /expected a whole number from 0 to 65535/],
    ["LOVAGE_CONCURRENCY", "0", /expected a whole number from 1 to 1000/],
    ["LOVAGE_BATCH_SIZE", "1.5", /expected a whole number from 1 to 10000/],
    ["LOVAGE_MAX_ATTEMPTS", "1001", /expected a whole number from 1 to 1000/],
    ["LOVAGE_RETRY_MAX_AGE", "24", /expected a duration from 1m to 30d with a unit/],
    ["LOVAGE_RETRY_MAX_AGE", "31d", /expected a duration from 1m to 30d/],
    ["LOVAGE_DOMAIN_LIMITS", "google:fast", /"fast" is not a limit/],
    ["LOVAGE_ERROR_BUDGET", "10/200/50", /expected share%\/window\/minimum/],
    ["LOVAGE_SMTP_SUSPEND_PATTERN", "(unclosed", /not a regular expression/],
    ["LOVAGE_RETRY_BASE_MS", "-5", /expected a whole number from 0 to/],
    ["LOVAGE_LEASE_MS", "999", /expected a whole number from 1000 to/],
    ["LOVAGE_JOB_LOCK_MS", "500", /expected a whole number from 1000 to/],
    ["LOVAGE_SMTP_POOL_SIZE", "many", /expected a whole number from 1 to 100/],
    ["LOVAGE_SMTP_TIMEOUT_MS", "10", /expected a whole number from 100 to/],
    ["LOVAGE_MAX_UPLOAD_BYTES", "100", /expected a whole number from 1024 to/],
    ["LOVAGE_MAX_BODY_BYTES", "10MB", /expected a whole number from 1024 to/],
    ["LOVAGE_SHUTDOWN_TIMEOUT_MS", "soon", /expected a whole number from 0 to/],
    ["LOVAGE_TASK_RESULT_RETENTION_MS", "10", /expected a whole number from 1000 to 31622400000/],
    ["LOVAGE_TASK_ERROR_RETENTION_MS", "a week", /expected a whole number from 1000 to 31622400000/],
    ["LOVAGE_LOG_LEVEL", "loud", /expected one of fatal, error, warn, info, debug, trace, silent/],
    ["LOVAGE_JWT_SECRET", "too-short", /expected at least 32 characters/],
    ["LOVAGE_ADMIN_PASSWORD", "short", /expected at least 8 characters/],
  ];

  it.each(badSettings)(
    "refuses %s=%j with one line naming it and what was expected",
    (name, value, expected) => {
      const problems = problemsOf({ [name]: value });
      expect(problems).toHaveLength(1);
      const [line] = problems;
      expect(line).not.toContain("\n");
      expect(line?.startsWith(`${name}: `)).toBe(true);
      expect(line).toMatch(expected);
    },
  );

  it("reports every problem at once, one line each, in the error message too", () => {
    let caught: unknown;
    try {
      loadConfig({
        LOVAGE_BROKER_URL: "http://cache:6379",
        PORT: "abc",
        LOVAGE_CONCURRENCY: "0",
        LOVAGE_LOG_LEVEL: "loud",
        LOVAGE_SMTP_URL: "smtp://ok:25,ftp://relay",
      });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const { problems, message } = caught as ConfigError;
    expect(problems.map((p) => p.split(":")[0]).sort()).toEqual([
      "LOVAGE_BROKER_URL",
      "LOVAGE_CONCURRENCY",
      "LOVAGE_LOG_LEVEL",
      "LOVAGE_SMTP_URL",
      "PORT",
    ]);
    expect(message.split("\n")).toEqual(problems);
  });

  it("reports each bad SMTP URL of a list on its own line", () => {
    const problems = problemsOf({ LOVAGE_SMTP_URL: "smtp://ok:25, http://a, ftp://b" });
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^LOVAGE_SMTP_URL: .*got "http:\/\/a/);
    expect(problems[1]).toMatch(/^LOVAGE_SMTP_URL: .*got "ftp:\/\/b/);
  });

  it("redacts the password of a database URL it refuses", () => {
    const problems = problemsOf({ LOVAGE_DATABASE_URL: "mysql://lovage:hunter2-secret@db:3306/lovage" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^LOVAGE_DATABASE_URL: /);
    expect(problems[0]).toContain("lovage:***@db");
    expect(problems[0]).not.toContain("hunter2-secret");
  });

  it("redacts the password of a URL that cannot even be parsed", () => {
    const problems = problemsOf({ LOVAGE_DATABASE_URL: "postgres://lovage:hunter2-secret@db:port/lovage" });
    expect(problems[0]).toMatch(/^LOVAGE_DATABASE_URL: /);
    expect(problems[0]).not.toContain("hunter2-secret");
  });

  it("redacts the password of a database URL written without its scheme", () => {
    const problems = problemsOf({ LOVAGE_DATABASE_URL: "lovage:hunter2-secret@db:5432/lovage" });
    expect(problems[0]).toMatch(/^LOVAGE_DATABASE_URL: /);
    expect(problems[0]).not.toContain("hunter2-secret");
  });

  it("redacts passwords in broker and SMTP URLs it refuses", () => {
    const problems = problemsOf({
      LOVAGE_BROKER_URL: "http://:broker-secret@cache:6379",
      LOVAGE_SMTP_URL: "http://user:smtp-secret@relay:25",
    });
    expect(problems).toHaveLength(2);
    expect(problems.join("\n")).not.toMatch(/broker-secret|smtp-secret/);
  });

  it("names the server and the parameter of a bad SMTP URL parameter, with its password redacted", () => {
    const problems = problemsOf({
      LOVAGE_SMTP_URL: "smtp://ok:25, smtp://user:smtp-secret@relay:587?tls=sometimes",
    });
    expect(problems).toEqual([
      'LOVAGE_SMTP_URL: server "smtp://user:***@relay:587?tls=sometimes": tls: expected required, none or opportunistic, got "sometimes"',
    ]);
    expect(problemsOf({ LOVAGE_SMTP_URL: "smtp://relay:25?starttls=require" })[0]).toMatch(
      /^LOVAGE_SMTP_URL: server "smtp:\/\/relay:25\?starttls=require": unknown parameter "starttls"/,
    );
    expect(problemsOf({ LOVAGE_SMTP_URL: "smtp://a:25?name=x,smtp://b:25?name=x" })).toEqual([
      'LOVAGE_SMTP_URL: two servers are named "x": give each a distinct name=',
    ]);
  });

  it("reads the TLS, EHLO and public URL settings, and refuses bad ones by name", () => {
    const config = loadConfig({
      LOVAGE_SMTP_URL: "smtp://relay:587?tls=required",
      LOVAGE_SMTP_CA_FILE: "/etc/lovage/ca.pem",
      LOVAGE_SMTP_EHLO_NAME: "mail.example.com",
      LOVAGE_PUBLIC_URL: "https://lists.example.com/",
    });
    expect(config).toMatchObject({
      smtpCaFile: "/etc/lovage/ca.pem",
      smtpEhloName: "mail.example.com",
      publicUrl: "https://lists.example.com",
    });
    expect(problemsOf({ LOVAGE_SMTP_EHLO_NAME: "localhost", LOVAGE_PUBLIC_URL: "ftp://x" })).toEqual([
      expect.stringMatching(/^LOVAGE_PUBLIC_URL: expected http:\/\/ or https:\/\//),
      expect.stringMatching(/^LOVAGE_SMTP_EHLO_NAME: expected a host name such as mail\.example\.com/),
    ]);
  });

  it("reads DKIM settings together and names the missing ones", () => {
    const dkim = {
      LOVAGE_DKIM_DOMAIN: "shop.example",
      LOVAGE_DKIM_SELECTOR: "lovage1",
      LOVAGE_DKIM_KEY_FILE: "/k.pem",
    };
    expect(loadConfig(dkim).dkim).toEqual({ domain: "shop.example", selector: "lovage1", keyFile: "/k.pem" });
    expect(problemsOf({ LOVAGE_DKIM_DOMAIN: "shop.example" })).toEqual([
      "LOVAGE_DKIM_SELECTOR, LOVAGE_DKIM_KEY_FILE: DKIM signing needs the domain, the selector and the key file together",
    ]);
    expect(problemsOf({ ...dkim, LOVAGE_DKIM_SELECTOR: "a b" })[0]).toMatch(/^LOVAGE_DKIM_SELECTOR: /);
    expect(problemsOf({ LOVAGE_DEFAULT_FROM: "News <news@localhost>" })[0]).toMatch(
      /^LOVAGE_DEFAULT_FROM: expected an address or "Name <address>"/,
    );
    expect(loadConfig({ LOVAGE_DEFAULT_FROM: "Tin tức: Shop <news@shop.example>" }).defaultFrom).toBe(
      "Tin tức: Shop <news@shop.example>",
    );
  });

  it("never echoes a short JWT secret or admin password, only their length", () => {
    const problems = problemsOf({ LOVAGE_JWT_SECRET: "tiny-jwt", LOVAGE_ADMIN_PASSWORD: "pw12" });
    expect(problems).toEqual([
      "LOVAGE_JWT_SECRET: expected at least 32 characters, got 8",
      "LOVAGE_ADMIN_PASSWORD: expected at least 8 characters, got 4",
    ]);
  });

  it("returns a frozen object", () => {
    const config = loadConfig({ PORT: "8080" });
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(config.port).toBe(8080);
  });

  it("freezes its lists too, so one caller cannot change another's settings", () => {
    const config = loadConfig({ LOVAGE_SMTP_URL: "smtp://relay:25", LOVAGE_QUEUES: "email" });
    expect(Object.isFrozen(config.smtpUrls)).toBe(true);
    expect(Object.isFrozen(config.queues)).toBe(true);
    expect(Object.isFrozen(loadConfig({}).taskModules)).toBe(true);
  });

  it.each([
    ["LOVAGE_DATABASE_URL", "postgres://lovage:k3y/word-secret@db:5432/lovage", /not a valid URL.*%2F/],
    ["LOVAGE_DATABASE_URL", "postgres://lovage:12#word-secret@db:5432/lovage", /ends the address.*%23/],
    ["LOVAGE_BROKER_URL", "redis://:k3y?word-secret@cache:6379", /not a valid URL.*%3F/],
    ["LOVAGE_BROKER_URL", "redis://:100%word-secret@cache:6379", /% that starts no %XX escape.*%25/],
    ["LOVAGE_SMTP_URL", "smtp://user:k3y/word-secret@relay:25", /not a valid URL.*%2F/],
    ["LOVAGE_DATABASE_URL", "postgres://lovage:k3y word-secret@db/lovage", /holds a space.*%20/],
  ])(
    "refuses %s=%j, whose password would be misread, saying what to encode and not echoing it",
    (name, value, expected) => {
      const problems = problemsOf({ [name]: value });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^${name}: `));
      expect(problems[0]).toMatch(expected);
      expect(problems[0]).not.toMatch(/word-secret|k3y|12#|100%/);
    },
  );

  it("accepts an unencoded @ or : in a password: every reader splits them the same way", () => {
    const config = loadConfig({
      LOVAGE_DATABASE_URL: "postgres://lovage:p@ss:w%20rd@db:5432/lovage",
      LOVAGE_BROKER_URL: "redis://:p@ss@cache:6379",
    });
    expect(new URL(config.databaseUrl!).hostname).toBe("db");
    expect(decodeURIComponent(new URL(config.databaseUrl!).password)).toBe("p@ss:w rd");
    expect(new URL(config.brokerUrl!).hostname).toBe("cache");
  });

  it("keeps an SMTP URL whose password holds a comma whole", () => {
    const config = loadConfig({ LOVAGE_SMTP_URL: "smtp://u:a,b@relay1:25, smtps://relay2:465" });
    expect(config.smtpUrls).toEqual(["smtp://u:a,b@relay1:25", "smtps://relay2:465"]);
  });

  it("lists every secret of the settings, so that a redactor hides each one", () => {
    const env = {
      LOVAGE_DATABASE_URL: `postgres://u:${encodeURIComponent("db/secret@1")}@db/lovage`,
      LOVAGE_BROKER_URL: "redis://:broker-secret@cache:6379",
      LOVAGE_SMTP_URL: "smtp://u:smtp-secret-1@relay1:25,smtp://u:smtp-secret-2@relay2:25",
      LOVAGE_ADMIN_PASSWORD: "admin-secret",
      LOVAGE_JWT_SECRET: "jwt-secret-of-at-least-32-characters",
      LOVAGE_URL: "http://u:url-secret@127.0.0.1:5000",
      LOVAGE_PASSWORD: "cli-secret",
      LOVAGE_TOKEN: "token-secret",
    };
    const redact = createRedactor(secretsInEnv(env));
    const text = [
      "db/secret@1",
      "broker-secret",
      "smtp-secret-1",
      "smtp-secret-2",
      ...Object.values(env).slice(3),
    ].join(" | ");
    expect(redact(text).replace(/http:\/\/u:\*\*\*@127\.0\.0\.1:5000/, "***")).toBe(
      Array(9).fill("***").join(" | "),
    );
  });

  it("does not read process.env", () => {
    const saved = process.env.PORT;
    process.env.PORT = "1234";
    try {
      expect(loadConfig({}).port).toBe(5000);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  it("reads the monitor's settings and names a bad one", () => {
    const config = loadConfig({
      LOVAGE_FIGURES_RETENTION_DAYS: "7",
      LOVAGE_METRICS_TOKEN: "a-scraper-token-123",
    });
    expect([config.figuresRetentionDays, config.metricsToken]).toEqual([7, "a-scraper-token-123"]);
    expect(secretsInEnv({ LOVAGE_METRICS_TOKEN: "a-scraper-token-123" }).values).toContain(
      "a-scraper-token-123",
    );
    const problems = problemsOf({ LOVAGE_FIGURES_RETENTION_DAYS: "0", LOVAGE_METRICS_TOKEN: "short" });
    expect(problems.some((p) => p.startsWith("LOVAGE_FIGURES_RETENTION_DAYS:"))).toBe(true);
    expect(problems).toContain("LOVAGE_METRICS_TOKEN: expected at least 16 characters, got 5");
  });
});
