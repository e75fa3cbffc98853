/**
 * The first five minutes, as the README tells them: a fresh `lovage start` in an empty
 * directory (the clone, with its `./data`) prints the banner the README shows, saves the
 * generated password, and then every `sh` block marked `<!-- runnable -->` runs, in order, in
 * that directory, as a reader would paste it.
 *
 * A runnable block is a session: `$ command` lines (continued by a trailing `\`), each followed
 * by the output the README promises; `…` in a line matches any text, and a line that is only
 * `…` any number of lines. Every command must also exit 0. Two things are mapped, and only
 * those: the test's Lovage listens on free ports, so `localhost:5000` in a command becomes its
 * address and PORT is set for the CLI's default URL; `npx lovage` runs the built CLI, the bin
 * that npx finds in a clone (checked once, for real, below).
 *
 * It also checks, cheaply, that `npm install` on a fresh clone warns about no engine on the
 * supported Node versions and leaves the lock as it is.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import semver from "semver";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, waitFor } from "../helpers/lovage-process.js";
import { freePort } from "../helpers/services.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The oldest release of each supported Node major, as package.json's engines promise. */
const SUPPORTED_NODE = ["20.19.0", "22.13.0", "24.0.0"];

interface Block {
  /** The HTML comment before the fence, if any: `runnable`, `not runnable: why`, `printed by npm start`. */
  marker: string | undefined;
  info: string;
  lines: string[];
  /** 1-based line of the opening fence, for failure messages. */
  line: number;
}

function readmeBlocks(): Block[] {
  const lines = README.split("\n");
  const blocks: Block[] = [];
  let marker: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const comment = /^<!-- (.*) -->$/.exec(line);
    if (comment) {
      marker = comment[1];
      continue;
    }
    const fence = /^```(.*)$/.exec(line);
    if (fence) {
      const start = i;
      const body: string[] = [];
      while (++i < lines.length && lines[i] !== "```") body.push(lines[i]!);
      blocks.push({ marker, info: fence[1]!.trim(), lines: body, line: start + 1 });
    }
    if (line.trim() !== "") marker = undefined;
  }
  return blocks;
}

interface Step {
  command: string;
  expected: string[];
}

/** `$ command` lines and the output under each. */
function stepsOf(block: Block): Step[] {
  const steps: Step[] = [];
  let continued = false;
  for (const line of block.lines) {
    const last = steps.at(-1);
    if (continued && last) {
      last.command += `\n${line}`;
    } else if (line.startsWith("$ ")) {
      steps.push({ command: line.slice(2), expected: [] });
    } else if (last) {
      last.expected.push(line);
    } else {
      throw new Error(`README line ${block.line}: output before any "$ " command`);
    }
    continued = line.endsWith("\\");
  }
  return steps;
}

/** Whether `output` is what `expected` shows, `…` standing for any text (or, alone, any lines). */
function matches(expected: string[], output: string): boolean {
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = expected
    .map((line) => (line === "…" ? "(?:[^\\n]*\\n)*?" : `${escape(line).replace(/…/g, "[^\\n]*")}\\n`))
    .join("");
  return new RegExp(`^${pattern}$`).test(output.endsWith("\n") || output === "" ? output : `${output}\n`);
}

