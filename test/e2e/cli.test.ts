/**
 * The `lovage` command end to end: the built CLI (dist/) run as a child process against a real
 * `lovage start` (embedded PGlite, the built-in mail catcher) on a free port. Build first:
 * `npx tsc -p tsconfig.json`.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../helpers/backends.js";
import { api, CLI, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { freePort } from "../helpers/services.js";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without any Lovage setting of the machine running the tests. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("LOVAGE_") && key !== "PORT") env[key] = value;
  }
  return { ...env, ...extra };
}

/** Runs the CLI to its end; never throws for an exit code. A command that hangs is killed. */
function lovage(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env, timeout: timeoutMs, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("the lovage command", () => {
  let server: LovageProcess;
  let workDir: string;
  let connected: NodeJS.ProcessEnv;

  beforeAll(async () => {
    server = await startLovage();
    workDir = mkdtempSync(join(tmpdir(), "lovage-cli-"));
    connected = cleanEnv({ LOVAGE_URL: server.url, LOVAGE_TOKEN: server.token });
  }, 120_000);

  afterEach(({ task }) => {
    if (task.result?.state === "fail") console.error(`lovage output:\n${server.output().slice(-4000)}`);
  });

  afterAll(async () => {
    const code = await server?.stop();
    expect(code).toBe(0);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (server) rmSync(server.dataDir, { recursive: true, force: true });
  });

  describe("call", () => {
    it("prints exactly 30 for add 10 and 20 with --wait, reading LOVAGE_URL and LOVAGE_TOKEN", async () => {
      const run = await lovage(["call", "add", '{"a":10,"b":20}', "--wait"], connected);
      expect(run).toEqual({ code: 0, stdout: "30\n", stderr: "" });
    });

    it("prints exactly 30 with the connection given as --url and --token", async () => {
      const run = await lovage(
        ["call", "add", '{"a":10,"b":20}', "--wait", "--url", server.url, "--token", server.token],
        cleanEnv(),
      );
      expect(run).toEqual({ code: 0, stdout: "30\n", stderr: "" });
    });

    it("logs in with --password when no token is given", async () => {
      const run = await lovage(
        ["call", "add", '{"a":1,"b":1}', "--wait", "--url", server.url, "--password", server.adminPassword],
        cleanEnv(),
      );
      expect(run).toEqual({ code: 0, stdout: "2\n", stderr: "" });
    });

    it("prints the job id without --wait, and the job then completes", async () => {
      const run = await lovage(["call", "add", '{"a":2,"b":3}'], connected);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^default:\S+\n$/);
      const id = run.stdout.trim();
      const job = await waitFor(
        async () => {
          const { body } = await api<{ state: string; result: unknown }>(
            server,
            "GET",
            `/api/tasks/${encodeURIComponent(id)}`,
          );
          return body.state === "completed" ? body : undefined;
        },
        { message: `job ${id} completed` },
      );
      expect(job.result).toBe(5);
    });

    it("exits 2 without a task name", async () => {
      const run = await lovage(["call"], connected);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toContain("which task?");
    });

    it("exits 2 with a clear message when the input is not JSON", async () => {
      const run = await lovage(["call", "add", "not json"], connected);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toMatch(/^lovage call: INPUT_JSON is not valid JSON: /);
    });

    it("exits 1 naming the problem when the server refuses the input", async () => {
      const run = await lovage(["call", "add", '{"a":"x","b":1}', "--wait"], connected);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/input of task add is invalid.*\(HTTP 400\)/s);
    });

    it("exits 1 naming the task when it does not exist", async () => {
      const run = await lovage(["call", "nosuch", "{}"], connected);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('no task named "nosuch"');
    });
  });

  describe("send and status", () => {
    it("sends a CSV of 30 recipients with one bad line, reports it by number, and completes", async () => {
      const rows = ["email,name,company"];
      for (let i = 1; i <= 30; i++) {
        rows.push(`cli${i}@example.com,${i === 1 ? "Nguyễn Thị Lan" : `Person ${i}`},Company ${i}`);
        if (i === 10) rows.push("broken@,Bad Row,Nowhere");
      }
      const file = join(workDir, "list.csv");
      writeFileSync(file, `${rows.join("\n")}\n`);

      const run = await lovage(
        ["send", "--file", file, "--subject", "Hello {{name}}", "--text", "Dear {{name}} of {{company}}"],
        connected,
        120_000,
      );
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      const id = Number(/^Campaign (\d+): 30 recipients accepted, 1 rejected\.$/m.exec(run.stdout)?.[1]);
      expect(id, run.stdout).toBeGreaterThan(0);
      // The header is line 1 and rows 1–10 are lines 2–11: the bad row is line 12.
      expect(run.stdout).toMatch(/^ {2}line 12: missing domain \(broken@,Bad Row,Nowhere\)$/m);
      expect(run.stdout).toMatch(new RegExp(`^Campaign ${id} completed\\.$`, "m"));

      const { body: campaign } = await api<{ status: string; counts: { sent: number } }>(
        server,
        "GET",
        `/api/campaigns/${id}`,
      );
      expect(campaign).toMatchObject({ status: "completed", counts: { sent: 30 } });

      const status = await lovage(["status"], connected);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(
        new RegExp(`^ {2}#${id} completed +30/30 sent, 0 failed, 0 unknown {2}Hello \\{\\{name\\}\\}$`, "m"),
      );
      expect(status.stdout).toMatch(/^Queues:$/m);
      expect(status.stdout).toMatch(/^ {2}email +waiting \d+/m);
    });

    it("prints the campaigns and queues as JSON with status --json", async () => {
      const run = await lovage(["status", "--json"], connected);
      expect(run.code, run.stderr).toBe(0);
      const parsed = JSON.parse(run.stdout) as { campaigns: unknown[]; queues: { name: string }[] };
      expect(parsed.queues.map((q) => q.name)).toEqual(["default", "email"]);
      expect(parsed.campaigns.length).toBeGreaterThanOrEqual(1);
    });

    it("exits 2 when the file does not exist", async () => {
      const run = await lovage(
        ["send", "--file", join(workDir, "missing.csv"), "--subject", "x", "--text", "x"],
        connected,
      );
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("no such file");
    });

    it("sends a 1.2 MB --html-file whole", async () => {
      const html = `<p>${"é".repeat(600_000)}</p>`;
      const htmlFile = join(workDir, "big.html");
      writeFileSync(htmlFile, html);
      const list = join(workDir, "one.txt");
      writeFileSync(list, "big-html@example.com\n");
      const run = await lovage(
        ["send", "--file", list, "--subject", "Big", "--html-file", htmlFile, "--no-follow"],
        connected,
      );
      expect(run.code, run.stderr).toBe(0);
      const id = Number(/^Campaign (\d+): 1 recipients accepted/m.exec(run.stdout)?.[1]);
      const { body: campaign } = await api<{ html: string }>(server, "GET", `/api/campaigns/${id}`);
      expect(campaign.html.length).toBe(html.length);
      expect(campaign.html).toBe(html);

      // And it is delivered whole: the mail catcher holds the same HTML.
      const done = await waitFor(
        async () => {
          const { body } = await api<{ status: string; counts: { sent: number } }>(
            server,
            "GET",
            `/api/campaigns/${id}`,
          );
          return body.status === "completed" ? body : undefined;
        },
        { message: `campaign ${id} completed`, timeoutMs: 60_000 },
      );
      expect(done.counts.sent).toBe(1);
      const { body: caught } = await api<{ messages: { id: number; to: string[] }[] }>(
        server,
        "GET",
        "/api/messages?limit=1000",
      );
      const message = caught.messages.find((m) => m.to.includes("big-html@example.com"));
      expect(message, JSON.stringify(caught.messages.slice(0, 3))).toBeDefined();
      const { body: full } = await api<{ html: string | null }>(
        server,
        "GET",
        `/api/messages/${message!.id}`,
      );
      expect(full.html?.trim()).toBe(html);
    }, 120_000);

    it("exits 2 naming the byte when --html-file is not UTF-8", async () => {
      const htmlFile = join(workDir, "latin1.html");
      writeFileSync(htmlFile, Buffer.from("<p>Caf\xe9</p>\n", "latin1"));
      const run = await lovage(
        ["send", "--file", htmlFile, "--subject", "x", "--html-file", htmlFile],
        connected,
      );
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(
        `--html-file ${htmlFile}: line 1: byte 0xE9 (at byte offset 6) is not UTF-8; save the file as UTF-8`,
      );
    });

    it("exits 1 listing the lines when no recipient is valid", async () => {
      const file = join(workDir, "bad.txt");
      writeFileSync(file, "bob@\nnot-an-address\n");
      const run = await lovage(["send", "--file", file, "--subject", "x", "--text", "x"], connected);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^ {2}line 1: missing domain \(bob@\)$/m);
      expect(run.stderr).toMatch(/^ {2}line 2: missing @ \(not-an-address\)$/m);
      expect(run.stderr).toContain("(HTTP 400)");
    });
  });

  describe("usage", () => {
    it.each([
      [["--help"], /^Usage: lovage COMMAND/],
      [["send", "--help"], /^Usage: lovage send --file LIST/],
      [["call", "--help"], /^Usage: lovage call TASK/],
      [["start", "--help"], /^Usage: lovage start/],
    ])("prints usage and exits 0 for lovage %j", async (args, usage) => {
      const run = await lovage(args, cleanEnv());
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(usage);
      expect(run.stderr).toBe("");
    });

    it("exits 2 for an unknown command, naming it", async () => {
      const run = await lovage(["nosuch"], cleanEnv());
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^lovage: unknown command "nosuch"/);
      expect(run.stderr).toContain("Usage: lovage COMMAND");
    });

    it("exits 2 for an unknown option", async () => {
      const run = await lovage(["call", "add", "--nosuch"], connected);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("--nosuch");
    });
  });

  describe("start", () => {
    it("exits 2 with one line naming LOVAGE_BROKER_URL when it is not a Redis URL", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "lovage-cli-start-"));
      try {
        const run = await lovage(
          ["start"],
          cleanEnv({
            LOVAGE_BROKER_URL: "http://x",
            LOVAGE_DATA_DIR: dataDir,
            PORT: "0",
            LOVAGE_CATCHER_PORT: "0",
          }),
          30_000,
        );
        expect(run.code, run.stderr).toBe(2);
        const lines = run.stderr.split("\n").filter((line) => line.includes("LOVAGE_BROKER_URL"));
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/LOVAGE_BROKER_URL: expected redis:\/\/ or rediss:\/\/.*got "http:\/\/x/);
        expect(run.stdout).not.toContain("Lovage is running");
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it("exits 1 naming LOVAGE_DATA_DIR when a running Lovage already uses the directory", async () => {
      const run = await lovage(
        ["start"],
        cleanEnv({
          LOVAGE_DATA_DIR: server.dataDir,
          PORT: "0",
          LOVAGE_CATCHER_PORT: "0",
          LOVAGE_LOG_LEVEL: "warn",
        }),
        30_000,
      );
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
      expect(run.stderr).toMatch(
        /^lovage start: LOVAGE_DATA_DIR: .* is in use by another Lovage process \(pid \d+\)/m,
      );
      expect(run.stdout).not.toContain("Lovage is running");

      // The running one is unharmed.
      const again = await lovage(["call", "add", '{"a":10,"b":20}', "--wait"], connected);
      expect(again.stdout).toBe("30\n");
    });
  });
});

