/** Liveness and readiness (which dependency is down); the metrics are in metrics.ts. */
import type { FastifyInstance } from "fastify";
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
}
