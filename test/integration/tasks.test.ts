/**
 * Tasks seen and steered: the list, a job's detail with its attempts, cancel (waiting, delayed
 * and active), retry, the per-send time limit, and the same over HTTP. Every test runs on each
 * backend (embedded PGlite, Redis + PostgreSQL, PostgreSQL alone), with a queue of its own.
 */
import { execFile } from "node:child_process";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createProducer, type JobDetail, type JobInfo, type Producer } from "../../src/queue/producer.js";
import { defineTask, TaskRegistry, type AnyTask } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { BACKENDS, openBackend, uniqueQueue, type Backend } from "../helpers/backends.js";
import { openSignedInApp } from "../helpers/api-app.js";
import { CLI, waitFor } from "../helpers/lovage-process.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe.each(BACKENDS)("tasks on %s", (backendName) => {
  let backend: Backend;
  let producer: Producer;
  const workers: RunningWorker[] = [];

  beforeAll(async () => {
    backend = await openBackend(backendName);
    producer = createProducer(backend.broker);
  }, 60_000);

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

  const stateOf = async (id: string) => (await producer.getJob(id))?.state;

  it("stops a 5 s task at its 800 ms time limit, even though the handler ignores its signal", async () => {
    let aborted = false;
    const slow = defineTask("slow", {
      queue: uniqueQueue(),
      handler: async (_input: null, context) => {
        context.signal.addEventListener("abort", () => (aborted = true));
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        return "finished";
      },
    });
    await work([slow]);
    const started = Date.now();
    const job = await producer.send(slow, null, { timeoutMs: 800, attempts: 1 });
    await expect(job.result({ timeoutMs: 10_000 })).rejects.toThrow(/time limit of 800 ms/);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(aborted).toBe(true);
    expect(await producer.getJob(job.id)).toMatchObject({ state: "failed", attemptsMade: 1 });
  });

  it("reports no error for a job whose last attempt succeeded, and keeps the failed attempts in its detail", async () => {
    const flaky = defineTask("flaky", {
      queue: uniqueQueue(),
      handler: (_input: null, context) => {
        if (context.attempt < 2) throw new Error(`attempt ${context.attempt} broke`);
        return "ok";
      },
    });
    const worker = await work([flaky]);
    const job = await producer.send(flaky, null, { attempts: 3, backoffMs: 10 });
    expect(await job.result({ timeoutMs: 20_000 })).toBe("ok");
    const detail = (await producer.getJobDetail(job.id)) as JobDetail;
    expect(detail).toMatchObject({
      state: "completed",
      result: "ok",
      error: null,
      stack: null,
      attemptsMade: 2,
    });
    expect(detail.worker).toBe(worker.id);
    expect(detail.startedAt).not.toBeNull();
    expect(detail.finishedAt).not.toBeNull();
    expect(detail.attempts).toEqual([
      expect.objectContaining({ attempt: 1, worker: worker.id, error: "attempt 1 broke" }),
    ]);
    expect(detail.stacktrace[0]).toMatch(/attempt 1 broke/);
  });

  it("cancels a delayed job: it is removed, listed as cancelled, and runs again on retry", async () => {
    const ran: string[] = [];
    const later = defineTask("later", {
      queue: uniqueQueue(),
      handler: (input: { n: number }) => {
        ran.push(String(input.n));
        return input.n * 2;
      },
    });
    const job = await producer.send(later, { n: 21 }, { delayMs: 60_000 });
    expect(await stateOf(job.id)).toBe("delayed");
    expect(await producer.cancel(job.id)).toMatchObject({ id: job.id, state: "cancelled", input: { n: 21 } });
    expect(await producer.getJob(job.id)).toMatchObject({ state: "cancelled" });
    const listed = await producer.listJobs({ queues: [later.queue], state: "cancelled", limit: 10 });
    expect(listed.tasks.map((t) => t.id)).toEqual([job.id]);
    await work([later]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ran).toEqual([]);
    expect(await producer.retry(job.id)).toMatchObject({ id: job.id });
    expect(await producer.waitForResult(job.id, { timeoutMs: 20_000 })).toBe(42);
    expect(ran).toEqual(["21"]);
  });

  it("cancels an active job within a second: its signal fires, it ends cancelled and is never retried", async () => {
    let attempts = 0;
    let abortedAt = 0;
    const endless = defineTask("endless", {
      queue: uniqueQueue(),
      handler: async (_input: null, context) => {
        attempts++;
        context.signal.addEventListener("abort", () => (abortedAt = Date.now()));
        // Ignores its signal on purpose: the attempt must end all the same.
        await new Promise((resolve) => setTimeout(resolve, 10_000));
      },
    });
    await work([endless]);
    const job = await producer.send(endless, null, { attempts: 5, backoffMs: 10 });
    await waitFor(async () => (await stateOf(job.id)) === "active", { timeoutMs: 20_000 });
    const requestedAt = Date.now();
    const after = await producer.cancel(job.id);
    expect(after?.state).toBe("cancelled");
    expect(abortedAt - requestedAt).toBeLessThan(1_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await producer.getJob(job.id)).toMatchObject({ state: "cancelled", error: "cancelled" });
    expect(attempts).toBe(1);
    await expect(producer.cancel(job.id)).resolves.toMatchObject({ state: "cancelled" });
  });

  it("retries a failed job with its attempts reset, and refuses to cancel a finished one", async () => {
    let failing = true;
    const fragile = defineTask("fragile", {
      queue: uniqueQueue(),
      handler: () => {
        if (failing) throw new Error("not yet");
        return "done";
      },
    });
    await work([fragile]);
    const job = await producer.send(fragile, null, { attempts: 1 });
    await expect(job.result({ timeoutMs: 20_000 })).rejects.toThrow(/not yet/);
    const failed = await producer.getJob(job.id);
    expect(failed).toMatchObject({ state: "failed", error: "not yet" });
    expect(failed?.stack).toMatch(/Error: not yet/);
    await expect(producer.cancel(job.id)).rejects.toThrow(/is failed/);
    failing = false;
    await producer.retry(job.id);
    expect(await job.result({ timeoutMs: 20_000 })).toBe("done");
    await expect(producer.retry(job.id)).rejects.toThrow(/only a failed or cancelled job/);
  });

  it("lists jobs newest first, filtered by state, name and text, a page at a time", async () => {
    const queue = uniqueQueue();
    const alpha = defineTask("alpha", { queue, handler: () => "a" });
    const beta = defineTask("beta", { queue, handler: () => "b" });
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      ids.push((await producer.send(n % 2 === 0 ? alpha : beta, { n, tag: `tag-${n}` })).id);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const all = await producer.listJobs({ queues: [queue], limit: 10 });
    expect(all.tasks.map((t) => t.id)).toEqual([...ids].reverse());
    expect(all.tasks[0]).toMatchObject({ state: "waiting", queue, input: { n: 4, tag: "tag-4" } });
    const first = await producer.listJobs({ queues: [queue], limit: 2 });
    expect(first.tasks.map((t) => t.id)).toEqual([ids[4], ids[3]]);
    const second = await producer.listJobs({ queues: [queue], limit: 2, cursor: first.nextCursor! });
    expect(second.tasks.map((t) => t.id)).toEqual([ids[2], ids[1]]);
    const last = await producer.listJobs({ queues: [queue], limit: 2, cursor: second.nextCursor! });
    expect(last).toEqual({ tasks: [expect.objectContaining({ id: ids[0] })], nextCursor: null });
    const betas = await producer.listJobs({ queues: [queue], name: "beta", limit: 10 });
    expect(betas.tasks.map((t) => t.id)).toEqual([ids[3], ids[1]]);
    const searched = await producer.listJobs({ queues: [queue], q: "TAG-2", limit: 10 });
    expect(searched.tasks.map((t) => t.id)).toEqual([ids[2]]);
    await work([alpha, beta]);
    await Promise.all(ids.map((id) => producer.waitForResult(id, { timeoutMs: 20_000 })));
    const completed = await producer.listJobs({ queues: [queue], state: "completed", limit: 10 });
    expect(completed.tasks).toHaveLength(5);
    expect((await producer.listJobs({ queues: [queue], state: "waiting", limit: 10 })).tasks).toEqual([]);
  });

  describe("over HTTP", () => {
    let app: FastifyInstance;
    let token: string;
    const queue = uniqueQueue("http");
    const echo = defineTask("echo", { queue, handler: (input: unknown) => input });
    const sleepy = defineTask("sleepy", {
      queue,
      handler: (_input: null, context) =>
        new Promise((resolve) => context.signal.addEventListener("abort", resolve)),
    });

    let call: Awaited<ReturnType<typeof openSignedInApp>>["call"];

    beforeAll(async () => {
      ({ app, token, call } = await openSignedInApp(backend, producer, [echo, sleepy]));
    });

    afterAll(async () => {
      await app?.close();
    });

    it("sends to another queue, lists, shows, cancels and retries", async () => {
      const otherQueue = uniqueQueue("other");
      const sent = await call({
        method: "POST",
        url: "/api/tasks/echo",
        payload: { input: { hello: "world" }, options: { queue: otherQueue, delayMs: 60_000 } },
      });
      expect(sent.statusCode, sent.body).toBe(202);
      const { id } = sent.json<{ id: string }>();
      expect(id.startsWith(`${otherQueue}:`)).toBe(true);

      const listed = await call({ method: "GET", url: `/api/tasks?queue=${otherQueue}&state=delayed` });
      expect(listed.statusCode, listed.body).toBe(200);
      expect(listed.json<{ tasks: JobInfo[] }>().tasks).toEqual([
        expect.objectContaining({ id, name: "echo", state: "delayed", input: { hello: "world" } }),
      ]);
      const shown = await call({ method: "GET", url: `/api/tasks/${id}` });
      expect(shown.json<JobDetail>()).toMatchObject({ id, state: "delayed", attempts: [] });

      const cancelled = await call({ method: "POST", url: `/api/tasks/${id}/cancel` });
      expect(cancelled.statusCode, cancelled.body).toBe(200);
      expect(cancelled.json<JobInfo>().state).toBe("cancelled");
      const again = await call({ method: "POST", url: `/api/tasks/${id}/retry` });
      expect(again.statusCode, again.body).toBe(200);
      expect(again.json<JobInfo>().state).toBe("waiting");
      const worker = await startWorker({
        broker: backend.broker,
        registry: new TaskRegistry().register(echo),
        queues: [otherQueue],
        concurrency: 1,
        logger: quiet,
      });
      workers.push(worker);
      await waitFor(async () => (await stateOf(id)) === "completed", { timeoutMs: 20_000 });
      const retryDone = await call({ method: "POST", url: `/api/tasks/${id}/retry` });
      expect(retryDone.statusCode).toBe(409);
      expect(retryDone.json<{ error: { message: string } }>().error.message).toMatch(/is completed/);
    });

    it("cancels an active task over HTTP and its handler's signal ends it", async () => {
      await work([sleepy]);
      const sent = await call({ method: "POST", url: "/api/tasks/sleepy", payload: { input: null } });
      const { id } = sent.json<{ id: string }>();
      await waitFor(async () => (await stateOf(id)) === "active", { timeoutMs: 20_000 });
      const cancelled = await call({ method: "POST", url: `/api/tasks/${id}/cancel` });
      expect(cancelled.statusCode, cancelled.body).toBe(200);
      expect(cancelled.json<JobInfo>().state).toBe("cancelled");
    });

    it("lists, shows, cancels and retries with the lovage tasks command (the built CLI)", async () => {
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      const lovage = (...args: string[]) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            [CLI, "tasks", ...args],
            { env: { PATH: process.env.PATH, LOVAGE_URL: url, LOVAGE_TOKEN: token }, timeout: 30_000 },
            (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
          );
        });
      const sent = await call({
        method: "POST",
        url: "/api/tasks/echo",
        payload: { input: { word: "marjoram" }, options: { delayMs: 60_000 } },
      });
      const { id } = sent.json<{ id: string }>();

      const listed = await lovage("--queue", queue, "--state", "delayed", "--search", "marjoram");
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout.split("\n")[0]).toMatch(/^ID +TASK +STATE +ATTEMPTS/);
      expect(listed.stdout).toContain(`${id}  echo`);
      const shown = await lovage("show", id);
      expect(shown.stdout).toMatch(/state: +delayed/);
      expect(shown.stdout).toContain('{"word":"marjoram"}');
      expect(await lovage("cancel", id)).toMatchObject({ code: 0, stdout: `${id} cancelled\n` });
      expect(await lovage("retry", id)).toMatchObject({ code: 0, stdout: `${id} waiting\n` });
      const json = JSON.parse((await lovage("show", id, "--json")).stdout) as JobDetail;
      expect(json).toMatchObject({ id, state: "waiting" });
      const refused = await lovage("retry", id);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/HTTP 409/);
      expect(await lovage("--state", "lost")).toMatchObject({ code: 2 });
      expect(await lovage("show")).toMatchObject({ code: 2 });
      await call({ method: "POST", url: `/api/tasks/${id}/cancel` });
    });

    it("refuses bad list queries, unknown fields and unknown jobs with a clear 4xx", async () => {
      const badState = await call({ method: "GET", url: "/api/tasks?state=lost" });
      expect(badState.statusCode).toBe(400);
      expect(badState.body).toMatch(/state/);
      const badLimit = await call({ method: "GET", url: "/api/tasks?limit=100000" });
      expect(badLimit.statusCode).toBe(400);
      const unknown = await call({ method: "GET", url: "/api/tasks?colour=blue" });
      expect(unknown.statusCode).toBe(400);
      const badCursor = await call({ method: "GET", url: "/api/tasks?cursor=nope" });
      expect(badCursor.statusCode).toBe(400);
      expect(badCursor.body).toMatch(/cursor/);
      const missing = await call({ method: "POST", url: `/api/tasks/${queue}:no-such-job/cancel` });
      expect(missing.statusCode).toBe(404);
      const badOption = await call({
        method: "POST",
        url: "/api/tasks/echo",
        payload: { input: 1, options: { timeoutMs: 0 } },
      });
      expect(badOption.statusCode).toBe(400);
      expect(badOption.body).toMatch(/timeoutMs/);
    });
  });
});
