/**
 * Queues and workers steered over HTTP: counts by state, pause and resume, retry every failed
 * job, clean finished jobs older than an age, the live workers with the jobs they run, and a
 * shutdown request read back by the worker's heartbeat. Every test runs on each backend
 * (embedded PGlite, Redis + PostgreSQL, PostgreSQL alone), with a queue of its own.
 */
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { recordHeartbeat } from "../../src/db/workers.js";
import { createProducer, type Producer } from "../../src/queue/producer.js";
import type { QueueInfo } from "../../src/queue/queues.js";
import { defineTask, TaskRegistry, type AnyTask } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { BACKENDS, openBackend, uniqueQueue, type Backend } from "../helpers/backends.js";
import { openSignedInApp } from "../helpers/api-app.js";
import { waitFor } from "../helpers/lovage-process.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe.each(BACKENDS)("queues and workers on %s", (backendName) => {
  let backend: Backend;
  let producer: Producer;
  const workers: RunningWorker[] = [];
  const apps: FastifyInstance[] = [];

  beforeAll(async () => {
    backend = await openBackend(backendName);
    producer = createProducer(backend.broker);
  }, 60_000);

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.close({ timeoutMs: 5_000 })));
    await Promise.all(apps.splice(0).map((app) => app.close()));
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

  async function api(tasks: AnyTask[]): Promise<(options: InjectOptions) => Promise<LightMyRequestResponse>> {
    const { app, call } = await openSignedInApp(backend, producer, tasks);
    apps.push(app);
    return call;
  }

  const queueInfo = async (call: (o: InjectOptions) => Promise<LightMyRequestResponse>, name: string) => {
    const response = await call({ method: "GET", url: "/api/queues" });
    expect(response.statusCode, response.body).toBe(200);
    return response.json<{ queues: QueueInfo[] }>().queues.find((q) => q.name === name);
  };

  it("pauses a queue so that no worker takes its jobs, and resumes it", async () => {
    const queue = uniqueQueue();
    const echo = defineTask("echo", { queue, handler: (input: number) => input });
    const call = await api([echo]);
    const paused = await call({ method: "POST", url: `/api/queues/${queue}/pause` });
    expect(paused.statusCode, paused.body).toBe(200);
    expect(paused.json<QueueInfo>()).toMatchObject({ name: queue, paused: true });
    await work([echo]);
    const job = await producer.send(echo, 7);
    // A worker listens, yet the job stays waiting while the queue is paused.
    await waitFor(async () => (await queueInfo(call, queue))?.counts.waiting === 1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await producer.getJob(job.id)).toMatchObject({ state: "waiting" });
    expect(await queueInfo(call, queue)).toMatchObject({
      paused: true,
      counts: { waiting: 1, completed: 0 },
    });

    const resumed = await call({ method: "POST", url: `/api/queues/${queue}/resume` });
    expect(resumed.json<QueueInfo>().paused).toBe(false);
    expect(await job.result({ timeoutMs: 20_000 })).toBe(7);
    expect(await queueInfo(call, queue)).toMatchObject({
      paused: false,
      counts: { waiting: 0, completed: 1 },
    });
  });

  it("retries every failed job of a queue, and leaves the cancelled ones cancelled", async () => {
    const queue = uniqueQueue();
    let broken = true;
    const fragile = defineTask("fragile", {
      queue,
      handler: (input: number) => {
        if (broken) throw new Error(`broken ${input}`);
        return input * 2;
      },
    });
    const call = await api([fragile]);
    const cancelledJob = await producer.send(fragile, 0, { delayMs: 60_000 });
    await producer.cancel(cancelledJob.id);
    await work([fragile]);
    const jobs = await Promise.all([1, 2, 3].map((n) => producer.send(fragile, n, { attempts: 1 })));
    await waitFor(async () => (await queueInfo(call, queue))?.counts.failed === 3);

    broken = false;
    const retried = await call({ method: "POST", url: `/api/queues/${queue}/retry-failed` });
    expect(retried.statusCode, retried.body).toBe(200);
    expect(retried.json<{ retried: number }>().retried).toBe(3);
    expect(await Promise.all(jobs.map((job) => job.result({ timeoutMs: 20_000 })))).toEqual([2, 4, 6]);
    expect(await producer.getJob(cancelledJob.id)).toMatchObject({ state: "cancelled" });
  });

  it("cleans completed jobs older than an age and keeps the younger ones", async () => {
    const queue = uniqueQueue();
    const echo = defineTask("echo", { queue, handler: (input: number) => input });
    const call = await api([echo]);
    await work([echo]);
    const jobs = await Promise.all([1, 2].map((n) => producer.send(echo, n)));
    await Promise.all(jobs.map((job) => job.result({ timeoutMs: 20_000 })));

    const young = await call({
      method: "POST",
      url: `/api/queues/${queue}/clean`,
      payload: { state: "completed", olderThanMs: 3_600_000 },
    });
    expect(young.json<{ removed: number }>().removed).toBe(0);
    const all = await call({
      method: "POST",
      url: `/api/queues/${queue}/clean`,
      payload: { state: "completed", olderThanMs: 0 },
    });
    expect(all.statusCode, all.body).toBe(200);
    expect(all.json<{ removed: number; queue: QueueInfo }>()).toMatchObject({
      removed: 2,
      queue: { counts: { completed: 0 } },
    });
    expect(await producer.getJob(jobs[0]!.id)).toBeUndefined();

    const bad = await call({
      method: "POST",
      url: `/api/queues/${queue}/clean`,
      payload: { state: "active", olderThanMs: 0, extra: 1 },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toMatch(/extra/);
    const unknown = await call({ method: "POST", url: "/api/queues/no-such-queue/pause" });
    expect(unknown.statusCode).toBe(404);
  });

  it("lists a worker with the jobs it runs now, and hands it a shutdown request at its heartbeat", async () => {
    const queue = uniqueQueue();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const hold = defineTask("hold", { queue, handler: () => held });
    const call = await api([hold]);
    const worker = await work([hold], 2);
    const snapshot = () => ({
      id: worker.id,
      host: worker.host,
      pid: process.pid,
      queues: worker.queues,
      concurrency: worker.concurrency,
      startedAt: worker.startedAt,
      ...worker.stats(),
    });
    const job = await producer.send(hold, null);
    await waitFor(() => worker.stats().running.length === 1);
    expect(await recordHeartbeat(backend.store.db, snapshot())).toEqual({ shutdownRequested: false });

    const listed = await call({ method: "GET", url: "/api/workers" });
    const seen = listed.json<{ workers: { id: string; running: { id: string; task: string }[] }[] }>();
    expect(seen.workers.find((w) => w.id === worker.id)).toMatchObject({
      queues: [queue],
      concurrency: 2,
      pid: process.pid,
      active: 1,
      running: [{ id: job.id, task: "hold" }],
      emailsSent: 0,
      shutdownRequestedAt: null,
    });

    const asked = await call({
      method: "POST",
      url: `/api/workers/${encodeURIComponent(worker.id)}/shutdown`,
    });
    expect(asked.statusCode, asked.body).toBe(202);
    expect(asked.json<{ shutdownRequestedAt: string | null }>().shutdownRequestedAt).not.toBeNull();
    expect(await recordHeartbeat(backend.store.db, snapshot())).toEqual({ shutdownRequested: true });

    release();
    await job.result({ timeoutMs: 20_000 });
    await recordHeartbeat(backend.store.db, snapshot(), true);
    const gone = await call({ method: "GET", url: `/api/workers/${encodeURIComponent(worker.id)}` });
    expect(gone.statusCode).toBe(404);
    const again = await call({
      method: "POST",
      url: `/api/workers/${encodeURIComponent(worker.id)}/shutdown`,
    });
    expect(again.statusCode).toBe(404);
  });
});
