/**
 * Periodic tasks on BullMQ's job schedulers, on every backend: one run per tick whatever the
 * number of workers and of processes applying the schedules, next and last run, disable (kept
 * in the store), enable, run now, delete, schedules declared in code, and the same over HTTP.
 */
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createScheduleStore } from "../../src/db/schedules.js";
import { createProducer, type Producer } from "../../src/queue/producer.js";
import { createSchedules, type ScheduleView, type Schedules } from "../../src/queue/schedules.js";
import { defineTask, TaskRegistry, type AnyTask } from "../../src/queue/task.js";
import { startWorker, type RunningWorker } from "../../src/queue/worker.js";
import { BACKENDS, openBackend, uniqueQueue, type Backend } from "../helpers/backends.js";
import { openSignedInApp } from "../helpers/api-app.js";
import { waitFor } from "../helpers/lovage-process.js";

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe.each(BACKENDS)("schedules on %s", (backendName) => {
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

  async function work(tasks: AnyTask[]): Promise<RunningWorker> {
    const worker = await startWorker({
      broker: backend.broker,
      registry: new TaskRegistry().register(...tasks),
      concurrency: 2,
      logger: quiet,
    });
    workers.push(worker);
    return worker;
  }

  function schedulesFor(...tasks: AnyTask[]): Schedules {
    return createSchedules({
      broker: backend.broker,
      store: createScheduleStore(backend.store.db),
      tasks: new TaskRegistry().register(...tasks),
    });
  }

  it("runs an every-2 s schedule once per tick with two workers and two processes applying it", async () => {
    const runs: string[] = [];
    const ranAt: number[] = [];
    const tick = defineTask("tick", {
      queue: uniqueQueue(),
      handler: (_input: { n: number }, context) => {
        runs.push(context.jobId);
        ranAt.push(Date.now());
        return "ticked";
      },
    });
    const api1 = schedulesFor(tick);
    const api2 = schedulesFor(tick);
    const created = await api1.create({
      id: `tick-${tick.queue}`,
      task: "tick",
      everyMs: 2000,
      input: { n: 1 },
    });
    expect(created).toMatchObject({ enabled: true, source: "api", everyMs: 2000, cron: null });
    expect(created.nextRunAt).not.toBeNull();
    // Both "processes" apply every stored schedule at start, as main does.
    await Promise.all([api1.sync([tick]), api2.sync([tick])]);
    await work([tick]);
    await work([tick]);
    await waitFor(() => runs.length >= 3, { timeoutMs: 20_000, message: "three runs" });
    expect(new Set(runs).size).toBe(runs.length);
    const ticks = runs.map((id) => id.split(":").pop());
    expect(new Set(ticks).size).toBe(runs.length);
    // A second chain of runs (two schedulers where there should be one) would come between ticks,
    // about 1 s from its neighbours on average; a run that starts late on a busy machine brings
    // the next one closer (1,225 ms was seen at load 16), never under half a tick.
    const gaps = ranAt.slice(1).map((at, index) => at - ranAt[index]!);
    expect(Math.min(...gaps)).toBeGreaterThan(1000);
    const view = await waitFor(async () => {
      const current = await api2.get(created.id);
      return current?.lastRun?.outcome === "completed" ? current : undefined;
    });
    expect(runs).toContain(view.lastRun!.jobId);
    expect(await producer.getJob(view.lastRun!.jobId)).toMatchObject({
      state: "completed",
      scheduleId: created.id,
      input: { n: 1 },
    });
    await api1.remove(created.id);
  });

  it("keeps a disabled schedule, stops its runs, and enables, runs now and deletes it", async () => {
    const runs: string[] = [];
    const report = defineTask("report", {
      queue: uniqueQueue(),
      handler: (_input: null, context) => {
        runs.push(context.jobId);
      },
    });
    const schedules = schedulesFor(report);
    const created = await schedules.create({ task: "report", cron: "0 3 * * *", timezone: "Europe/Paris" });
    expect(created.id).toMatch(/^report-/);
    expect(Date.parse(created.nextRunAt!)).toBeGreaterThan(Date.now());
    const disabled = await schedules.setEnabled(created.id, false);
    expect(disabled).toMatchObject({ enabled: false, nextRunAt: null });
    expect(await backend.broker.queue(report.queue).getJobScheduler(created.id)).toBeUndefined();
    // A new process sees it, still disabled, and applying the store does not bring it back.
    const elsewhere = schedulesFor(report);
    await elsewhere.sync([]);
    expect((await elsewhere.list()).find((s) => s.id === created.id)).toMatchObject({ enabled: false });
    expect(await backend.broker.queue(report.queue).getJobScheduler(created.id)).toBeUndefined();

    await work([report]);
    const jobId = await schedules.runNow(created.id);
    await waitFor(() => runs.includes(jobId!), { timeoutMs: 20_000 });
    const afterRun = await waitFor(async () => {
      const current = await schedules.get(created.id);
      return current?.lastRun?.jobId === jobId ? current : undefined;
    });
    expect(afterRun.lastRun).toMatchObject({ outcome: "completed", error: null });

    const enabled = await schedules.setEnabled(created.id, true);
    expect(enabled?.nextRunAt).not.toBeNull();
    const [next] = (await producer.listJobs({ queues: [report.queue], state: "delayed", limit: 5 })).tasks;
    expect(next?.scheduleId).toBe(created.id);
    await expect(producer.cancel(next!.id)).rejects.toThrow(/next run of schedule .*disable the schedule/);
    expect(await schedules.remove(created.id)).toBe(true);
    expect(await schedules.get(created.id)).toBeUndefined();
    expect(await backend.broker.queue(report.queue).getJobScheduler(created.id)).toBeUndefined();
    expect(await schedules.remove(created.id)).toBe(false);
  });

  it("registers a schedule declared with defineTask, and keeps it disabled when a user disabled it", async () => {
    const nightly = defineTask(`nightly-${uniqueQueue("n")}`, {
      queue: uniqueQueue(),
      schedule: "*/5 * * * *",
      timezone: "America/New_York",
      handler: () => "done",
    });
    const schedules = schedulesFor(nightly);
    await schedules.sync([nightly]);
    const listed = await schedules.get(nightly.name);
    expect(listed).toMatchObject({
      source: "code",
      cron: "*/5 * * * *",
      timezone: "America/New_York",
      enabled: true,
    });
    expect(Date.parse(listed!.nextRunAt!) - Date.now()).toBeLessThanOrEqual(5 * 60_000);
    await schedules.setEnabled(nightly.name, false);
    await schedules.sync([nightly]);
    expect(await schedules.get(nightly.name)).toMatchObject({ enabled: false, nextRunAt: null });
    await schedules.remove(nightly.name);
  });

  it("refuses a schedule with a bad cron, time zone, interval, input or task, naming the field", async () => {
    const task = defineTask("checked", {
      queue: uniqueQueue(),
      input: { parse: (value: unknown) => (typeof value === "number" ? value : raise("expected a number")) },
      handler: (n: number) => n,
    });
    const schedules = schedulesFor(task);
    await expect(schedules.create({ task: "checked", cron: "61 * * * *", input: 1 })).rejects.toThrow(
      /^cron:/,
    );
    await expect(schedules.create({ task: "checked", cron: "* * *", input: 1 })).rejects.toThrow(/^cron:/);
    await expect(
      schedules.create({ task: "checked", cron: "* * * * *", timezone: "Mars/Olympus", input: 1 }),
    ).rejects.toThrow(/timezone/);
    await expect(schedules.create({ task: "checked", everyMs: 10, input: 1 })).rejects.toThrow(/everyMs/);
    await expect(schedules.create({ task: "checked", input: 1 })).rejects.toThrow(/either cron or everyMs/);
    await expect(schedules.create({ task: "checked", everyMs: 5000, input: "x" })).rejects.toThrow(
      /input: expected a number/,
    );
    await expect(schedules.create({ task: "nope", everyMs: 5000 })).rejects.toThrow(/task: no task named/);
    expect(() => defineTask("bad-schedule", { schedule: "every day", handler: () => 1 })).toThrow(/cron/);
  });

  describe("over HTTP", () => {
    let app: FastifyInstance;
    const ping = defineTask("ping", { queue: uniqueQueue("http"), handler: () => "pong" });

    let call: Awaited<ReturnType<typeof openSignedInApp>>["call"];

    beforeAll(async () => {
      ({ app, call } = await openSignedInApp(backend, producer, [ping]));
    });

    afterAll(async () => {
      await app?.close();
    });

    it("creates, lists, disables, enables, runs now and deletes a schedule", async () => {
      const id = `ping-${ping.queue}`;
      const created = await call({
        method: "POST",
        url: "/api/schedules",
        payload: { id, task: "ping", cron: "*/10 * * * *", timezone: "UTC", enabled: false },
      });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json<ScheduleView>()).toMatchObject({ id, enabled: false, nextRunAt: null });
      const twice = await call({
        method: "POST",
        url: "/api/schedules",
        payload: { id, task: "ping", everyMs: 5000 },
      });
      expect(twice.statusCode).toBe(409);

      const listed = await call({ method: "GET", url: "/api/schedules" });
      expect(listed.json<{ schedules: ScheduleView[] }>().schedules.map((s) => s.id)).toContain(id);
      const enabled = await call({ method: "POST", url: `/api/schedules/${id}/enable` });
      expect(enabled.json<ScheduleView>().nextRunAt).not.toBeNull();
      const disabled = await call({ method: "POST", url: `/api/schedules/${id}/disable` });
      expect(disabled.json<ScheduleView>()).toMatchObject({ enabled: false, nextRunAt: null });

      await work([ping]);
      const run = await call({ method: "POST", url: `/api/schedules/${id}/run` });
      expect(run.statusCode, run.body).toBe(202);
      const jobId = run.json<{ id: string }>().id;
      expect(await producer.waitForResult(jobId, { timeoutMs: 20_000 })).toBe("pong");

      expect((await call({ method: "DELETE", url: `/api/schedules/${id}` })).statusCode).toBe(204);
      expect((await call({ method: "GET", url: `/api/schedules/${id}` })).statusCode).toBe(404);
      expect((await call({ method: "POST", url: `/api/schedules/${id}/run` })).statusCode).toBe(404);
    });

    it("answers 400 naming the field for a bad schedule, an unknown field or an out-of-range interval", async () => {
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ task: "ping", cron: "99 * * * *" }, /cron/],
        [{ task: "ping", cron: "* * * * *", timezone: "Nowhere/Land" }, /timezone/],
        [{ task: "ping", everyMs: 999 }, /everyMs/],
        [{ task: "ping", everyMs: 5000, colour: "red" }, /colour|additional/],
        [{ task: "missing", everyMs: 5000 }, /task/],
        [{ everyMs: 5000 }, /task/],
      ];
      for (const [payload, message] of cases) {
        const response = await call({ method: "POST", url: "/api/schedules", payload });
        expect(response.statusCode, JSON.stringify(payload)).toBe(400);
        expect(response.body).toMatch(message);
      }
    });
  });
});

function raise(message: string): never {
  throw new Error(message);
}
