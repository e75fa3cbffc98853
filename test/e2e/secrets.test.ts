/**
 * No command prints a secret: `start`, `api`, `worker`, `migrate` and `send` run as real
 * processes with secrets holding `/`, `@`, `:`, `%` and spaces in every setting that holds one
 * (database, broker and SMTP URLs, the admin password, the JWT secret, the CLI's URL, password
 * and token), in normal runs and in runs that fail (a bad setting, an unreachable host, a
 * wrong password, a missing database), at the most talkative log level. Each secret is made of
 * alphanumeric pieces joined by those characters; a piece survives every encoding (percent,
 * JSON, WHATWG's), so finding none of them in any output means no form of the secret leaked,
 * not even the part after an `@`.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../helpers/backends.js";
import { CLI, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { freePort, startRedisServer, type RedisServer } from "../helpers/services.js";

interface Secret {
  value: string;
  pieces: string[];
}

const secrets: Secret[] = [];

/** A secret for `tag`: six unique alphanumeric pieces joined by `/`, `@`, `:`, `%41` and a space. */
function secret(tag: string): Secret {
  const pieces = ["Qx1", "Wz2", "Ek3", "Rv4", "Ty5", "Um6"].map((piece) => `${tag}${piece}`);
  const [a, b, c, d, e, f] = pieces;
  const made = { value: `${a}/${b}@${c}:${d}%41${e} ${f}`, pieces };
  secrets.push(made);
  return made;
}

const DB = secret("dbpw");
const BROKER = secret("brokerpw");
const WRONG_BROKER = secret("wrongbroker");
const SMTP = secret("smtppw");
const WRONG_SMTP = secret("wrongsmtp");
const ADMIN = secret("adminpw");
const WRONG_ADMIN = secret("wrongadmin");
const JWT = secret("jwtsecret");
const TOKEN = secret("tokensecret");
const URL_SECRET = secret("urlpw");

const enc = encodeURIComponent;

/** The pieces of any secret found in `output`, with what surrounds them, to read in a failure. */
function leaks(output: string): string[] {
  const found: string[] = [];
  for (const { pieces } of secrets) {
    for (const piece of pieces) {
      const at = output.indexOf(piece);
      if (at >= 0) found.push(`${piece} in …${output.slice(Math.max(0, at - 80), at + 80)}…`);
    }
  }
  // AUTH PLAIN and LOGIN send the credentials in base64, which no piece survives.
  for (const [user, { value }] of [
    ["mailer", SMTP],
    ["mailer", WRONG_SMTP],
  ] as const) {
    for (const encoded of [
      Buffer.from(`\0${user}\0${value}`).toString("base64"),
      Buffer.from(value).toString("base64"),
    ]) {
      if (output.includes(encoded)) found.push(`base64 of the ${user} password`);
    }
  }
  return found;
}

interface Run {
  code: number | null;
  output: string;
}

/** The environment without any Lovage setting of the machine running the tests. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("LOVAGE_") && key !== "PORT") env[key] = value;
  }
  return { ...env, LOVAGE_LOG_LEVEL: "trace", ...extra };
}

/** Runs a command to its end; stdout and stderr together. */
function lovage(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env, timeout: timeoutMs, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, output: `${stdout}\n${stderr}` });
      },
    );
  });
}