/** The environment without any Lovage setting of the machine running the tests. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("LOVAGE_") && key !== "PORT") env[key] = value;
  }
  return { ...env, ...extra };
}

function run(
  file: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 60_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface Started {
  child: ChildProcess;
  output: () => string;
  stop(): Promise<number | null>;
}

/** `lovage start` in `cwd` as `npm start` runs it there: no data directory, no password given. */
async function startInClone(cwd: string, env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, [CLI, "start"], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  // The banner is written at once; its last line says the worker runs.
  await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`lovage start exited with ${child.exitCode}:\n${output}`);
      return /^Lovage worker \S+ is running/m.test(output);
    },
    { timeoutMs: 90_000, message: "the start banner" },
  ).catch((error: unknown) => {
    child.kill("SIGKILL");
    throw error;
  });
  return {
    child,
    output: () => output,
    stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

describe("the README, pasted in order after the quick start", () => {
  const blocks = readmeBlocks();
  let clone: string;
  let port: number;
  let catcherPort: number;
  let lovage: Started;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    clone = mkdtempSync(join(tmpdir(), "lovage-readme-"));
    port = await freePort();
    catcherPort = await freePort();
    env = cleanEnv({ PORT: String(port), LOVAGE_CATCHER_PORT: String(catcherPort) });
    lovage = await startInClone(clone, env);
  }, 120_000);

  afterAll(async () => {
    await lovage?.stop();
    if (clone) rmSync(clone, { recursive: true, force: true });
  });

  it("marks every sh block as runnable or says why it is not", () => {
    const unmarked = blocks
      .filter((block) => block.info === "sh")
      .filter((block) => block.marker !== "runnable" && !block.marker?.startsWith("not runnable: "))
      .map((block) => `README line ${block.line}`);
    expect(unmarked).toEqual([]);
    expect(blocks.filter((block) => block.marker === "runnable").length).toBeGreaterThanOrEqual(3);
  });

  it("prints the banner the quick start shows, and saves the password for the owner only", () => {
    const shown = blocks.find((block) => block.marker === "printed by npm start");
    expect(shown, "a block marked <!-- printed by npm start -->").toBeDefined();
    const expected = shown!.lines.map((line) =>
      line
        .replaceAll("127.0.0.1:5000", `127.0.0.1:${port}`)
        .replaceAll("127.0.0.1:2525", `127.0.0.1:${catcherPort}`),
    );
    const output = lovage.output();
    const banner = output.slice(output.indexOf("Lovage is running at")).split("\n\n")[0]!;
    expect(matches(expected, banner), `README:\n${expected.join("\n")}\n\nprinted:\n${banner}`).toBe(true);

    const password = /Log in as admin with password: (\S+)/.exec(banner)?.[1];
    const file = join(clone, "data", "admin-password");
    expect(banner).toContain(`saved in ${file} `);
    expect(readFileSync(file, "utf8")).toBe(`${password}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("runs every runnable block, each command printing what the README shows", async () => {
    const runnable = blocks.filter((block) => block.marker === "runnable");
    const tools = await run("bash", ["-c", "command -v curl"], { cwd: clone, env });
    if (tools.code !== 0) throw new Error("the README's commands need curl: apt-get install curl");
    for (const block of runnable) {
      const steps = stepsOf(block);
      expect(steps.length, `README line ${block.line}: no "$ " command`).toBeGreaterThan(0);
      const end = "@@lovage-readme-step-end";
      const script = [
        "exec 2>&1",
        // npx would find this same bin in a clone; see the test below.
        'npx() { if [ "$1" = lovage ]; then shift; node "$LOVAGE_README_CLI" "$@"; else command npx "$@"; fi; }',
        ...steps.flatMap(({ command }) => [
          command
            .replaceAll("localhost:5000", `127.0.0.1:${port}`)
            .replaceAll("127.0.0.1:5000", `127.0.0.1:${port}`),
          // On a line of its own even after an output with no final newline (curl's).
          `printf '\\n${end} %s\\n' "$?"`,
        ]),
      ].join("\n");
      const result = await run("bash", ["-c", script], {
        cwd: clone,
        env: { ...env, LOVAGE_README_CLI: CLI },
        timeoutMs: 120_000,
      });
      const outputs = result.stdout.split(new RegExp(`\\n${end} (\\d+)\\n`));
      steps.forEach((step, index) => {
        const output = outputs[index * 2] ?? "";
        const code = outputs[index * 2 + 1];
        const where = `README line ${block.line}: $ ${step.command}\nprinted:\n${output}`;
        expect(code, where).toBe("0");
        expect(matches(step.expected, output), `${where}\nexpected:\n${step.expected.join("\n")}`).toBe(true);
      });
    }
  }, 300_000);

  it("finds the lovage bin with npx in the clone itself", async () => {
    const result = await run("npx", ["--no-install", "lovage", "--help"], { cwd: ROOT, env: cleanEnv({}) });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Usage: lovage COMMAND/);
  });

  it("says how to give credentials when there are none, and which saved password failed", async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), "lovage-readme-elsewhere-"));
    try {
      const none = await run(process.execPath, [CLI, "status"], { cwd: elsewhere, env });
      expect(none.code).toBe(2);
      expect(none.stderr).toContain(
        `no credentials: give --token (or LOVAGE_TOKEN), or --password (or LOVAGE_PASSWORD); on the machine that ran the first start, the password it generated is read from ${join(elsewhere, "data", "admin-password")}`,
      );

      writeFileSync(join(elsewhere, "admin-password"), "not-the-password\n", { mode: 0o600 });
      const wrong = await run(process.execPath, [CLI, "status"], {
        cwd: elsewhere,
        env: { ...env, LOVAGE_DATA_DIR: elsewhere },
      });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain(
        `(tried the password in ${join(elsewhere, "admin-password")}; give --password or --token)`,
      );
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it("removes the saved password when a later start sets LOVAGE_ADMIN_PASSWORD", async () => {
    expect(await lovage.stop()).toBe(0);
    lovage = await startInClone(clone, { ...env, LOVAGE_ADMIN_PASSWORD: "a-chosen-password" });
    expect(lovage.output()).toContain("Log in as admin with the password in LOVAGE_ADMIN_PASSWORD.");
    expect(() => statSync(join(clone, "data", "admin-password"))).toThrow(/ENOENT/);
    const call = await run(process.execPath, [CLI, "call", "add", '{"a":1,"b":2}', "--wait"], {
      cwd: clone,
      env: { ...env, LOVAGE_PASSWORD: "a-chosen-password" },
    });
    expect(call).toMatchObject({ code: 0, stdout: "3\n" });
  }, 120_000);
});

describe("npm install on a fresh clone", () => {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, { version?: string; engines?: unknown } & Record<string, unknown>>;
  };
  const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    engines: { node: string };
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };

  it("supports the Node versions package.json promises", () => {
    for (const version of [...SUPPORTED_NODE, process.version]) {
      expect(semver.satisfies(version, manifest.engines.node), version).toBe(true);
    }
  });

  it("locks no package that would warn about its engines on a supported Node (EBADENGINE)", () => {
    const misfits: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      const engines = entry.engines;
      const range =
        engines && typeof engines === "object" && !Array.isArray(engines)
          ? (engines as { node?: unknown }).node
          : undefined;
      if (typeof range !== "string") continue;
      for (const version of [...SUPPORTED_NODE, process.version]) {
        if (!semver.satisfies(version, range))
          misfits.push(`${path || "lovage"} ${entry.version ?? ""} needs node ${range}, not ${version}`);
      }
    }
    expect(misfits).toEqual([]);
  });

  it("has a lock in step with package.json, so that npm install leaves it as it is", () => {
    const root = lock.packages[""] as {
      dependencies?: unknown;
      devDependencies?: unknown;
      engines?: unknown;
    };
    expect(root.dependencies).toEqual(manifest.dependencies);
    expect(root.devDependencies).toEqual(manifest.devDependencies);
    expect(root.engines).toEqual(manifest.engines);
    const stale: string[] = [];
    for (const [name, range] of Object.entries({ ...manifest.dependencies, ...manifest.devDependencies })) {
      const version = lock.packages[`node_modules/${name}`]?.version;
      if (version === undefined || !semver.satisfies(version, range))
        stale.push(`${name} ${range}: ${version}`);
    }
    expect(stale).toEqual([]);
  });
});
