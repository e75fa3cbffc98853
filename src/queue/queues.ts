/**
 * Queues as a whole, as Bull Board steers them: counts by state, pause and resume (every worker
 * of every host stops taking the queue's jobs; those running finish), retry every failed job,
 * and clean finished jobs older than an age. It acts on the broker only, through BullMQ's own
 * queue calls, which every backend (Redis, PostgreSQL, embedded) implements; it never runs a job.
 */
import type { Job } from "bullmq";
import type { Broker } from "./connection.js";
import { CANCELLED_REASON } from "./task.js";

export const QUEUE_STATES = Object.freeze({
  waiting: "waiting",
  active: "active",
  delayed: "delayed",
  completed: "completed",
  failed: "failed",
} as const);
export type QueueStateName = (typeof QUEUE_STATES)[keyof typeof QUEUE_STATES];

export interface QueueInfo {
  name: string;
  paused: boolean;
  /** `waiting` includes prioritized jobs: both are "not started yet". */
  counts: Record<QueueStateName, number>;
}

/** The finished states that clean removes. */
export type CleanState = "completed" | "failed";

export interface QueueAdmin {
  info(name: string): Promise<QueueInfo>;
  pause(name: string): Promise<QueueInfo>;
  resume(name: string): Promise<QueueInfo>;
  /** Runs every failed job again (not the cancelled ones: they were stopped on purpose); answers how many. */
  retryFailed(name: string): Promise<number>;
  /** Removes jobs of `state` that finished more than `olderThanMs` ago; answers how many. */
  clean(name: string, state: CleanState, olderThanMs: number): Promise<number>;
}

/** Failed jobs are read and retried this many at a time. */
const RETRY_PAGE = 500;

export function createQueueAdmin(broker: Broker): QueueAdmin {
  async function info(name: string): Promise<QueueInfo> {
    const queue = broker.queue(name);
    const [raw, paused] = await Promise.all([
      queue.getJobCounts("waiting", "prioritized", "active", "delayed", "completed", "failed"),
      queue.isPaused(),
    ]);
    const n = (state: string) => raw[state] ?? 0;
    return {
      name,
      paused,
      counts: {
        waiting: n("waiting") + n("prioritized"),
        active: n("active"),
        delayed: n("delayed"),
        completed: n("completed"),
        failed: n("failed"),
      },
    };
  }

  return {
    info,
    async pause(name) {
      await broker.queue(name).pause();
      return info(name);
    },
    async resume(name) {
      await broker.queue(name).resume();
      return info(name);
    },
    async retryFailed(name) {
      const queue = broker.queue(name);
      let retried = 0;
      // Cancelled jobs stay failed, so the window moves past them; retried ones leave it.
      let skipped = 0;
      for (;;) {
        const jobs = (await queue.getJobs(["failed"], skipped, skipped + RETRY_PAGE - 1, true)) as Job[];
        if (jobs.length === 0) return retried;
        for (const job of jobs) {
          if (!job) continue;
          if (job.failedReason === CANCELLED_REASON) {
            skipped++;
            continue;
          }
          // Another caller may have retried or removed it meanwhile: then it is not ours to count.
          const done = await job
            .retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true })
            .then(
              () => true,
              () => false,
            );
          if (done) retried++;
          else skipped++;
        }
      }
    },
    async clean(name, state, olderThanMs) {
      const removed = await broker.queue(name).clean(olderThanMs, 0, state);
      return removed.length;
    },
  };
}