describe("start-up errors", () => {
  let database: { url: string; drop(): Promise<void> };
  let dataDir: string;
  let busy: Server;
  let busyPort: number;
  let closedPort: number;

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), "lovage-cli-errors-"));
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    busyPort = (busy.address() as { port: number }).port;
    closedPort = await freePort();
  }, 60_000);

  afterAll(async () => {
    await new Promise((resolve) => busy?.close(resolve));
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const cases: [command: string, what: string, settings: () => Record<string, string>, line: () => string][] =
    [
      [
        "start",
        "an unreachable database",
        () => ({ LOVAGE_DATABASE_URL: `postgres://postgres@127.0.0.1:${closedPort}/lovage` }),
        () => `LOVAGE_DATABASE_URL: cannot connect to 127.0.0.1:${closedPort} (ECONNREFUSED)`,
      ],
      [
        "migrate",
        "an unreachable database",
        () => ({ LOVAGE_DATABASE_URL: `postgres://postgres@127.0.0.1:${closedPort}/lovage` }),
        () => `LOVAGE_DATABASE_URL: cannot connect to 127.0.0.1:${closedPort} (ECONNREFUSED)`,
      ],
      [
        "api",
        "a missing database",
        () => ({ LOVAGE_DATABASE_URL: database.url.replace(/\/[^/]+$/, "/lovage_no_such_db") }),
        () => 'LOVAGE_DATABASE_URL: database "lovage_no_such_db" does not exist',
      ],
      [
        "worker",
        "an unreachable broker",
        () => ({ LOVAGE_DATABASE_URL: database.url, LOVAGE_BROKER_URL: `redis://127.0.0.1:${closedPort}` }),
        () => `LOVAGE_BROKER_URL: cannot connect to 127.0.0.1:${closedPort} (ECONNREFUSED)`,
      ],
      [
        "start",
        "a busy catcher port",
        () => ({ LOVAGE_DATABASE_URL: database.url, LOVAGE_CATCHER_PORT: String(busyPort) }),
        () => `LOVAGE_CATCHER_PORT: ${busyPort} is already in use`,
      ],
      [
        "api",
        "a busy HTTP port",
        () => ({ LOVAGE_DATABASE_URL: database.url, PORT: String(busyPort) }),
        () => `PORT: ${busyPort} is already in use`,
      ],
    ];

  it.each(cases)(
    "lovage %s with %s exits 1 with one line naming the setting and the cause",
    async (command, _what, settings, line) => {
      const run = await lovage(
        [command],
        cleanEnv({
          LOVAGE_DATA_DIR: dataDir,
          PORT: "0",
          LOVAGE_CATCHER_PORT: "0",
          LOVAGE_LOG_LEVEL: "warn",
          ...settings(),
        }),
        60_000,
      );
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
      expect(run.stderr).toBe(`lovage ${command}: ${line()}\n`);
      expect(run.stdout).not.toMatch(/Lovage (worker \S+ )?is running|\n\s+at /);
    },
  );
});
