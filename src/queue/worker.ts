/**
 * The worker runtime: one BullMQ worker per queue, running registered tasks by job name with a
 * concurrency, a time limit per attempt, and a graceful stop (stop taking jobs, let those in
 * flight finish within a timeout, then close). A watchdog restarts a BullMQ worker that is
 * connected but has stopped taking jobs while jobs wait (a known failure after a Redis blip).
 * It never decides what a task does with a failure: the handler's error decides
 * (PermanentError fails at once).
 */
import { hostname } from "node:os";
import { UnrecoverableError, type Job } from "bullmq";
import type { Broker, BrokerWorker } from "./connection.js";
import { PermanentError, TaskTimeoutError } from "./errors.js";
import { parseInput, publicJobId, type TaskRegistry } from "./task.js";

export interface WorkerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface WorkerStats {
  processed: number;
  failed: number;
  active: number;
  watchdogRestarts: number;
  lastJobAt: Date | null;
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
}

/** A worker's identity: its host, its pid and a random tag, so a restarted pid is a new worker. */
export function createWorkerId(host = hostname()): string {
  return `${host}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const { broker, registry, logger } = options;
  const queues = options.queues && options.queues.length > 0 ? [...options.queues] : registry.queues();
  const stats: WorkerStats = { processed: 0, failed: 0, active: 0, watchdogRestarts: 0, lastJobAt: null };
  const controllers = new Set<AbortController>();
  const lastJobStartByQueue = new Map<string, number>();
  const host = hostname();
  const id = options.id ?? createWorkerId(host);

  async function run(queue: string, job: Job): Promise<unknown> {
    const task = registry.get(job.name);
    if (!task) throw new UnrecoverableError(`no task named "${job.name}" is registered in this worker`);
    const controller = new AbortController();
    controllers.add(controller);
    stats.active++;
    stats.lastJobAt = new Date();
    lastJobStartByQueue.set(queue, Date.now());
    let timer: NodeJS.Timeout | undefined;
    try {
      const input = parseInput(task, job.data);
      const context = {
        jobId: publicJobId(queue, String(job.id)),
        attempt: job.attemptsMade + 1,
        signal: controller.signal,
      };
      const timeoutMs =
        (job.data as { __timeoutMs?: number } | undefined)?.__timeoutMs ?? task.defaults.timeoutMs;
      const running = Promise.resolve(task.handler(input, context));
      if (!timeoutMs) return await running;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(new TaskTimeoutError(task.name, timeoutMs));
        }, timeoutMs);
      });
      return await Promise.race([running, timeout]);
    } catch (error) {
      if (error instanceof PermanentError) throw new UnrecoverableError(error.message);
      throw error;
    } finally {
      clearTimeout(timer);
      controllers.delete(controller);
      stats.active--;
    }
  }

  function createBullWorker(queue: string): BrokerWorker {
    const worker = broker.createWorker(queue, (job: Job) => run(queue, job), {
      concurrency: options.concurrency,
      lockDuration: options.lockDurationMs ?? 30_000,
      // Check for jobs of dead workers as often as a lock can lapse.
      stalledInterval: options.lockDurationMs ?? 30_000,
      autorun: true,
    });
    worker.on("completed", () => stats.processed++);
    worker.on("failed", (job, error) => {
      stats.failed++;
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
    stats: () => ({ ...stats }),
    simulateStall: (queue: string) => workers.get(queue)?.pause(true),
    close({ timeoutMs = 30_000 } = {}) {
      closing ??= (async () => {
        closingStarted = true;
        clearInterval(watchdogTimer);
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
