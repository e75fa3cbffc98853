/**
 * Redis and PostgreSQL servers of a test's own, on free ports, from Debian's packages, so that
 * fault tests can kill and restart them without touching the shared ones.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

async function until(probe: () => boolean, what: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface RedisServer {
  url: string;
  port: number;
  /** SIGKILL: queued jobs are gone with it (it keeps nothing on disk). */
  kill(): Promise<void>;
  /** Starts again on the same port, empty. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Where a server of the test's own listens. By default on 127.0.0.1 and a free port; with
 * `netns`, inside that network namespace (`ip netns exec`, root only), on `host` (an address
 * of that namespace) and `port` (default: the server's usual port, free in a fresh namespace).
 */
export interface ServerPlacement {
  host?: string;
  netns?: string;
  port?: number;
}

/** The command, run inside the network namespace when there is one. */
function inNetns(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns === undefined ? [command, args] : ["ip", ["netns", "exec", netns, command, ...args]];
}

export async function startRedisServer(placement: ServerPlacement = {}): Promise<RedisServer> {
  const host = placement.host ?? "127.0.0.1";
  const port = placement.port ?? (placement.netns === undefined ? await freePort() : 6379);
  const dir = mkdtempSync(join(tmpdir(), "lovage-redis-"));
  let child: ChildProcess | undefined;
  const answers = () => {
    try {
      const [cmd, argv] = inNetns(placement.netns, "redis-cli", ["-h", host, "-p", String(port), "ping"]);
      return execFileSync(cmd, argv, { encoding: "utf8", stdio: "pipe" }).trim() === "PONG";
    } catch {
      return false;
    }
  };
  const start = async () => {
    const args = ["--port", String(port), "--bind", host, "--save", "", "--appendonly", "no", "--dir", dir];
    // Protected mode refuses every client not on loopback; elsewhere `host` is on a network of
    // the test's own (a namespace link).
    if (host !== "127.0.0.1") args.push("--protected-mode", "no");
    const [cmd, argv] = inNetns(placement.netns, "redis-server", args);
    // `ip netns exec` execs the command in its own process: `child` is redis-server itself.
    child = spawn(cmd, argv, { stdio: "ignore" });
    await until(
      answers,
      `redis-server on ${host}:${port} (is redis-server installed? apt-get install redis-server)`,
    );
  };
  const kill = async () => {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child!.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  };
  try {
    await start();
  } catch (error) {
    await kill();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `redis://${host}:${port}`,
    port,
    kill,
    start,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PostgresServer {
  /** A URL to the database `lovage`. */
  url: string;
  port: number;
  /** Stops it (fast shutdown: connections are cut) and starts it again. */
  restart(options?: { downMs?: number }): Promise<void>;
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
  stop(): Promise<void>;
}

function postgresBin(name: string): string {
  const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const path = `/usr/lib/postgresql/${version}/bin/${name}`;
    if (existsSync(path)) return path;
  }
  throw new Error(`${name} not found under /usr/lib/postgresql: apt-get install postgresql`);
}

/** PostgreSQL refuses to run as root: as root, run its tools as the postgres user. */
function asPostgres(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", command, ...args]] : [command, args];
}

function run(command: string, args: string[]) {
  const [cmd, argv] = asPostgres(command, args);
  return execFileSync(cmd, argv, { encoding: "utf8", stdio: "pipe" });
}

export async function startPostgresServer(placement: ServerPlacement = {}): Promise<PostgresServer> {
  const host = placement.host ?? "127.0.0.1";
  const port = placement.port ?? (placement.netns === undefined ? await freePort() : 5432);
  const dir = mkdtempSync(join(tmpdir(), "lovage-pg-"));
  const data = join(dir, "data");
  if (process.getuid?.() === 0) {
    chmodSync(dir, 0o755);
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
  }
  run(postgresBin("initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
  if (host !== "127.0.0.1") {
    // initdb's pg_hba.conf trusts local sockets and loopback only: also trust the hosts on the
    // networks this server is directly on (the test's own namespace links).
    appendFileSync(join(data, "pg_hba.conf"), "host all all samenet trust\n");
  }
  // Inside a namespace: `ip netns exec NS runuser -u postgres -- pg_ctl …`.
  const runHere = (command: string, args: string[]) => {
    const [cmd, argv] = asPostgres(command, args);
    const [outer, outerArgs] = inNetns(placement.netns, cmd, argv);
    return execFileSync(outer, outerArgs, { encoding: "utf8", stdio: "pipe" });
  };
  const options = `-p ${port} -c listen_addresses=${host} -k ${dir} -c fsync=off -c max_connections=200`;
  const startServer = async () => {
    runHere(postgresBin("pg_ctl"), ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "start"]);
  };
  const stopServer = async () => {
    runHere(postgresBin("pg_ctl"), ["-D", data, "-m", "fast", "-w", "stop"]);
  };
  try {
    await startServer();
    runHere(postgresBin("createdb"), ["-h", host, "-p", String(port), "-U", "postgres", "lovage"]);
  } catch (error) {
    await stopServer().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `postgres://postgres@${host}:${port}/lovage`,
    port,
    startServer,
    stopServer,
    async restart({ downMs = 1_000 } = {}) {
      await stopServer();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      await startServer();
    },
    async stop() {
      await stopServer().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
