/**
 * Sending tasks and reading their jobs back: `send(task, input)` returns a handle whose
 * `result()` waits for the typed result. It reads job state from the broker only; it never
 * runs a handler.
 */
import type { Job } from "bullmq";
import type { Broker } from "./connection.js";
import { TaskFailedError } from "./errors.js";
import {
  parseInput,
  parsePublicJobId,
  publicJobId,
  toJobOptions,
  validateSendOptions,
  type SendOptions,
  type TaskRef,
} from "./task.js";

export const JOB_STATES = Object.freeze({
  waiting: "waiting",
  delayed: "delayed",
  active: "active",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
} as const);
export type JobStateName = (typeof JOB_STATES)[keyof typeof JOB_STATES];

export interface JobInfo {
  id: string;
  name: string;
  state: JobStateName;
  result: unknown;
  error: string | null;
  attemptsMade: number;
  createdAt: string;
  finishedAt: string | null;
}

export interface JobHandle<O> {
  readonly id: string;
  /** Waits until the job completes and returns its result; throws TaskFailedError if it failed. */
  result(options?: { timeoutMs?: number }): Promise<O>;
}

export class SendOptionsError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid send options: ${problems.join("; ")}`);
    this.name = "SendOptionsError";
  }
}

/**
 * Waits for a job's result by reading its state until it is completed (the result) or failed
 * (TaskFailedError). Polling works the same on every backend and over HTTP, and survives a
 * reconnect; the interval grows so that a long job costs few reads.
 */
export async function pollJob(
  read: (id: string) => Promise<Pick<JobInfo, "state" | "result" | "error"> | undefined>,
  id: string,
  timeoutMs = 5 * 60_000,
): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let intervalMs = 20;
  for (;;) {
    const job = await read(id);
    if (!job) throw new Error(`job ${id} not found (it may have been removed after completing)`);
    if (job.state === "completed") return job.result;
    if (job.state === "failed") throw new TaskFailedError(id, job.error ?? "unknown error");
    if (Date.now() > deadline) throw new Error(`job ${id} did not finish within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    intervalMs = Math.min(intervalMs * 2, 500);
  }
}

export interface Producer {
  send<I, O>(task: TaskRef<I, O>, input: I, options?: SendOptions): Promise<JobHandle<Awaited<O>>>;
  getJob(id: string): Promise<JobInfo | undefined>;
  waitForResult(id: string, options?: { timeoutMs?: number }): Promise<unknown>;
}

function stateOf(state: string): JobStateName {
  switch (state) {
    case "completed":
    case "failed":
    case "active":
    case "delayed":
      return state;
    default:
      // "waiting", "prioritized", "waiting-children" are all "not started yet".
      return JOB_STATES.waiting;
  }
}

export function createProducer(broker: Broker): Producer {
  async function getJob(id: string): Promise<JobInfo | undefined> {
    const parsed = parsePublicJobId(id);
    if (!parsed) return undefined;
    const queue = broker.queue(parsed.queue);
    // State first: a job read after it is known to be completed carries its result, whereas a
    // job read first may complete before its state is read and show no result.
    const rawState = await queue.getJobState(parsed.jobId);
    if (rawState === "unknown") return undefined;
    const job = (await queue.getJob(parsed.jobId)) as Job | undefined;
    if (!job) return undefined;
    const state = stateOf(rawState);
    return {
      id,
      name: job.name,
      state,
      result: state === "completed" ? (job.returnvalue as unknown) : null,
      error: job.failedReason ? job.failedReason : null,
      attemptsMade: job.attemptsMade,
      createdAt: new Date(job.timestamp).toISOString(),
      finishedAt: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    };
  }

  const waitForResult = (id: string, options: { timeoutMs?: number } = {}) =>
    pollJob(getJob, id, options.timeoutMs);

  return {
    async send<I, O>(task: TaskRef<I, O>, input: I, options: SendOptions = {}) {
      const merged = { ...task.defaults, ...options };
      const problems = validateSendOptions(merged);
      if (problems.length > 0) throw new SendOptionsError(problems);
      const data = parseInput(task, input);
      const queueName = merged.queue ?? task.queue;
      const job = await broker.queue(queueName).add(task.name, data, toJobOptions(task.name, merged));
      const id = publicJobId(queueName, String(job.id));
      const handle: JobHandle<Awaited<O>> = {
        id,
        result: (resultOptions) => waitForResult(id, resultOptions) as Promise<Awaited<O>>,
      };
      return handle;
    },
    getJob,
    waitForResult,
  };
}
