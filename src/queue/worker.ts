/**
 * The worker runtime: one BullMQ worker per queue, running registered tasks by job name with a
 * concurrency, a time limit per attempt, and a graceful stop (stop taking jobs, let those in
 * flight finish within a timeout, then close). A watchdog restarts a BullMQ worker that is
 * connected but has stopped taking jobs while jobs wait (a known failure after a Redis blip).
 * It never decides what a task does with a failure: the handler's error decides
 * (PermanentError fails at once). A time limit or a cancel request aborts the handler's signal
 * and ends the attempt at once, whether or not the handler listens.
 */
import { hostname } from "node:os";
import { UnrecoverableError, type Job } from "bullmq";
import type { Broker, BrokerWorker } from "./connection.js";
import { PermanentError, TaskCancelledError, TaskTimeoutError } from "./errors.js";
import type { ScheduleRun } from "./schedules.js";
import {
  CANCELLED_REASON,
  META,
  SCHEDULE_OPTION,
  parseInput,
  publicJobId,
  timeoutOf,
  type TaskRegistry,
} from "./task.js";

/** How often a worker running jobs reads cancel requests: a cancelled job stops within about this. */
export const CANCEL_POLL_MS = 250;

export interface WorkerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** A job a worker is running now. */
export interface RunningJob {
  /** The public job id (`queue:id`). */
  id: string;
  task: string;
  startedAt: string;
}

/** What a worker tells of each job it finished, for the figures kept per minute. */
export interface FinishedJob {
  queue: string;
  task: string;
  /** `failed` after the last attempt; `retried` when another attempt follows. */
  state: "completed" | "failed" | "retried" | "cancelled";
  /** From when it was due (created, or its delay ran out) to when this attempt started. */
  waitMs: number;
  runMs: number;
  finishedAt: Date;
}

export interface WorkerStats {
  processed: number;
  failed: number;
  active: number;
  watchdogRestarts: number;
  lastJobAt: Date | null;
  running: RunningJob[];
}

export interface WatchdogOptions {
  /** How often to check; default 10 s. */
  intervalMs: number;
  /** How long jobs may wait with free slots and no job started before the worker is restarted; default 30 s. */
  idleMs: number;
}

/**
 * A worker is stuck when jobs have been waiting, it had free slots, and it started none for
 * `idleMs`. Pure, so that the rule is tested alone.
 */
export function isStuck(input: {
  waiting: number;
  active: number;
  concurrency: number;
  lastProgressAt: number;
  now: number;
  idleMs: number;
}): boolean {
  return (
    input.waiting > 0 && input.active < input.concurrency && input.now - input.lastProgressAt >= input.idleMs
  );
}

export interface RunningWorker {
  readonly id: string;
  readonly host: string;
  readonly queues: readonly string[];
  readonly concurrency: number;
  readonly startedAt: Date;
  stats(): WorkerStats;
  /**
   * Fault injection for tests and drills: the queue's BullMQ worker stops taking jobs while its
   * connection stays up, as a worker stuck after a broker blip does. The watchdog must recover it.
   */
  simulateStall(queue: string): Promise<void> | undefined;
  /** Stops taking jobs and waits up to `timeoutMs` for those in flight, then forces them off. */
  close(options?: { timeoutMs?: number }): Promise<void>;
}

export interface StartWorkerOptions {
  broker: Broker;
  registry: TaskRegistry;
  /** Queues to listen on; default every queue a registered task uses. */
  queues?: readonly string[];
  concurrency: number;
  logger: WorkerLogger;
  /** How long a job may run without renewing its lock before another worker takes it over. */
  lockDurationMs?: number;
  watchdog?: Partial<WatchdogOptions>;
  /** This worker's identity (`createWorkerId()`), shared with whatever else reports it; default a new one. */
  id?: string;
  /** Told of every attempt that ends (completed or failed), for the figures; must not throw. */
  onJobFinished?: (job: FinishedJob) => void;
}

