import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createProducer } from "../../src/queue/producer.js";
import { defineTask, TaskRegistry } from "../../src/queue/task.js";
import { startWorker } from "../../src/queue/worker.js";
import { BACKENDS, openBackend, uniqueQueue, type Backend } from "../helpers/backends.js";
import { waitFor } from "../helpers/lovage-process.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe.each(BACKENDS)("the worker watchdog on %s", (backendName) => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await openBackend(backendName);
  });

  afterAll(async () => {
    await backend?.close();
  });

  it("replaces a worker that stopped taking jobs while jobs wait, and the jobs complete", async () => {
    const queue = uniqueQueue("wd");
    const echo = defineTask("echo", { queue, handler: (n: number) => n });
    const worker = await startWorker({
      broker: backend.broker,
      registry: new TaskRegistry().register(echo),
      concurrency: 2,
      logger: quiet,
      watchdog: { intervalMs: 200, idleMs: 1_000 },
    });
    try {
      await worker.simulateStall(queue);
      const producer = createProducer(backend.broker);
      const jobs = await Promise.all([1, 2, 3].map((n) => producer.send(echo, n)));
      await waitFor(() => worker.stats().watchdogRestarts >= 1, {
        timeoutMs: 15_000,
        message: "watchdog restart",
      });
      expect(await Promise.all(jobs.map((job) => job.result({ timeoutMs: 20_000 })))).toEqual([1, 2, 3]);
      expect(worker.stats().processed).toBe(3);
    } finally {
      await worker.close({ timeoutMs: 5_000 });
    }
  });

  it("leaves a healthy idle worker alone", async () => {
    const queue = uniqueQueue("wd-idle");
    const echo = defineTask("echo", { queue, handler: (n: number) => n });
    const worker = await startWorker({
      broker: backend.broker,
      registry: new TaskRegistry().register(echo),
      concurrency: 1,
      logger: quiet,
      watchdog: { intervalMs: 100, idleMs: 300 },
    });
    try {
      const producer = createProducer(backend.broker);
      expect(await (await producer.send(echo, 7)).result({ timeoutMs: 20_000 })).toBe(7);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(worker.stats().watchdogRestarts).toBe(0);
    } finally {
      await worker.close({ timeoutMs: 5_000 });
    }
  });
});