/** An SMTP server that takes only user `mailer` with the SMTP secret, as a relay would. */
async function startAuthSmtpServer(): Promise<{ url: (password: string) => string; close(): Promise<void> }> {
  const server = new SMTPServer({
    disabledCommands: ["STARTTLS"],
    allowInsecureAuth: true,
    authMethods: ["PLAIN", "LOGIN"],
    logger: false,
    disableReverseLookup: true,
    onAuth(auth, _session, callback) {
      if (auth.username === "mailer" && auth.password === SMTP.value) callback(null, { user: "mailer" });
      else callback(Object.assign(new Error("Authentication failed"), { responseCode: 535 }));
    },
    onData(stream, _session, callback) {
      stream.resume();
      stream.on("end", () => callback());
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: (password) => `smtp://mailer:${enc(password)}@127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("secrets in settings", () => {
  let database: { url: string; drop(): Promise<void> };
  let redis: RedisServer;
  let smtp: Awaited<ReturnType<typeof startAuthSmtpServer>>;
  let workDir: string;
  let list: string;
  let closedPort: number;
  /** LOVAGE_DATABASE_URL with the database password, percent-encoded as a URL must hold it. */
  let databaseUrl: string;
  let brokerUrl: string;
  const running: LovageProcess[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    databaseUrl = database.url.replace("//postgres@", `//postgres:${enc(DB.value)}@`);
    redis = await startRedisServer();
    const admin = new Redis(redis.url);
    await admin.config("SET", "requirepass", BROKER.value);
    admin.disconnect();
    brokerUrl = redis.url.replace("//", `//:${enc(BROKER.value)}@`);
    smtp = await startAuthSmtpServer();
    closedPort = await freePort();
    workDir = mkdtempSync(join(tmpdir(), "lovage-secrets-"));
    list = join(workDir, "list.csv");
    writeFileSync(list, "email,name\nann@example.com,Ann\nbob@example.com,Bob\n");
  }, 120_000);

  afterAll(async () => {
    await Promise.all(running.map((process) => process.dispose()));
    await smtp?.close();
    await redis?.stop();
    await database?.drop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  /** Every secret at once, in the settings where a distributed Lovage holds them. */
  const distributed = (extra: Record<string, string> = {}) => ({
    LOVAGE_DATABASE_URL: databaseUrl,
    LOVAGE_BROKER_URL: brokerUrl,
    LOVAGE_SMTP_URL: smtp.url(SMTP.value),
    LOVAGE_ADMIN_PASSWORD: ADMIN.value,
    LOVAGE_JWT_SECRET: JWT.value,
    LOVAGE_LOG_LEVEL: "trace",
    LOVAGE_SMTP_TIMEOUT_MS: "2000",
    LOVAGE_DEFAULT_FROM: "Lovage test <lovage@example.com>",
    ...extra,
  });

  async function started(command: string, env: Record<string, string>): Promise<LovageProcess> {
    const process = await startLovage({ command, env });
    running.push(process);
    return process;
  }

  it("migrate, api, worker and send print none of them in a normal run", async () => {
    const migrate = await lovage(["migrate"], cleanEnv(distributed()));
    expect(migrate.code, migrate.output).toBe(0);
    expect(leaks(migrate.output)).toEqual([]);

    const api = await started("api", distributed());
    const worker = await started("worker", distributed());
    const send = await lovage(
      ["send", "--file", list, "--subject", "Hi {{name}}", "--text", "Hello"],
      cleanEnv({ LOVAGE_URL: api.url, LOVAGE_PASSWORD: ADMIN.value }),
    );
    expect(send.code, send.output).toBe(0);
    expect(send.output).toMatch(/Campaign \d+ completed/);

    const stopped = await Promise.all([worker.stop(), api.stop()]);
    expect(stopped).toEqual([0, 0]);
    expect(leaks(send.output)).toEqual([]);
    expect(leaks(api.output())).toEqual([]);
    expect(leaks(worker.output())).toEqual([]);
  }, 180_000);

  it("start prints none of them with an unencoded @ in the database password, a wrong SMTP password and an unreachable relay", async () => {
    const env: Record<string, string> = distributed({
      // As a user may write it: "/", "%" and the space encoded, the "@" and ":" as they are.
      LOVAGE_DATABASE_URL: database.url.replace(
        "//postgres@",
        `//postgres:${DB.value.replace(/%/g, "%25").replace(/\//g, "%2F").replace(/ /g, "%20")}@`,
      ),
      LOVAGE_SMTP_URL: `${smtp.url(WRONG_SMTP.value)},smtp://mailer:${enc(SMTP.value)}@127.0.0.1:${closedPort}`,
      LOVAGE_MAX_ATTEMPTS: "2",
      LOVAGE_RETRY_BASE_MS: "0",
    });
    // The broker on the database: BullMQ gets the database URL too.
    delete env.LOVAGE_BROKER_URL;
    const start = await started("start", env);
    const send = await lovage(
      ["send", "--file", list, "--subject", "Hi", "--text", "Hello", "--no-follow"],
      cleanEnv({ LOVAGE_URL: start.url, LOVAGE_PASSWORD: ADMIN.value }),
      120_000,
    );
    expect(send.code, send.output).toBe(0);
    // Nothing can be delivered: one relay refuses the login, the other does not answer. Both are
    // taken out (the recipients wait, docs/pace.md), which /readyz reports once the worker has
    // tried them: by then every error about them has been logged.
    await waitFor(
      async () => {
        const ready = (await (await fetch(`${start.url}/readyz`)).json()) as { smtp?: string };
        return ready.smtp === "down";
      },
      { timeoutMs: 90_000, message: "both relays out" },
    );
    expect(await start.stop()).toBe(0);
    expect(leaks(send.output)).toEqual([]);
    expect(leaks(start.output())).toEqual([]);
  }, 180_000);

  it("send prints none of them when the password, the token or the URL is wrong", async () => {
    const api = await started("api", distributed());
    const runs = await Promise.all([
      lovage(
        ["send", "--file", list, "--subject", "x", "--text", "x"],
        cleanEnv({ LOVAGE_URL: api.url, LOVAGE_PASSWORD: WRONG_ADMIN.value }),
      ),
      lovage(
        [
          "send",
          "--file",
          list,
          "--subject",
          "x",
          "--text",
          "x",
          "--password",
          WRONG_ADMIN.value,
          "--url",
          api.url,
        ],
        cleanEnv({}),
      ),
      lovage(
        ["send", "--file", list, "--subject", "x", "--text", "x"],
        cleanEnv({ LOVAGE_URL: api.url, LOVAGE_TOKEN: TOKEN.value }),
      ),
      // A URL with credentials: fetch refuses it, quoting it.
      lovage(
        ["send", "--file", list, "--subject", "x", "--text", "x"],
        cleanEnv({
          LOVAGE_URL: api.url.replace("//", `//admin:${enc(URL_SECRET.value)}@`),
          LOVAGE_PASSWORD: ADMIN.value,
        }),
      ),
      // The same, written without encoding: not even a URL.
      lovage(
        ["send", "--file", list, "--subject", "x", "--text", "x"],
        cleanEnv({
          LOVAGE_URL: api.url.replace("//", `//admin:${URL_SECRET.value}@`),
          LOVAGE_PASSWORD: ADMIN.value,
        }),
      ),
    ]);
    expect(await api.stop()).toBe(0);
    for (const run of runs) {
      expect(run.code, run.output).toBe(1);
      expect(leaks(run.output)).toEqual([]);
    }
    expect(runs[0].output).toContain("(HTTP 401)");
    expect(leaks(api.output())).toEqual([]);
  }, 120_000);

  it.each(["start", "api", "worker", "migrate"])(
    "%s prints none of them when the URL settings hold them unencoded (bad settings)",
    async (command) => {
      const run = await lovage(
        [command],
        cleanEnv({
          // "/" in a password ends the host; these cannot be read as URLs at all.
          LOVAGE_DATABASE_URL: `postgres://postgres:${DB.value}@127.0.0.1:5432/lovage`,
          LOVAGE_BROKER_URL: `redis://:${BROKER.value}@127.0.0.1:6379`,
          LOVAGE_SMTP_URL: `smtp://mailer:${SMTP.value}@127.0.0.1:25, smtps://mailer:${WRONG_SMTP.value}@relay:465`,
          LOVAGE_ADMIN_PASSWORD: ADMIN.value,
          LOVAGE_JWT_SECRET: JWT.value,
        }),
      );
      expect(run.code, run.output).toBe(2);
      for (const setting of ["LOVAGE_DATABASE_URL", "LOVAGE_BROKER_URL", "LOVAGE_SMTP_URL"]) {
        expect(run.output).toContain(`${setting}: not a valid URL`);
      }
      expect(leaks(run.output)).toEqual([]);
    },
  );

  it.each([
    ["start", "LOVAGE_BROKER_URL", { LOVAGE_BROKER_URL: `redis://:${enc(BROKER.value)}@127.0.0.1:CLOSED` }],
    [
      "api",
      "LOVAGE_DATABASE_URL",
      { LOVAGE_DATABASE_URL: `postgres://postgres:${enc(DB.value)}@127.0.0.1:CLOSED/x` },
    ],
    [
      "migrate",
      "LOVAGE_DATABASE_URL",
      { LOVAGE_DATABASE_URL: `postgres://postgres:${enc(DB.value)}@127.0.0.1:CLOSED/x` },
    ],
  ] as const)("%s prints none of them when %s is unreachable", async (command, setting, settings) => {
    const env = Object.fromEntries(
      Object.entries(settings).map(([name, value]) => [name, value.replace("CLOSED", String(closedPort))]),
    );
    const run = await lovage([command], cleanEnv(distributed(env)));
    expect(run.code, run.output).toBe(1);
    expect(run.output).toContain(`${setting}: cannot connect to 127.0.0.1:${closedPort} (ECONNREFUSED)`);
    expect(leaks(run.output)).toEqual([]);
  });

  it("worker prints none of them when the broker password is wrong", async () => {
    const run = await lovage(
      ["worker"],
      cleanEnv(distributed({ LOVAGE_BROKER_URL: redis.url.replace("//", `//:${enc(WRONG_BROKER.value)}@`) })),
    );
    expect(run.code, run.output).toBe(1);
    expect(run.output).toMatch(/LOVAGE_BROKER_URL: WRONGPASS/);
    expect(leaks(run.output)).toEqual([]);
  });

  it("migrate prints none of them when the database does not exist", async () => {
    const missing = databaseUrl.replace(/\/[^/]+$/, "/lovage_no_such_database");
    const run = await lovage(["migrate"], cleanEnv(distributed({ LOVAGE_DATABASE_URL: missing })));
    expect(run.code, run.output).toBe(1);
    expect(run.output).toContain('LOVAGE_DATABASE_URL: database "lovage_no_such_database" does not exist');
    expect(leaks(run.output)).toEqual([]);
  });
});
