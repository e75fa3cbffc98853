/**
 * Sending tasks and reading their jobs back: `send(task, input)` returns a handle whose
 * `result()` waits for the typed result; jobs are listed, cancelled and retried. It reads and
 * writes job state in the broker only; it never runs a handler.
 *
 * States: waiting → active → completed, or → delayed (a retry's backoff) → … → failed after the
 * last attempt. Cancel moves a waiting or delayed job to cancelled (removed from the queue, its
 * record kept in the queue's metadata) and an active one to cancelled through its worker (a
 * failed job whose reason is CANCELLED_REASON). Retry moves failed or cancelled to waiting.
 */
import type { Job, JobsOptions, JobType } from "bullmq";
import type { Broker, BrokerQueue } from "./connection.js";
import { TaskFailedError } from "./errors.js";
import {
  CANCELLED_REASON,
  DEFAULT_RETENTION,
  META,
  NAME,
  SCHEDULE_OPTION,
  parseInput,
  parsePublicJobId,
  publicJobId,
  toJobOptions,
  validateSendOptions,
  type Retention,
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
  queue: string;
  state: JobStateName;
  input: unknown;
  /** The result, when completed. */
  result: unknown;
  /** The last attempt's error, when failed or cancelled; never an earlier attempt's after a success. */
  error: string | null;
  /** Its stack, when BullMQ kept one. */
  stack: string | null;
  attemptsMade: number;
  maxAttempts: number;
  createdAt: string;
  /** When the latest attempt started. */
  startedAt: string | null;
  finishedAt: string | null;
  /** The worker that ran the latest attempt (its id, `host:pid:tag`). */
  worker: string | null;
  /** The schedule that started it, if any. */
  scheduleId: string | null;
}

/** One failed attempt, as the worker wrote it to the job's log. */
export interface AttemptInfo {
  attempt: number;
  worker: string;
  startedAt: string;
  finishedAt: string;
  error: string;
}

export interface JobDetail extends JobInfo {
  /** The failed attempts, oldest first; a completed last attempt is the job's own fields. */
  attempts: AttemptInfo[];
  /** The stack of each failed attempt, as BullMQ keeps them (latest last). */
  stacktrace: string[];
}

export interface JobQuery {
  /** Queues to look in. */
  queues: readonly string[];
  state?: JobStateName;
  name?: string;
  /** Case-insensitive text searched in the id, name, input, result and error. */
  q?: string;
  /** From a previous page's `nextCursor`. */
  cursor?: string;
  limit: number;
}

export interface JobPage {
  tasks: JobInfo[];
  nextCursor: string | null;
}

/** A job cannot go where it was asked to (cancel a completed job, retry a running one). */
export class JobStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JobStateError";
  }
}

/**
 * The list reads at most this many of the newest jobs per queue and state: a broker keeps up to
 * 100,000 completed jobs, and a page must not read them all.
 */