/** A worker's identity: its host, its pid and a random tag, so a restarted pid is a new worker. */
export function createWorkerId(host = hostname()): string {
  return `${host}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const { broker, registry, logger } = options;
  const queues = options.queues && options.queues.length > 0 ? [...options.queues] : registry.queues();
  const stats: Omit<WorkerStats, "running"> = {
    processed: 0,
    failed: 0,
    active: 0,
    watchdogRestarts: 0,
    lastJobAt: null,
  };
  /** Jobs running now, by public id. */
  const runningJobs = new Map<string, RunningJob>();
  const controllers = new Set<AbortController>();
  const lastJobStartByQueue = new Map<string, number>();
  const host = hostname();
  const id = options.id ?? createWorkerId(host);

  /** Jobs running now, by queue and BullMQ job id, with the controller that aborts each. */
  const runningByQueue = new Map<string, Map<string, AbortController>>();

  async function run(queue: string, job: Job): Promise<unknown> {
    const task = registry.get(job.name);
    if (!task) throw new UnrecoverableError(`no task named "${job.name}" is registered in this worker`);
    const jobId = String(job.id);
    const publicId = publicJobId(queue, jobId);
    const controller = new AbortController();
    controllers.add(controller);
    const running = runningByQueue.get(queue) ?? new Map<string, AbortController>();
    runningByQueue.set(queue, running);
    running.set(jobId, controller);
    stats.active++;
    stats.lastJobAt = new Date();
    const startedAt = Date.now();
    runningJobs.set(publicId, { id: publicId, task: job.name, startedAt: new Date(startedAt).toISOString() });
    // Due since it was created, or since its delay (a retry's backoff included) ran out.
    const waitMs = Math.max(0, startedAt - (job.timestamp + (job.delay ?? 0)));
    let state: FinishedJob["state"] = "failed";
    lastJobStartByQueue.set(queue, startedAt);
    const attempt = job.attemptsMade + 1;
    let timer: NodeJS.Timeout | undefined;
    try {
      const input = parseInput(task, job.data);
      const context = { jobId: publicId, attempt, signal: controller.signal };
      const timeoutMs = timeoutOf(job.opts) ?? task.defaults.timeoutMs;
      if (timeoutMs) {
        timer = setTimeout(() => controller.abort(new TaskTimeoutError(task.name, timeoutMs)), timeoutMs);
      }
      // A handler may ignore its signal: the attempt ends when the signal fires all the same,
      // so a time limit or a cancel never waits for the handler's goodwill.
      const aborted = new Promise<never>((_, reject) => {
        // The reason is the TaskTimeoutError or TaskCancelledError given to abort(), or the
        // platform's AbortError when a forced shutdown aborts without one.
        controller.signal.addEventListener("abort", () => reject(controller.signal.reason as Error), {
          once: true,
        });
      });
      aborted.catch(() => undefined);
      const result: unknown = await Promise.race([
        Promise.resolve().then(() => task.handler(input, context)),
        aborted,
      ]);
      scheduleRuns.set(job, { outcome: "completed", error: null });
      state = "completed";
      return result;
    } catch (thrown) {
      // A handler that gives up because its signal fired throws its own error; the signal's reason says why.
      const error = controller.signal.aborted ? (controller.signal.reason as unknown) : thrown;
      const message = error instanceof Error ? error.message : String(error);
      const cancelled = error instanceof TaskCancelledError;
      await recordAttempt(job, { attempt, startedAt, error: message });
      scheduleRuns.set(job, { outcome: cancelled ? "cancelled" : "failed", error: message });
      const last = cancelled || error instanceof PermanentError || attempt >= (job.opts.attempts ?? 1);
      state = cancelled ? "cancelled" : last ? "failed" : "retried";
      if (cancelled) {
        await clearCancelRequest(queue, jobId);
        throw new UnrecoverableError(CANCELLED_REASON);
      }
      if (error instanceof PermanentError) throw new UnrecoverableError(error.message);
      throw error;
    } finally {
      clearTimeout(timer);
      controllers.delete(controller);
      running.delete(jobId);
      runningJobs.delete(publicId);
      stats.active--;
      const finishedAt = new Date();
      options.onJobFinished?.({
        queue,
        task: job.name,
        state,
        waitMs,
        runMs: finishedAt.getTime() - startedAt,
        finishedAt,
      });
    }
  }

  /**
   * Each failed attempt is written to the job's log (BullMQ keeps it with the job), so that a
   * job's detail shows every attempt with its worker, times and error, not only the last one.
   */
  async function recordAttempt(job: Job, attempt: { attempt: number; startedAt: number; error: string }) {
    const entry = {
      attempt: attempt.attempt,
      worker: id,
      startedAt: new Date(attempt.startedAt).toISOString(),
      finishedAt: new Date().toISOString(),
      error: attempt.error,
    };
    await job.log(JSON.stringify(entry)).catch((error: unknown) =>
      // The history is a convenience: the job's own failure is recorded by BullMQ regardless.
      logger.warn({ job: job.id, err: (error as Error).message }, "attempt not written to the job log"),
    );
  }

  /**
   * How each attempt of a scheduled job ended, written as the schedule's last run only once
   * BullMQ has recorded the job's own outcome: a last run read as completed must find its job
   * completed, not still active. Keyed by the job object, which BullMQ hands to its events.
   */
  const scheduleRuns = new WeakMap<Job, Pick<ScheduleRun, "outcome" | "error">>();

  async function recordScheduleRun(queue: string, job: Job | undefined) {
    const run = job && scheduleRuns.get(job);
    if (!job || !run) return;
    scheduleRuns.delete(job);
    const scheduleId = (job.opts as Record<string, unknown>)[SCHEDULE_OPTION];
    if (typeof scheduleId !== "string") return;
    const value = JSON.stringify({
      jobId: publicJobId(queue, String(job.id)),
      ...run,
      finishedAt: new Date().toISOString(),
    });
    await broker
      .queue(queue)
      .backend.setQueueMeta({ [META.scheduleRun(scheduleId)]: value })
      .catch((error: unknown) =>
        // Only the schedule's "last run" column misses it; the job itself is recorded by BullMQ.
        logger.warn({ job: job.id, err: (error as Error).message }, "schedule run not recorded"),
      );
  }

  async function clearCancelRequest(queue: string, jobId: string) {
    await broker
      .queue(queue)
      .backend.removeQueueMetaFields([META.cancelRequest(jobId)])
      // A request left behind only matters if the job is retried, and retry clears it too.
      .catch(() => undefined);
  }

  /**
   * Cancel requests reach the worker through the broker: the API writes one into the queue's
   * metadata, and this poll (only while jobs run, one read per queue) aborts the job it names.
   * Polling works alike on Redis, PostgreSQL and the embedded database, and a request made
   * while the job's worker died is seen by whichever worker takes the job over.
   */
  async function pollCancelRequests() {
    for (const [queue, running] of runningByQueue) {
      const jobIds = [...running.keys()];
      if (jobIds.length === 0) continue;
      const values = await broker
        .queue(queue)
        .backend.getQueueMetaFields(jobIds.map((jobId) => META.cancelRequest(jobId)));
      values.forEach((value, index) => {
        const jobId = jobIds[index]!;
        if (value !== null) running.get(jobId)?.abort(new TaskCancelledError(publicJobId(queue, jobId)));
      });
    }
  }

  let polling = false;
  const cancelTimer = setInterval(() => {
    if (polling || stats.active === 0) return;
    polling = true;
    pollCancelRequests()
      .catch((error: unknown) =>
        // The broker may be down; the next poll asks again.
        logger.warn({ err: (error as Error).message }, "cancel requests not read"),
      )
      .finally(() => (polling = false));
  }, CANCEL_POLL_MS);
  cancelTimer.unref();

  function createBullWorker(queue: string): BrokerWorker {
    const worker = broker.createWorker(queue, (job: Job) => run(queue, job), {
      concurrency: options.concurrency,
      lockDuration: options.lockDurationMs ?? 30_000,
      // Check for jobs of dead workers as often as a lock can lapse.
      stalledInterval: options.lockDurationMs ?? 30_000,
      autorun: true,
      // BullMQ records it on each job it hands out (processedBy): the task list shows who ran it.
      name: id,
    });
    worker.on("completed", (job) => {
      stats.processed++;
      void recordScheduleRun(queue, job);
    });
    worker.on("failed", (job, error) => {
      stats.failed++;
      void recordScheduleRun(queue, job);
      logger.warn({ queue, job: job?.id, task: job?.name, err: error.message }, "job attempt failed");
    });
    // Connection errors are retried by BullMQ itself; without a listener they would crash the process.
    worker.on("error", (error) => logger.warn({ queue, err: error.message }, "worker connection error"));
    return worker;
  }

  const workers = new Map<string, BrokerWorker>(queues.map((queue) => [queue, createBullWorker(queue)]));
  await Promise.all([...workers.values()].map((worker) => worker.waitUntilReady()));
  logger.info({ id, queues, concurrency: options.concurrency }, "worker started");

  const watchdog: WatchdogOptions = { intervalMs: 10_000, idleMs: 30_000, ...options.watchdog };
  const lastProgress = new Map<string, { at: number; waiting: number }>();
  let closingStarted = false;

  /** Replaces a stuck BullMQ worker with a new one; jobs it held are taken over after their lock. */
  async function restart(queue: string, waiting: number) {
    const stuck = workers.get(queue)!;
    logger.warn(
      { queue, waiting, idleMs: watchdog.idleMs },
      "watchdog: worker takes no jobs while jobs wait; restarting it",
    );
    stats.watchdogRestarts++;
    const replacement = createBullWorker(queue);
    workers.set(queue, replacement);
    lastProgress.set(queue, { at: Date.now(), waiting });
    // A stuck worker may never finish closing; it must not hold up the replacement.
    void Promise.race([stuck.close(true), new Promise((resolve) => setTimeout(resolve, 5_000))]).catch(
      () => undefined,
    );
    await replacement.waitUntilReady();
  }

  async function check() {
    const now = Date.now();
    for (const queue of queues) {
      const counts = await broker.queue(queue).getJobCounts("waiting", "prioritized");
      const waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0);
      const previous = lastProgress.get(queue);
      const started = lastJobStartByQueue.get(queue) ?? 0;
      // Progress: a job started, or the backlog shrank (another worker is taking them).
      const progressed = !previous || started > previous.at || waiting < previous.waiting || waiting === 0;
      const lastProgressAt = progressed ? now : previous.at;
      lastProgress.set(queue, { at: lastProgressAt, waiting });
      const active = stats.active;
      if (
        !closingStarted &&
        isStuck({
          waiting,
          active,
          concurrency: options.concurrency,
          lastProgressAt,
          now,
          idleMs: watchdog.idleMs,
        })
      ) {
        await restart(queue, waiting);
      }
    }
  }

  const watchdogTimer = setInterval(() => {
    // The broker may be down: the watchdog then has nothing to say until it is back.
    check().catch((error: unknown) =>
      logger.warn({ err: (error as Error).message }, "watchdog check failed"),
    );
  }, watchdog.intervalMs);
  watchdogTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    id,
    host,
    queues,
    concurrency: options.concurrency,
    startedAt: new Date(),
    stats: () => ({ ...stats, running: [...runningJobs.values()] }),
    simulateStall: (queue: string) => workers.get(queue)?.pause(true),
    close({ timeoutMs = 30_000 } = {}) {
      closing ??= (async () => {
        closingStarted = true;
        clearInterval(watchdogTimer);
        clearInterval(cancelTimer);
        const graceful = Promise.all([...workers.values()].map((worker) => worker.close()));
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<"expired">(
          (resolve) => (timer = setTimeout(() => resolve("expired"), timeoutMs)),
        );
        const outcome = await Promise.race([graceful.then(() => "done" as const), expired]);
        clearTimeout(timer);
        if (outcome === "expired") {
          logger.warn(
            { active: stats.active, timeoutMs },
            "jobs still running at the shutdown timeout; forcing",
          );
          for (const controller of controllers) controller.abort();
          await Promise.all([...workers.values()].map((worker) => worker.close(true)));
        }
        logger.info({ id, ...stats }, "worker stopped");
      })();
      return closing;
    },
  };
}
