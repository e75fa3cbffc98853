/**
 * The distributed topology on separate hosts: Redis, PostgreSQL and the SMTP sink on host
 * `db`, `lovage api` on host `api`, a `lovage worker` on each of `w1`, `w2`, `w3`, every host a
 * Linux network namespace of the test's own joined to the others by a bridge, so they talk
 * over those links only (10.231.77.0/24, which exists only inside these namespaces).
 *
 *     switch namespace: br0 ── db  10.231.77.10  redis :6379, postgres :5432, smtp :2525, http :8025
 *                          ├── api 10.231.77.20  lovage api :5000
 *                          ├── w1  10.231.77.31  lovage worker
 *                          ├── w2  10.231.77.32  lovage worker
 *                          ├── w3  10.231.77.33  lovage worker
 *                          └── client 10.231.77.40  relays for the test process (below)
 *
 * How the test process reaches the API and the sink's counts: through `forward()`, a port on
 * 127.0.0.1 relayed (over a unix socket) by a process on host `client`, which connects across
 * the bridge like any other host. Not a veth from the machine's own namespace: that would put
 * the /24 and a route into the machine's namespace, where two runs at once (or a real network
 * using that range) would collide; the relay keeps the whole network inside the namespaces,
 * and needs nothing but node.
 *
 * Runs only where network namespaces can be created (root, iproute2); skipped, saying why,
 * everywhere else.
 */
import { spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CampaignView } from "../../src/api/present.js";
import { CLUSTER_SECRETS } from "../helpers/cluster.js";
import { api, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { createTestNetwork, netnsUnavailable, type TestNetwork } from "../helpers/netns.js";
import {
  startPostgresServer,
  startRedisServer,
  type PostgresServer,
  type RedisServer,
} from "../helpers/services.js";
import type { SinkDeliveries } from "../helpers/smtp-sink-process.js";

const SINK = fileURLToPath(new URL("../../dist/test/helpers/smtp-sink-process.js", import.meta.url));
const HOSTS = { db: 10, api: 20, w1: 31, w2: 32, w3: 33, client: 40 };
const WORKERS = ["w1", "w2", "w3"] as const;
const SMTP_PORT = 2525;
const SINK_HTTP_PORT = 8025;
const API_PORT = 5000;
const RECIPIENTS = 1000;

const unavailable = netnsUnavailable();
if (unavailable !== undefined) console.warn(`hosts.test.ts skipped: ${unavailable}`);

/** Starts the SMTP sink process on host `db`; resolves once it listens. */
async function startSink(network: TestNetwork, host: string): Promise<{ child: ChildProcess; smtp: string }> {
  if (!existsSync(SINK)) throw new Error(`${SINK} is missing: run npm run build first`);
  const child = network.spawn(host, process.execPath, [
    SINK,
    network.ip(host),
    String(SMTP_PORT),
    String(SINK_HTTP_PORT),
    "2", // ms per message: enough for the batches to spread over the three workers
  ]);
  let output = "";
  const ready = await new Promise<{ smtp: string }>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const line = /^\{.*\}$/m.exec(output)?.[0];
      if (line) resolve(JSON.parse(line) as { smtp: string });
    });
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("exit", (code) => reject(new Error(`SMTP sink exited with ${code}: ${output}`)));
    setTimeout(() => reject(new Error(`SMTP sink not ready in 15 s: ${output}`)), 15_000).unref();
  });
  return { child, smtp: ready.smtp };
}

/** What a TCP connection from `host` to `target:port` gets: "open", or the error's code. */
function probeTcp(network: TestNetwork, host: string, target: string, port: number): string {
  const script = `
    const s = require("node:net").connect(Number(process.argv[2]), process.argv[1]);
    s.on("connect", () => { console.log("open"); process.exit(0); });
    s.on("error", (e) => { console.log(e.code); process.exit(0); });
    setTimeout(() => { console.log("timeout"); process.exit(0); }, 3000);`;
  return network.run(host, process.execPath, ["-e", script, target, String(port)]).trim();
}