export const LIST_SCAN_LIMIT = 1000;

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
    if (job.state === "failed" || job.state === "cancelled") {
      throw new TaskFailedError(id, job.error ?? job.state);
    }
    if (Date.now() > deadline) throw new Error(`job ${id} did not finish within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    intervalMs = Math.min(intervalMs * 2, 500);
  }
}

export interface Producer {
  /** How long finished jobs are kept; jobs made elsewhere (schedules) use the same. */
  readonly retention: Retention;
  send<I, O>(task: TaskRef<I, O>, input: I, options?: SendOptions): Promise<JobHandle<Awaited<O>>>;
  getJob(id: string): Promise<JobInfo | undefined>;
  /** The job with the history of its attempts. */
  getJobDetail(id: string): Promise<JobDetail | undefined>;
  /** Jobs newest first, across the given queues. */
  listJobs(query: JobQuery): Promise<JobPage>;
  /**
   * Cancels a job: a waiting or delayed job is removed (and recorded as cancelled); an active
   * job's handler is aborted by its worker and the job ends cancelled, not retried. Answers the
   * job as it is after at most `waitMs` (an active job may still be stopping).
   */
  cancel(id: string, options?: { waitMs?: number }): Promise<JobInfo | undefined>;
  /** Runs a failed or cancelled job again, with its attempts reset. */
  retry(id: string): Promise<JobInfo | undefined>;
  waitForResult(id: string, options?: { timeoutMs?: number }): Promise<unknown>;
}

export interface ProducerOptions {
  /** How long finished jobs stay in the broker; default DEFAULT_RETENTION. */
  retention?: Retention;
}

/** The states BullMQ keeps a job in, for each Lovage state a list asks for. */
const BULL_TYPES: Record<Exclude<JobStateName, "cancelled">, JobType[]> = {
  waiting: ["wait", "prioritized", "waiting-children"],
  delayed: ["delayed"],
  active: ["active"],
  completed: ["completed"],
  failed: ["failed"],
};

function stateOf(state: string, failedReason: string | undefined): JobStateName {
  switch (state) {
    case "failed":
      return failedReason === CANCELLED_REASON ? JOB_STATES.cancelled : JOB_STATES.failed;
    case "completed":
    case "active":
    case "delayed":
      return state;
    default:
      // "waiting", "prioritized", "waiting-children" are all "not started yet".
      return JOB_STATES.waiting;
  }
}

/** A job removed before it ran, kept in the queue's metadata so that it is listed and can be retried. */
interface CancelledRecord {
  name: string;
  data: unknown;
  opts: JobsOptions;
  timestamp: number;
  cancelledAt: number;
}

const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);

function toJobInfo(queue: string, job: Job, state: JobStateName): JobInfo {
  const ended = state === "failed" || state === "cancelled";
  const stacktrace = job.stacktrace ?? [];
  const opts = job.opts as Record<string, unknown>;
  return {
    id: publicJobId(queue, String(job.id)),
    name: job.name,
    queue,
    state,
    input: job.data as unknown,
    result: state === "completed" ? (job.returnvalue as unknown) : null,
    error: ended && job.failedReason ? job.failedReason : null,
    stack: ended ? (stacktrace[stacktrace.length - 1] ?? null) : null,
    attemptsMade: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    createdAt: new Date(job.timestamp).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: state === "completed" || ended ? iso(job.finishedOn) : null,
    worker: job.processedBy ?? null,
    scheduleId: typeof opts[SCHEDULE_OPTION] === "string" ? opts[SCHEDULE_OPTION] : null,
  };
}

function describeCancelled(queue: string, jobId: string, record: CancelledRecord): JobInfo {
  const opts = record.opts as Record<string, unknown>;
  return {
    id: publicJobId(queue, jobId),
    name: record.name,
    queue,
    state: JOB_STATES.cancelled,
    input: record.data,
    result: null,
    error: "cancelled before it ran",
    stack: null,
    attemptsMade: 0,
    maxAttempts: record.opts.attempts ?? 1,
    createdAt: new Date(record.timestamp).toISOString(),
    startedAt: null,
    finishedAt: new Date(record.cancelledAt).toISOString(),
    worker: null,
    scheduleId: typeof opts[SCHEDULE_OPTION] === "string" ? opts[SCHEDULE_OPTION] : null,
  };
}

function parseCancelled(raw: string | null): CancelledRecord | undefined {
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw) as CancelledRecord;
  } catch {
    return undefined;
  }
}

function parseAttempt(line: string): AttemptInfo | undefined {
  try {
    const entry = JSON.parse(line) as Partial<AttemptInfo>;
    return typeof entry.attempt === "number" ? (entry as AttemptInfo) : undefined;
  } catch {
    // A log line a handler wrote itself, not an attempt.
    return undefined;
  }
}

interface Cursor {
  t: number;
  id: string;
}

const encodeCursor = (job: JobInfo) =>
  Buffer.from(JSON.stringify({ t: Date.parse(job.createdAt), id: job.id })).toString("base64url");

function decodeCursor(cursor: string): Cursor {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, "base64url").toString()) as Partial<Cursor>;
    if (typeof parsed.t === "number" && typeof parsed.id === "string") return { t: parsed.t, id: parsed.id };
  } catch {
    // Reported below.
  }
  throw new JobQueryError("cursor: expected the nextCursor of a previous page");
}

/** Newest first; ties by id, so that a cursor splits them the same way each time. */
const newerFirst = (a: JobInfo, b: JobInfo) =>
  Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

export class JobQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JobQueryError";
  }
}

export function createProducer(broker: Broker, options: ProducerOptions = {}): Producer {
  const retention = options.retention ?? DEFAULT_RETENTION;

  async function readJob(
    id: string,
  ): Promise<{ queue: string; jobId: string; job?: Job; info: JobInfo } | undefined> {
    const parsed = parsePublicJobId(id);
    // Only a queue name a job could have been sent to: opening a queue for any name would let
    // a request open broker connections at will.
    if (!parsed || !NAME.test(parsed.queue)) return undefined;
    const queue = broker.queue(parsed.queue);
    // State first: a job read after it is known to be completed carries its result, whereas a
    // job read first may complete before its state is read and show no result.
    const rawState = await queue.getJobState(parsed.jobId);
    if (rawState === "unknown") {
      const record = parseCancelled(await queue.backend.getQueueMetaField(META.cancelled(parsed.jobId)));
      if (!record) return undefined;
      return { ...parsed, info: describeCancelled(parsed.queue, parsed.jobId, record) };
    }
    const job = (await queue.getJob(parsed.jobId)) as Job | undefined;
    if (!job) return undefined;
    return { ...parsed, job, info: toJobInfo(parsed.queue, job, stateOf(rawState, job.failedReason)) };
  }

  const getJob = async (id: string) => (await readJob(id))?.info;

  async function getJobDetail(id: string): Promise<JobDetail | undefined> {
    const found = await readJob(id);
    if (!found) return undefined;
    if (!found.job) return { ...found.info, attempts: [], stacktrace: [] };
    const { logs } = await broker.queue(found.queue).getJobLogs(found.jobId, 0, 199, true);
    const attempts = logs.map(parseAttempt).filter((entry): entry is AttemptInfo => entry !== undefined);
    return { ...found.info, attempts, stacktrace: found.job.stacktrace ?? [] };
  }

  async function listQueue(queueName: string, state: JobStateName | undefined): Promise<JobInfo[]> {
    const queue = broker.queue(queueName);
    const wanted = state === undefined ? Object.values(JOB_STATES) : [state];
    const found: JobInfo[] = [];
    const bullStates = new Set(wanted.map((s) => (s === "cancelled" ? "failed" : s)));
    for (const bullState of bullStates) {
      for (const type of BULL_TYPES[bullState]) {
        const jobs = (await queue.getJobs([type], 0, LIST_SCAN_LIMIT - 1, false)) as Job[];
        for (const job of jobs) {
          if (!job) continue;
          const jobState = bullState === "failed" ? stateOf("failed", job.failedReason) : bullState;
          if (wanted.includes(jobState)) found.push(toJobInfo(queueName, job, jobState));
        }
      }
    }
    if (wanted.includes("cancelled")) {
      const meta = await queue.backend.getQueueMeta();
      for (const [field, raw] of Object.entries(meta)) {
        if (!field.startsWith(META.cancelledPrefix)) continue;
        const record = parseCancelled(raw);
        if (record)
          found.push(describeCancelled(queueName, field.slice(META.cancelledPrefix.length), record));
      }
    }
    return found;
  }

  async function listJobs(query: JobQuery): Promise<JobPage> {
    const after = query.cursor ? decodeCursor(query.cursor) : undefined;
    const needle = query.q?.toLowerCase();
    const perQueue = await Promise.all(query.queues.map((queue) => listQueue(queue, query.state)));
    const matching = perQueue
      .flat()
      .filter((job) => query.name === undefined || job.name === query.name)
      .filter(
        (job) =>
          needle === undefined ||
          [
            job.id,
            job.name,
            job.error ?? "",
            JSON.stringify(job.input) ?? "",
            JSON.stringify(job.result) ?? "",
          ]
            .join("\n")
            .toLowerCase()
            .includes(needle),
      )
      .filter((job) => {
        if (!after) return true;
        const t = Date.parse(job.createdAt);
        return t < after.t || (t === after.t && job.id < after.id);
      })
      .sort(newerFirst);
    const tasks = matching.slice(0, query.limit);
    const last = tasks[tasks.length - 1];
    return { tasks, nextCursor: matching.length > query.limit && last ? encodeCursor(last) : null };
  }

  /** Drops records of jobs cancelled before they ran once they are older than failed jobs are kept. */
  async function forgetOldCancelled(queue: BrokerQueue) {
    const meta = await queue.backend.getQueueMeta();
    const expired = Object.entries(meta)
      .filter(([field, raw]) => {
        if (!field.startsWith(META.cancelledPrefix)) return false;
        const record = parseCancelled(raw);
        return !record || Date.now() - record.cancelledAt > retention.failedMs;
      })
      .map(([field]) => field);
    if (expired.length > 0) await queue.backend.removeQueueMetaFields(expired);
  }

  async function cancel(id: string, { waitMs = 3_000 } = {}): Promise<JobInfo | undefined> {
    const found = await readJob(id);
    if (!found) return undefined;
    const { info } = found;
    if (info.state === "cancelled") return info;
    if (info.state === "completed" || info.state === "failed") {
      throw new JobStateError(
        `job ${id} is ${info.state}: only a waiting, delayed or active job can be cancelled (retry runs a failed one again)`,
      );
    }
    if (info.state !== "active" && found.job?.repeatJobKey) {
      // Removing a scheduler's next job would end the schedule silently: BullMQ adds the
      // following run only when this one starts.
      throw new JobStateError(
        `job ${id} is the next run of schedule ${found.job.repeatJobKey}: disable the schedule instead`,
      );
    }
    const queue = broker.queue(found.queue);
    // The request first: a job that becomes active between the read and the removal below is
    // still stopped, by the worker that took it.
    await queue.backend.setQueueMeta({ [META.cancelRequest(found.jobId)]: Date.now() });
    if (info.state !== "active" && found.job) {
      const removed = await found.job.remove().then(
        () => true,
        // Locked: a worker took it meanwhile; its worker sees the request.
        () => false,
      );
      if (removed) {
        const record: CancelledRecord = {
          name: found.job.name,
          data: found.job.data as unknown,
          opts: found.job.opts,
          timestamp: found.job.timestamp,
          cancelledAt: Date.now(),
        };
        await queue.backend.setQueueMeta({ [META.cancelled(found.jobId)]: JSON.stringify(record) });
        await queue.backend.removeQueueMetaFields([META.cancelRequest(found.jobId)]);
        await forgetOldCancelled(queue);
        return describeCancelled(found.queue, found.jobId, record);
      }
    }
    const deadline = Date.now() + waitMs;
    let current = await getJob(id);
    while (current?.state === "active" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      current = await getJob(id);
    }
    return current;
  }

  async function retry(id: string): Promise<JobInfo | undefined> {
    const found = await readJob(id);
    if (!found) return undefined;
    const queue = broker.queue(found.queue);
    if (found.info.state !== "failed" && found.info.state !== "cancelled") {
      throw new JobStateError(
        `job ${id} is ${found.info.state}: only a failed or cancelled job can be retried`,
      );
    }
    await queue.backend.removeQueueMetaFields([META.cancelRequest(found.jobId)]);
    if (!found.job) {
      // Cancelled before it ran: it is enqueued again under the same id, to run now.
      const record = parseCancelled(await queue.backend.getQueueMetaField(META.cancelled(found.jobId)));
      if (!record) return undefined;
      const { delay: _delay, ...opts } = record.opts;
      await queue.add(record.name, record.data, { ...opts, jobId: found.jobId });
      await queue.backend.removeQueueMetaFields([META.cancelled(found.jobId)]);
    } else {
      await found.job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    }
    return getJob(id);
  }

  const waitForResult = (id: string, waitOptions: { timeoutMs?: number } = {}) =>
    pollJob(getJob, id, waitOptions.timeoutMs);

  return {
    retention,
    async send<I, O>(task: TaskRef<I, O>, input: I, sendOptions: SendOptions = {}) {
      const merged = { ...task.defaults, ...sendOptions };
      const problems = validateSendOptions(merged);
      if (problems.length > 0) throw new SendOptionsError(problems);
      const data = parseInput(task, input);
      const queueName = merged.queue ?? task.queue;
      const job = await broker
        .queue(queueName)
        .add(task.name, data, toJobOptions(task.name, merged, Date.now(), retention));
      const id = publicJobId(queueName, String(job.id));
      const handle: JobHandle<Awaited<O>> = {
        id,
        result: (resultOptions) => waitForResult(id, resultOptions) as Promise<Awaited<O>>,
      };
      return handle;
    },
    getJob,
    getJobDetail,
    listJobs,
    cancel,
    retry,
    waitForResult,
  };
}
