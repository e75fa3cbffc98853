/**
 * Child processes for the benchmark: spawning a Node script, reading its output line by line,
 * waiting for a line that matches, and stopping it. It keeps every line printed, so a failure
 * can show what the process said. It never kills a process it did not start.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface Child {
  process: ChildProcess;
  pid: number;
  /** Everything printed on stdout and stderr so far. */
  output(): string;
  /**
   * Resolves with the first stdout line that `match` accepts: one already printed too, unless
   * `onlyNew` (a reply to a request just sent).
   */
  waitForLine(
    match: (line: string) => boolean,
    timeoutMs: number,
    what: string,
    options?: { onlyNew?: boolean },
  ): Promise<string>;
  /** Writes one line to stdin. */
  send(line: string): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnNode(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  nodeArgs: readonly string[] = [],
): Child {
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`could not start ${script}`);
  let output = "";
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  let partial = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const text = chunk.toString();
    output += text;
    partial += text;
    let end: number;
    while ((end = partial.indexOf("\n")) >= 0) {
      const line = partial.slice(0, end);
      partial = partial.slice(end + 1);
      lines.push(line);
      for (const waiter of [...waiters]) waiter(line);
    }
  });
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  // A child that exits early closes its stdin; writing to it then must not crash the bench.
  child.stdin.on("error", () => undefined);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let closed = false;
  child.once("close", () => (closed = true));

  return {
    process: child,
    pid: child.pid,
    output: () => output,
    waitForLine(match, timeoutMs, what, options = {}) {
      const seen = options.onlyNew ? undefined : lines.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const done = (error: Error | undefined, line?: string) => {
          clearTimeout(timer);
          waiters.delete(onLine);
          child.off("close", onExit);
          if (error) reject(error);
          else resolve(line!);
        };
        const onLine = (line: string) => {
          if (match(line)) done(undefined, line);
        };
        const onExit = (code: number | null) =>
          done(new Error(`${what}: the process exited with ${code} first:\n${tail(output)}`));
        const timer = setTimeout(
          () => done(new Error(`${what}: not seen in ${timeoutMs} ms:\n${tail(output)}`)),
          timeoutMs,
        );
        waiters.add(onLine);
        // "close", not "exit": by then everything it printed has been read, for the message.
        child.once("close", onExit);
        if (closed) onExit(child.exitCode);
      });
    },
    send(line) {
      child.stdin.write(`${line}\n`);
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The last lines of a process's output, for an error message. */
export function tail(output: string, lines = 20): string {
  return output.trimEnd().split("\n").slice(-lines).join("\n");
}
