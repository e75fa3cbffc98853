/**
 * The monitor with real processes: `lovage api` and two `lovage worker`s on a Redis of the
 * test's own and a fresh PostgreSQL database. A worker asked to shut down over HTTP finishes,
 * leaves the list and its process exits 0; the events stream tells of it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerView } from "../../src/db/workers.js";
import { createTestDatabase } from "../helpers/backends.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { api, waitFor } from "../helpers/lovage-process.js";
import { startRedisServer, type RedisServer } from "../helpers/services.js";

describe("the monitor on a cluster", () => {
  let redis: RedisServer;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let cluster: Cluster;

  beforeAll(async () => {
    [redis, database] = await Promise.all([startRedisServer(), createTestDatabase()]);
    cluster = await startCluster({
      env: { LOVAGE_DATABASE_URL: database.url, LOVAGE_BROKER_URL: redis.url },
      workers: 2,
    });
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    await redis?.stop();
    await database?.drop();
  });

  const liveWorkers = async () =>
    (await api<{ workers: WorkerView[] }>(cluster.api, "GET", "/api/workers")).body.workers;

  it("shuts a worker down on request: it leaves the list, its process exits 0, the stream tells", async () => {
    const workers = await waitFor(async () => {
      const live = await liveWorkers();
      return live.length === 2 ? live : undefined;
    });
    const events = new AbortController();
    const stream = await fetch(`${cluster.api.url}/api/events?token=${cluster.api.token}`, {
      signal: events.signal,
    });
    const reader = stream.body!.getReader();
    let heard = "";
    const reading = (async () => {
      for (;;) {
        const chunk = (await reader.read()) as { value?: Uint8Array; done: boolean };
        if (chunk.done || !chunk.value) return;
        heard += Buffer.from(chunk.value).toString();
      }
    })().catch(() => undefined);
    try {
      await waitFor(() => heard.includes("event: workers"), { message: "a workers event" });
      const target = workers[0]!;
      const member = cluster.workers.find((w) => w.output().includes(target.id))!;
      expect(member).toBeDefined();
      const exited = new Promise<number | null>((resolve) => {
        if (member.child.exitCode !== null) resolve(member.child.exitCode);
        else member.child.once("exit", (code) => resolve(code));
      });
      const asked = await api<WorkerView>(
        cluster.api,
        "POST",
        `/api/workers/${encodeURIComponent(target.id)}/shutdown`,
      );
      expect(asked.status).toBe(202);
      expect(asked.body.shutdownRequestedAt).not.toBeNull();
      // It reads the request at its next heartbeat (5 s), stops, and its process exits by itself.
      expect(await exited).toBe(0);
      const left = await liveWorkers();
      expect(left.map((w) => w.id)).toEqual([workers[1]!.id]);
      await waitFor(
        () => {
          const last = heard.split("event: workers\ndata: ").pop()!.split("\n")[0]!;
          const listed = (JSON.parse(last) as { workers: WorkerView[] }).workers.map((w) => w.id);
          return listed.length === 1 && listed[0] === workers[1]!.id;
        },
        { message: "a workers event without the stopped worker" },
      );
    } finally {
      events.abort();
      await reading;
    }
  }, 60_000);
});
