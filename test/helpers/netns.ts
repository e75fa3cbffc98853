/**
 * A small network of test hosts made of Linux network namespaces (root only): a "switch"
 * namespace holding a bridge, and one namespace per host with an `eth0` whose veth peer is
 * enslaved to that bridge. Addresses are on a private /24 that exists only inside these
 * namespaces; nothing is added to the machine's own namespace (each veth is created directly
 * in its namespaces), so two runs at once cannot collide, and `destroy()` removes it all.
 *
 * The test process itself stays outside: `forward()` gives it a 127.0.0.1 port that reaches
 * a host:port inside the network through a relay process running on one of the hosts (over a
 * unix socket, which network namespaces do not separate).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Why network namespaces cannot be created here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux") return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return "not running as root (ip netns needs it)";
  try {
    execFileSync("ip", ["-V"], { stdio: "pipe" });
  } catch {
    return "the ip command (iproute2) is missing";
  }
  const probe = `lv${randomBytes(3).toString("hex")}-probe`;
  try {
    execFileSync("ip", ["netns", "add", probe], { stdio: "pipe" });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return `ip netns add failed: ${stderr || (error as Error).message}`;
  }
  try {
    execFileSync("ip", ["netns", "del", probe], { stdio: "pipe" });
  } catch {
    // Nothing more to do: it was created, so namespaces work.
  }
  return undefined;
}

export interface TestNetwork {
  /** The unique prefix of this run's namespace names, like `lv3fa91c`. */
  prefix: string;
  /** The namespace of a host. */
  ns(host: string): string;
  /** The address of a host on the network. */
  ip(host: string): string;
  /** The prefix that runs a command on a host: `["ip", "netns", "exec", ns]`. */
  exec(host: string): string[];
  /** Runs a command on a host and returns its output. */
  run(host: string, command: string, args: string[]): string;
  /** Starts a process on a host; it is killed by `destroy()` if still running. */
  spawn(host: string, command: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  /**
   * A port on 127.0.0.1 whose connections are relayed by a process on host `via` to
   * `target:port` inside the network.
   */
  forward(via: string, target: string, port: number): Promise<number>;
  /** Kills what runs in the namespaces, deletes them (and with them their links). */
  destroy(): Promise<void>;
}

const RELAY = `
const net = require("node:net");
const [path, host, port] = process.argv.slice(1);
const server = net.createServer((client) => {
  const upstream = net.connect(Number(port), host);
  client.pipe(upstream);
  upstream.pipe(client);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
});
server.listen(path, () => process.stdout.write("ready\\n"));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

function ip(args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: "pipe" });
}

/**
 * Creates the network. `hosts` maps each host name (at most 12 characters) to the last byte of
 * its address on `subnet` (three bytes, like "10.231.77").
 */
export async function createTestNetwork(options: {
  hosts: Record<string, number>;
  subnet?: string;
}): Promise<TestNetwork> {
  const subnet = options.subnet ?? "10.231.77";
  const prefix = `lv${randomBytes(3).toString("hex")}`;
  const switchNs = `${prefix}-sw`;
  const created: string[] = [];
  const children = new Set<ChildProcess>();
  const servers = new Set<Server>();
  const sockets = new Set<Socket>();
  const dir = mkdtempSync(join(tmpdir(), "lovage-netns-"));
  let relays = 0;

  const ns = (host: string) => {
    if (!(host in options.hosts)) throw new Error(`no host "${host}" in this test network`);
    return `${prefix}-${host}`;
  };
  const hostIp = (host: string) => `${subnet}.${options.hosts[host]}`;

  const addNamespace = (name: string) => {
    // Recorded first: if anything below fails, destroy() still removes it.
    created.push(name);
    ip(["netns", "add", name]);
    ip(["-n", name, "link", "set", "lo", "up"]);
  };

  const destroy = async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all([...servers].map((server) => new Promise((done) => server.close(done))));
    const exits = [...children]
      .filter((child) => child.exitCode === null && child.signalCode === null)
      .map((child) => {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGKILL");
        return exited;
      });
    await Promise.all(exits);
    for (const name of created.reverse()) {
      // Whatever still runs in a namespace was started by this test (a daemon's children,
      // like PostgreSQL's backends): a namespace lives on as long as any process uses it.
      let pids: number[] = [];
      try {
        pids = ip(["netns", "pids", name]).split(/\s+/).filter(Boolean).map(Number);
      } catch {
        // Already gone.
      }
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }
      try {
        ip(["netns", "del", name]);
      } catch {
        // Never created, or already deleted.
      }
    }
    created.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    addNamespace(switchNs);
    ip(["-n", switchNs, "link", "add", "br0", "type", "bridge"]);
    ip(["-n", switchNs, "link", "set", "br0", "up"]);
    for (const host of Object.keys(options.hosts)) {
      if (host.length > 12) throw new Error(`host name "${host}": at most 12 characters`);
      const name = ns(host);
      addNamespace(name);
      // Both ends are created directly in their namespaces: nothing appears in the machine's.
      ip(["link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", host, "netns", switchNs]);
      ip(["-n", switchNs, "link", "set", host, "master", "br0", "up"]);
      ip(["-n", name, "addr", "add", `${hostIp(host)}/24`, "dev", "eth0"]);
      ip(["-n", name, "link", "set", "eth0", "up"]);
    }
  } catch (error) {
    await destroy();
    throw error;
  }

  const exec = (host: string) => ["ip", "netns", "exec", ns(host)];

  const spawnOn = (host: string, command: string, args: string[], env?: NodeJS.ProcessEnv) => {
    const [executable, ...rest] = [...exec(host), command, ...args] as [string, ...string[]];
    const child = spawn(executable, rest, { env: env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    children.add(child);
    child.once("exit", () => children.delete(child));
    return child;
  };

  return {
    prefix,
    ns,
    ip: hostIp,
    exec,
    run(host, command, args) {
      return execFileSync("ip", ["netns", "exec", ns(host), command, ...args], {
        encoding: "utf8",
        stdio: "pipe",
      });
    },
    spawn: spawnOn,
    async forward(via, target, port) {
      const path = join(dir, `relay-${relays++}.sock`);
      const relay = spawnOn(via, process.execPath, ["-e", RELAY, path, target, String(port)]);
      let output = "";
      await new Promise<void>((ready, fail) => {
        relay.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes("ready")) ready();
        });
        relay.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
        relay.once("exit", (code) => fail(new Error(`relay on ${via} exited with ${code}: ${output}`)));
      });
      const server = createServer((client) => {
        const upstream = connect(path);
        sockets.add(client).add(upstream);
        client.pipe(upstream);
        upstream.pipe(client);
        client.on("error", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
        client.on("close", () => {
          upstream.destroy();
          sockets.delete(client);
        });
        upstream.on("close", () => {
          client.destroy();
          sockets.delete(upstream);
        });
      });
      servers.add(server);
      await new Promise<void>((ready, fail) => {
        server.once("error", fail);
        server.listen(0, "127.0.0.1", () => ready());
      });
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("forward: no TCP address");
      return address.port;
    },
    destroy,
  };
}
