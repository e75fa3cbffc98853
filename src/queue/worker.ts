/**
 * The worker runtime: one BullMQ worker per queue, running registered tasks by job name with a
 * concurrency, a time limit per attempt, and a graceful stop (stop taking jobs, let those in
 * flight finish within a timeout, then close). It never decides what a task does with a
 * failure: the handler's error decides (PermanentError fails at once).
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
}

export interface RunningWorker {
  readonly id: string;
  readonly queues: readonly string[];
  readonly concurrency: number;
  readonly startedAt: Date;
  stats(): WorkerStats;
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
}

export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const { broker, registry, logger } = options;
  const queues = options.queues && options.queues.length > 0 ? [...options.queues] : registry.queues();
  const stats: WorkerStats = { processed: 0, failed: 0, active: 0 };
  const controllers = new Set<AbortController>();
  const id = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;

  async function run(queue: string, job: Job): Promise<unknown> {
    const task = registry.get(job.name);
    if (!task) throw new UnrecoverableError(`no task named "${job.name}" is registered in this worker`);
    const controller = new AbortController();
    controllers.add(controller);
    stats.active++;
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

  const workers: BrokerWorker[] = queues.map((queue) => {
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
  });
  await Promise.all(workers.map((worker) => worker.waitUntilReady()));
  logger.info({ id, queues, concurrency: options.concurrency }, "worker started");

  let closing: Promise<void> | undefined;
  return {
    id,
    queues,
    concurrency: options.concurrency,
    startedAt: new Date(),
    stats: () => ({ ...stats }),
    close({ timeoutMs = 30_000 } = {}) {
      closing ??= (async () => {
        const graceful = Promise.all(workers.map((worker) => worker.close()));
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
          await Promise.all(workers.map((worker) => worker.close(true)));
        }
        logger.info({ id, ...stats }, "worker stopped");
      })();
      return closing;
    },
  };
}
