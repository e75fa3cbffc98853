/**
 * Starts the real `lovage` command (the built dist/) as a child process on a free port and a
 * temporary data directory, waits until it is ready, and logs in. Used by the end-to-end and
 * crash tests, which need a process they can kill.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../dist/src/cli/index.js", import.meta.url));

export interface LovageProcess {
  url: string;
  adminPassword: string;
  token: string;
  catcherUrl: string;
  dataDir: string;
  child: ChildProcess;
  /** Everything the process printed, for assertions and failure messages. */
  output(): string;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no chance to clean up. The data directory stays, for a restart on it. */
  kill(): Promise<void>;
  /** Kills it if it runs, and removes the data directory if this helper made it. */
  dispose(): Promise<void>;
}

export async function startLovage(
  options: {
    env?: Record<string, string>;
    dataDir?: string;
    command?: string;
    args?: string[];
    readyTimeoutMs?: number;
    /**
     * A command prefix that runs lovage, e.g. `["ip", "netns", "exec", ns]` to run it in a
     * network namespace. It must exec lovage in its own process, so signals reach it.
     */
    wrap?: string[];
    /**
     * Where the test reaches the API, when not at the URL it prints (e.g. a port forward into
     * a network namespace). Login and `url` use it.
     */
    reachAt?: string;
  } = {},
): Promise<LovageProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "lovage-e2e-"));
  const adminPassword = options.env?.LOVAGE_ADMIN_PASSWORD ?? "test-password-123";
  const argv = [process.execPath, CLI, options.command ?? "start", ...(options.args ?? [])];
  const [executable, ...args] = [...(options.wrap ?? []), ...argv] as [string, ...string[]];
  const child = spawn(executable, args, {
    env: {
      ...process.env,
      PORT: "0",
      LOVAGE_CATCHER_PORT: "0",
      LOVAGE_LOG_LEVEL: "warn",
      LOVAGE_DATA_DIR: dataDir,
      LOVAGE_ADMIN_PASSWORD: adminPassword,
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  const command = options.command ?? "start";
  // A worker has no HTTP server: it is ready when it says so; its `url` is then "".
  const ready = command === "worker" ? /Lovage worker (\S+) is running/ : /Lovage is running at (\S+)/;
  let url: string | undefined;
  while (url === undefined) {
    const match = ready.exec(output);
    url = match ? (command === "worker" ? "" : (options.reachAt ?? match[1])) : undefined;
    if (child.exitCode !== null)
      throw new Error(`lovage exited with ${child.exitCode} before it was ready:\n${output}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`lovage was not ready in time:\n${output}`);
    }
    if (url === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const catcherUrl = /Mail catcher: (\S+)/.exec(output)?.[1] ?? "";
  let token = "";
  if (command !== "worker") {
    const login = await fetch(`${url}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "admin", password: adminPassword }),
    });
    if (!login.ok) throw new Error(`login failed: ${login.status} ${await login.text()}`);
    token = ((await login.json()) as { token: string }).token;
  }

  return {
    url,
    adminPassword,
    token,
    catcherUrl,
    dataDir,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
    async dispose() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A JSON request with the bearer token; throws with the body when the status is not the expected one. */
export async function api<T>(
  lovage: { url: string; token: string },
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const response = await fetch(`${lovage.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${lovage.token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Waits for a condition, polling; never a fixed sleep. */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting: ${options.message ?? "condition"}${last instanceof Error ? ` (last error: ${last.message})` : ""}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
  }
}
