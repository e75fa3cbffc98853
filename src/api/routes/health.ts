/** Liveness, readiness (which dependency is down) and Prometheus metrics. */
import type { FastifyInstance } from "fastify";
import { Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { countsByStatus } from "../../db/recipients.js";
import { countSmtpEvents } from "../../db/smtp.js";
import type { AppDeps } from "../app.js";
import { noQuery } from "../input.js";
import { smtpServers } from "../present.js";

/**
 * `down` when workers report servers and none is in (each out or suspended); `unknown` when no
 * worker has reported (none is running, or the store is down).
 */
async function smtpState(deps: AppDeps): Promise<"up" | "down" | "unknown"> {
  try {
    const servers = await smtpServers(deps.db, deps.workerTimeoutMs ?? 15_000);
    if (servers.length === 0) return "unknown";
    return servers.some((s) => s.state === "in" || s.state === "probing") ? "up" : "down";
  } catch {
    return "unknown";
  }
}

async function check(probe: () => Promise<void>, timeoutMs = 2_000): Promise<"up" | "down"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"down">((resolve) => (timer = setTimeout(() => resolve("down"), timeoutMs)));
  const result = await Promise.race([
    probe().then(
      () => "up" as const,
      () => "down" as const,
    ),
    timeout,
  ]);
  clearTimeout(timer);
  return result;
}

export async function healthRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get(
    "/healthz",
    { config: { access: "public" }, schema: { hide: true, querystring: noQuery } },
    async () => ({ status: "ok" }),
  );

  app.get(
    "/readyz",
    { config: { access: "public" }, schema: { hide: true, querystring: noQuery } },
    async (_request, reply) => {
      const [database, broker] = await Promise.all([check(deps.ping.database), check(deps.ping.broker)]);
      // SMTP is reported, not required: with every relay down the API still serves (and shows
      // the campaigns waiting), so a load balancer must keep sending it requests.
      const smtp = database === "up" ? await smtpState(deps) : "unknown";
      const ready = database === "up" && broker === "up";
      return reply
        .status(ready ? 200 : 503)
        .send({ status: ready ? "ready" : "unavailable", database, broker, smtp });
    },
  );

  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "lovage_" });
  new Gauge({
    name: "lovage_recipients",
    help: "Recipients by status, across all campaigns",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      const counts = await countsByStatus(deps.db);
      this.reset();
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  const serverGauge = (
    name: string,
    help: string,
    value: (s: Awaited<ReturnType<typeof smtpServers>>[number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ["server"],
      registers: [registry],
      async collect() {
        const servers = await smtpServers(deps.db, deps.workerTimeoutMs ?? 15_000);
        this.reset();
        for (const server of servers) this.set({ server: server.name }, value(server));
      },
    });
  serverGauge(
    "lovage_smtp_server_up",
    "1 when the SMTP server is in (any worker can use it), 0 when out or suspended",
    (s) => (s.state === "in" || s.state === "probing" ? 1 : 0),
  );
  serverGauge(
    "lovage_smtp_server_rate",
    "Messages per second the SMTP server accepted, over the last 10 s, all workers",
    (s) => s.rate,
  );
  serverGauge(
    "lovage_smtp_server_sent",
    "Messages the SMTP server accepted since the workers started",
    (s) => s.sent,
  );
  serverGauge(
    "lovage_smtp_server_deferred",
    "Messages answered 4xx or not tried on the SMTP server",
    (s) => s.deferred,
  );
  new Gauge({
    name: "lovage_smtp_events",
    help: "Pace events (out, in, slower, faster, suspended, resumed, connections) by server, last 7 days",
    labelNames: ["server", "kind"],
    registers: [registry],
    async collect() {
      const rows = await countSmtpEvents(deps.db);
      this.reset();
      for (const row of rows) this.set({ server: row.name, kind: row.kind }, row.n);
    },
  });
  app.get(
    "/metrics",
    { config: { access: "public" }, schema: { hide: true, querystring: noQuery } },
    async (_request, reply) => {
      const body = await registry.metrics();
      return reply.header("content-type", registry.contentType).send(body);
    },
  );
}