describe.skipIf(unavailable !== undefined)("Lovage on five hosts in network namespaces", () => {
  let network: TestNetwork | undefined;
  let redis: RedisServer | undefined;
  let postgres: PostgresServer | undefined;
  let sink: { child: ChildProcess; smtp: string } | undefined;
  const lovages: LovageProcess[] = [];

  beforeAll(async () => {
    network = await createTestNetwork({ hosts: HOSTS });
    const db = { host: network.ip("db"), netns: network.ns("db") };
    // allSettled: whatever started is kept for afterAll to stop, even when another failed.
    const [r, p, s] = await Promise.allSettled([
      startRedisServer(db),
      startPostgresServer(db),
      startSink(network, "db"),
    ]);
    if (r.status === "fulfilled") redis = r.value;
    if (p.status === "fulfilled") postgres = p.value;
    if (s.status === "fulfilled") sink = s.value;
    for (const result of [r, p, s]) if (result.status === "rejected") throw result.reason;
  }, 60_000);

  afterAll(async () => {
    // Each step on its own: one failing must not leave the rest (and the namespaces) behind.
    const steps: (() => Promise<unknown>)[] = [
      () => Promise.all(lovages.map((lovage) => lovage.dispose())),
      async () => {
        if (sink && sink.child.exitCode === null) {
          const exited = new Promise((done) => sink!.child.once("exit", done));
          sink.child.kill("SIGTERM");
          await exited;
        }
      },
      async () => redis?.stop(),
      async () => postgres?.stop(),
      async () => network?.destroy(),
    ];
    for (const step of steps) {
      await step().catch((error: unknown) => console.error("hosts.test.ts cleanup:", error));
    }
    if (network) {
      const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
      expect(left).not.toContain(network.prefix);
    }
  }, 60_000);

  it("sends a campaign of 1,000 from the api host through three worker hosts to the db host's SMTP sink", async () => {
    const net = network!;
    // The shared Redis of the machine (if any) is not reachable from a worker host; Redis on
    // host `db` is, across the bridge. So the workers can only be using the links.
    expect(probeTcp(net, "w1", "127.0.0.1", 6379)).toBe("ECONNREFUSED");
    expect(probeTcp(net, "w1", net.ip("db"), 6379)).toBe("open");
    expect(probeTcp(net, "w1", net.ip("db"), 5432)).toBe("open");

    const env = {
      ...CLUSTER_SECRETS,
      LOVAGE_DATABASE_URL: postgres!.url,
      LOVAGE_BROKER_URL: redis!.url,
      LOVAGE_SMTP_URL: sink!.smtp,
      LOVAGE_DEFAULT_FROM: "Lovage test <lovage@example.com>",
      // 100 batch jobs, so that each of the three workers gets some.
      LOVAGE_BATCH_SIZE: "10",
      LOVAGE_CONCURRENCY: "4",
    };
    expect(env.LOVAGE_DATABASE_URL).toBe(`postgres://postgres@${net.ip("db")}:5432/lovage`);
    expect(env.LOVAGE_BROKER_URL).toBe(`redis://${net.ip("db")}:6379`);
    expect(env.LOVAGE_SMTP_URL).toBe(`smtp://${net.ip("db")}:${SMTP_PORT}`);

    const apiPort = await net.forward("client", net.ip("api"), API_PORT);
    const sinkPort = await net.forward("client", net.ip("db"), SINK_HTTP_PORT);
    const deliveries = async () =>
      (await (await fetch(`http://127.0.0.1:${sinkPort}/deliveries`)).json()) as SinkDeliveries;

    // The API migrates the database first; then the workers start together.
    const apiProcess = await startLovage({
      command: "api",
      wrap: net.exec("api"),
      env: { ...env, LOVAGE_HOST: net.ip("api"), PORT: String(API_PORT) },
      reachAt: `http://127.0.0.1:${apiPort}`,
    });
    lovages.push(apiProcess);
    expect(apiProcess.output()).toContain(`Lovage is running at http://${net.ip("api")}:${API_PORT}`);
    const workers = await Promise.all(
      WORKERS.map(async (host) => {
        const worker = await startLovage({ command: "worker", wrap: net.exec(host), env });
        lovages.push(worker);
        return worker;
      }),
    );
    const hostByPid = new Map(workers.map((w, i) => [w.child.pid!, WORKERS[i]!]));

    type WorkerRow = { pid: number; host: string; processed: number };
    const listWorkers = async () =>
      (await api<{ workers: WorkerRow[] }>(apiProcess, "GET", "/api/workers")).body.workers;
    await waitFor(async () => (await listWorkers()).length === 3, {
      timeoutMs: 20_000,
      message: "three workers registered",
    });

    const addresses = Array.from({ length: RECIPIENTS }, (_, i) => `host-${i}@example.com`);
    const created = await api<{ campaign: CampaignView; accepted: number }>(
      apiProcess,
      "POST",
      "/api/campaigns",
      { subject: "Across hosts {{email}}", text: "Hello from another host", recipients: addresses },
    );
    expect(created.status).toBe(202);
    expect(created.body.accepted).toBe(RECIPIENTS);
    const id = created.body.campaign.id;

    const done = await waitFor(
      async () => {
        const { body } = await api<CampaignView>(apiProcess, "GET", `/api/campaigns/${id}`);
        return body.status === "completed" ? body : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, message: `campaign ${id} completed` },
    );
    expect(done.counts.sent).toBe(RECIPIENTS);
    expect(await deliveries()).toEqual({ total: RECIPIENTS, distinct: RECIPIENTS, duplicates: 0 });

    // Every worker host did part of the work: its `processed` counter (sent with its next
    // heartbeat) is above zero. The hosts share the machine's hostname, so they are told apart
    // by pid (one PID namespace: the pids are those of the processes started here).
    const rows = await waitFor(
      async () => {
        const list = await listWorkers();
        return list.length === 3 && list.every((w) => w.processed > 0) ? list : undefined;
      },
      { timeoutMs: 20_000, message: "three workers, each with processed > 0" },
    );
    expect(rows.map((w) => w.pid).sort((a, b) => a - b)).toEqual([...hostByPid.keys()].sort((a, b) => a - b));
    console.info(
      `hosts: jobs processed ${rows.map((w) => `${hostByPid.get(w.pid)}=${w.processed}`).join(" ")}`,
    );
  }, 90_000);
});
