import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { PermanentError, TaskFailedError } from "../../src/queue/errors.js";
import { createProducer, type Producer } from "../../src/queue/producer.js";
import { defineTask, TaskRegistry, toBullPriority, type AnyTask } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { BACKENDS, openBackend, uniqueQueue, type Backend } from "../helpers/backends.js";
import { waitFor } from "../helpers/lovage-process.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe.each(BACKENDS)("the task queue on %s", (backendName) => {
  let backend: Backend;
  let producer: Producer;
  const workers: RunningWorker[] = [];

  beforeAll(async () => {
    backend = await openBackend(backendName);
    producer = createProducer(backend.broker);
  });

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.close({ timeoutMs: 5_000 })));
  });

  afterAll(async () => {
    await backend?.close();
  });

  async function work(tasks: AnyTask[], concurrency = 5): Promise<RunningWorker> {
    const worker = await startWorker({
      broker: backend.broker,
      registry: new TaskRegistry().register(...tasks),
      concurrency,
      logger: quiet,
    });
    workers.push(worker);
    return worker;
  }

  it("sends add(10, 20) and returns the typed result 30", async () => {
    const add = defineTask("add", {
      queue: uniqueQueue(),
      input: z.object({ a: z.number(), b: z.number() }),
      handler: ({ a, b }) => a + b,
    });
    await work([add]);
    const job = await producer.send(add, { a: 10, b: 20 });
    const result: number = await job.result({ timeoutMs: 20_000 });
    expect(result).toBe(30);
    expect(await producer.getJob(job.id)).toMatchObject({ name: "add", state: "completed", result: 30 });
  });

  it("rejects an input that fails the task's schema before enqueueing it", async () => {
    const add = defineTask("add-checked", {
      queue: uniqueQueue(),
      input: z.object({ a: z.number(), b: z.number() }),
      handler: ({ a, b }) => a + b,
    });
    await expect(producer.send(add, { a: 1, b: "x" } as never)).rejects.toThrow(/expected number/i);
  });

  it("retries a failing task with backoff and succeeds on the third attempt", async () => {
    const calls: number[] = [];
    const flaky = defineTask("flaky", {
      queue: uniqueQueue(),
      handler: (_input: null, context) => {
        calls.push(context.attempt);
        if (context.attempt < 3) throw new Error(`attempt ${context.attempt} failed`);
        return "ok";
      },
    });
    await work([flaky]);
    const job = await producer.send(flaky, null, { attempts: 5, backoffMs: 50 });
    expect(await job.result({ timeoutMs: 20_000 })).toBe("ok");
    expect(calls).toEqual([1, 2, 3]);
  });

  it("fails a task after its last attempt and keeps the error", async () => {
    const broken = defineTask("broken", {
      queue: uniqueQueue(),
      handler: () => {
        throw new Error("always broken");
      },
    });
    await work([broken]);
    const job = await producer.send(broken, null, { attempts: 2, backoffMs: 10 });
    await expect(job.result({ timeoutMs: 20_000 })).rejects.toBeInstanceOf(TaskFailedError);
    expect(await producer.getJob(job.id)).toMatchObject({ state: "failed", error: "always broken" });
  });

  it("does not retry a PermanentError", async () => {
    let calls = 0;
    const permanent = defineTask("permanent", {
      queue: uniqueQueue(),
      handler: () => {
        calls++;
        throw new PermanentError("bad address");
      },
    });
    await work([permanent]);
    const job = await producer.send(permanent, null, { attempts: 5, backoffMs: 10 });
    await expect(job.result({ timeoutMs: 20_000 })).rejects.toThrow(/bad address/);
    expect(calls).toBe(1);
  });

  it("enqueues a job once per idempotency key", async () => {
    let runs = 0;
    const once = defineTask("once", {
      queue: uniqueQueue(),
      handler: () => ++runs,
    });
    const first = await producer.send(once, null, { idempotencyKey: "order-42" });
    const second = await producer.send(once, null, { idempotencyKey: "order-42" });
    expect(second.id).toBe(first.id);
    await work([once]);
    expect(await first.result({ timeoutMs: 20_000 })).toBe(1);
    const third = await producer.send(once, null, { idempotencyKey: "order-43" });
    expect(await third.result({ timeoutMs: 20_000 })).toBe(2);
    expect(runs).toBe(2);
  });

  it("runs a delayed job no sooner than its delay", async () => {
    const stamp = defineTask("stamp", { queue: uniqueQueue(), handler: () => Date.now() });
    await work([stamp]);
    const sentAt = Date.now();
    const job = await producer.send(stamp, null, { delayMs: 700 });
    expect((await producer.getJob(job.id))?.state).toBe("delayed");
    const ranAt = await job.result({ timeoutMs: 20_000 });
    expect(ranAt - sentAt).toBeGreaterThanOrEqual(650);
  });

  it("runs higher-priority jobs first", async () => {
    const order: string[] = [];
    const queue = uniqueQueue();
    const record = defineTask("record", {
      queue,
      handler: (label: string) => {
        order.push(label);
      },
    });
    const jobs = [];
    for (const [label, priority] of [
      ["low", -10],
      ["normal", 0],
      ["high", 50],
      ["urgent", 100],
    ] as const) {
      jobs.push(await producer.send(record, label, { priority }));
    }
    await work([record], 1);
    await Promise.all(jobs.map((job) => job.result({ timeoutMs: 20_000 })));
    expect(order).toEqual(["urgent", "high", "normal", "low"]);
    expect(toBullPriority(100)).toBeLessThan(toBullPriority(-100));
  });

  it("fails an attempt that runs past its time limit", async () => {
    const slow = defineTask("slow", {
      queue: uniqueQueue(),
      handler: (_input: null, context) =>
        new Promise((resolve) => {
          const timer = setTimeout(resolve, 5_000);
          context.signal.addEventListener("abort", () => clearTimeout(timer));
        }),
      defaults: { timeoutMs: 200, attempts: 1 },
    });
    await work([slow]);
    const job = await producer.send(slow, null);
    await expect(job.result({ timeoutMs: 20_000 })).rejects.toThrow(/time limit of 200 ms/);
  });

  it("finishes the jobs in flight when it is closed, and takes no new ones", async () => {
    let finished = 0;
    const queue = uniqueQueue();
    const sleepy = defineTask("sleepy", {
      queue,
      handler: async () => {
        await new Promise((resolve) => setTimeout(resolve, 400));
        finished++;
      },
    });
    const worker = await work([sleepy], 2);
    const jobs = [await producer.send(sleepy, null), await producer.send(sleepy, null)];
    await waitFor(() => worker.stats().active === 2, { message: "both jobs active" });
    await worker.close({ timeoutMs: 10_000 });
    expect(finished).toBe(2);
    for (const job of jobs) expect((await producer.getJob(job.id))?.state).toBe("completed");
    const later = await producer.send(sleepy, null);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await producer.getJob(later.id))?.state).toBe("waiting");
  });
});
