/** Liveness, readiness (which dependency is down) and Prometheus metrics. */
import type { FastifyInstance } from "fastify";
import { Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { countsByStatus } from "../../db/recipients.js";
import type { AppDeps } from "../app.js";
import { noQuery } from "../input.js";

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
      const ready = database === "up" && broker === "up";
      return reply
        .status(ready ? 200 : 503)
        .send({ status: ready ? "ready" : "unavailable", database, broker });
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
  app.get(
    "/metrics",
    { config: { access: "public" }, schema: { hide: true, querystring: noQuery } },
    async (_request, reply) => {
      const body = await registry.metrics();
      return reply.header("content-type", registry.contentType).send(body);
    },
  );
}
