/**
 * Tasks: a name, an optional input parser and a handler. A producer sends a task with an input;
 * a worker that has the same definition registered runs it. This module only describes tasks
 * and turns send options into BullMQ job options; it never connects to anything.
 */
import { createHash, randomUUID } from "node:crypto";
import { getNextMillis, type JobsOptions } from "bullmq";

export const DEFAULT_QUEUE = "default";

export interface TaskContext {
  /** The public job id (`queue:id`). */
  readonly jobId: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Aborted when the time limit passes or the worker is forced to stop. */
  readonly signal: AbortSignal;
}

/** Anything with a zod-like `parse`: it returns the typed input or throws. */
export interface InputParser<I> {
  parse(input: unknown): I;
}

export interface SendOptions {
  /** Higher runs sooner; from -100 to 100; default 0. */
  readonly priority?: number;
  /** Run no sooner than this many milliseconds from now. */
  readonly delayMs?: number;
  /** Run no sooner than this time (wins over delayMs). */
  readonly runAt?: Date;
  /** Attempts before the job is failed; default 3. */
  readonly attempts?: number;
  /** First retry delay in ms, doubled at each attempt, with jitter; default 1000. */
  readonly backoffMs?: number;
  /** Time limit of one attempt in ms; unset means none. */
  readonly timeoutMs?: number;
  /** Jobs sent with the same key (and task) are enqueued once. */
  readonly idempotencyKey?: string;
  /** Queue to send to; default the task's. */
  readonly queue?: string;
}

/**
 * What a producer needs to send a task: its name, queue, input parser and default options,
 * without the handler. A process that only sends (the API, for send-batch jobs) holds a
 * reference; the worker that runs it registers the definition made from it.
 */
export interface TaskRef<I = unknown, O = unknown> {
  readonly name: string;
  readonly queue: string;
  readonly input: InputParser<I> | undefined;
  readonly defaults: SendOptions;
  /** When set, the task also runs by itself on this schedule (see schedules.ts). */
  readonly schedule?: TaskSchedule;
  /** Never set: it carries the output type, so that results are typed. */
  readonly output?: O;
}

export interface TaskDefinition<I = unknown, O = unknown> extends TaskRef<I, O> {
  readonly handler: (input: I, context: TaskContext) => O | Promise<O>;
}

/** A task of any input and output, as a registry holds them; each input is checked by its task's own parser. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the input type is invariant (parser and handler), so only any admits every task
export type AnyTask = TaskDefinition<any, any>;

/** The input and output types of a task, for typed `send` and `result`. */
export type TaskInput<T> = T extends TaskDefinition<infer I, unknown> ? I : never;
export type TaskOutput<T> = T extends TaskDefinition<never, infer O> ? Awaited<O> : never;

/** A periodic run of a task: a cron expression or a fixed interval, with the input each run gets. */
export interface TaskSchedule {
  /** Five or six fields (seconds first when six), as BullMQ's job schedulers read them. */
  readonly cron?: string;
  /** Every this many milliseconds, instead of a cron expression. */
  readonly everyMs?: number;
  /** IANA time zone the cron expression is read in; default UTC. */
  readonly timezone?: string;
  readonly input?: unknown;
}

export const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

interface TaskDeclaration<I> {
  input?: InputParser<I>;
  queue?: string;
  defaults?: SendOptions;
  /** A cron expression (`"*\/5 * * * *"`) or a full schedule: the task then runs by itself. */
  schedule?: string | TaskSchedule;
  /** Time zone of a cron `schedule` given as a string; default UTC. */
  timezone?: string;
}

export function defineTask<I, O>(
  name: string,
  definition: TaskDeclaration<I> & { handler: (input: I, context: TaskContext) => O | Promise<O> },
): TaskDefinition<I, O> {
  return implementTask(declareTask<I, O>(name, definition), definition.handler);
}

/** A task's reference alone, for the processes that send it but do not run it. */
export function declareTask<I, O>(name: string, declaration: TaskDeclaration<I> = {}): TaskRef<I, O> {
  if (!NAME.test(name)) throw new Error(`task name "${name}" must match ${NAME.source}`);
  const queue = declaration.queue ?? DEFAULT_QUEUE;
  if (!NAME.test(queue)) throw new Error(`queue name "${queue}" of task ${name} must match ${NAME.source}`);
  const schedule =
    typeof declaration.schedule === "string"
      ? { cron: declaration.schedule, timezone: declaration.timezone }
      : declaration.schedule && { timezone: declaration.timezone, ...declaration.schedule };
  if (schedule) {
    const problems = validateSchedule(schedule);
    if (problems.length > 0) throw new Error(`schedule of task ${name}: ${problems.join("; ")}`);
  }
  return Object.freeze({
    name,
    queue,
    input: declaration.input,
    defaults: declaration.defaults ?? {},
    ...(schedule ? { schedule: Object.freeze(schedule) } : {}),
  });
}

/** What is wrong with a schedule, each problem with its field; empty when it is valid. */
export function validateSchedule(schedule: TaskSchedule): string[] {
  const problems: string[] = [];
  if ((schedule.cron === undefined) === (schedule.everyMs === undefined)) {
    problems.push("give either cron or everyMs");
  }
  if (schedule.cron !== undefined) {
    const fields = typeof schedule.cron === "string" ? schedule.cron.trim().split(/\s+/) : [];
    if (fields.length < 5 || fields.length > 6 || !fields.every((f) => /^[\d*/,\-A-Za-z?LW#]+$/.test(f))) {
      problems.push(`cron: expected 5 or 6 fields like "*/5 * * * *", got "${String(schedule.cron)}"`);
    } else {
      try {
        // BullMQ's own reading of the expression, so that what is accepted here runs there.
        getNextMillis(Date.now(), { pattern: schedule.cron });
      } catch (error) {
        problems.push(`cron: ${(error as Error).message} in "${schedule.cron}"`);
      }
    }
  }
  if (
    schedule.everyMs !== undefined &&
    !(
      Number.isInteger(schedule.everyMs) &&
      schedule.everyMs >= 1000 &&
      schedule.everyMs <= 366 * 24 * 3600_000
    )
  ) {
    problems.push("everyMs: expected milliseconds from 1000 to one year");
  }
  if (schedule.timezone !== undefined) {
    try {
      new Intl.DateTimeFormat("en", { timeZone: schedule.timezone });
    } catch {
      problems.push(`timezone: expected an IANA time zone like "Europe/Paris", got "${schedule.timezone}"`);
    }
    if (schedule.everyMs !== undefined) problems.push("timezone: only applies to a cron schedule");
  }
  return problems;
}

/** The definition a worker registers: the reference and the handler that runs it. */
export function implementTask<I, O>(
  ref: TaskRef<I, O>,
  handler: (input: I, context: TaskContext) => O | Promise<O>,
): TaskDefinition<I, O> {
  return Object.freeze({
    name: ref.name,
    queue: ref.queue,
    input: ref.input,
    defaults: ref.defaults,
    ...(ref.schedule ? { schedule: ref.schedule } : {}),
    handler,
  });
}

/** The tasks one process knows, by name. */
export class TaskRegistry {
  private readonly byName = new Map<string, TaskDefinition>();

  register(...tasks: AnyTask[]): this {
    for (const task of tasks) {
      const existing = this.byName.get(task.name);
      // Stored without their input type: the registry hands a task only the input its own parser accepted.
      const stored = task as unknown as TaskDefinition;
      if (existing && existing !== stored) throw new Error(`two different tasks are named "${task.name}"`);
      this.byName.set(task.name, stored);
    }
    return this;
  }

  get(name: string): TaskDefinition | undefined {
    return this.byName.get(name);
  }

  all(): TaskDefinition[] {
    return [...this.byName.values()];
  }

  queues(): string[] {
    return [...new Set(this.all().map((task) => task.queue))].sort();
  }
}

/** Checks an input against the task's parser; throws the parser's error, which says what is wrong. */
export function parseInput<I>(task: TaskRef<I, unknown>, input: unknown): I {
  return task.input ? task.input.parse(input) : (input as I);
}

export function validateSendOptions(options: SendOptions): string[] {
  const problems: string[] = [];
  const check = (field: keyof SendOptions, ok: boolean, expected: string) => {
    if (options[field] !== undefined && !ok) problems.push(`${field}: expected ${expected}`);
  };
  const int = (v: unknown, min: number, max: number) =>
    typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
  check("priority", int(options.priority, -100, 100), "a whole number from -100 to 100");
  check("delayMs", int(options.delayMs, 0, 365 * 24 * 3600_000), "milliseconds from 0 to one year");
  check("runAt", options.runAt instanceof Date && !Number.isNaN(options.runAt.getTime()), "a valid date");
  check("attempts", int(options.attempts, 1, 100), "a whole number from 1 to 100");
  check("backoffMs", int(options.backoffMs, 0, 24 * 3600_000), "milliseconds from 0 to one day");
  check("timeoutMs", int(options.timeoutMs, 1, 24 * 3600_000), "milliseconds from 1 to one day");
  check(
    "idempotencyKey",
    typeof options.idempotencyKey === "string" && options.idempotencyKey.length > 0,
    "a non-empty string",
  );
  check(
    "queue",
    typeof options.queue === "string" && NAME.test(options.queue),
    `a name matching ${NAME.source}`,
  );
  return problems;
}

/**
 * BullMQ runs jobs without a priority before prioritized ones, and 1 is its highest priority.
 * Every Lovage job gets one, mapped so that a higher Lovage priority runs sooner.
 */
export function toBullPriority(priority = 0): number {
  return 101 - Math.max(-100, Math.min(100, Math.trunc(priority)));
}

/** How long finished jobs are kept in the broker, with their result or error. */
export interface Retention {
  completedMs: number;
  failedMs: number;
}

export const DEFAULT_RETENTION: Retention = Object.freeze({
  completedMs: 24 * 3600_000,
  failedMs: 7 * 24 * 3600_000,
});

/**
 * The job option that carries a send's time limit to the worker. BullMQ keeps options it does
 * not know with the job, on every backend, and the job's data stays the task's input alone.
 */
export const TIMEOUT_OPTION = "lovageTimeoutMs";

export function timeoutOf(opts: object): number | undefined {
  const value = (opts as Record<string, unknown>)[TIMEOUT_OPTION];
  return typeof value === "number" && value > 0 ? value : undefined;
}

export function toJobOptions(
  taskName: string,
  options: SendOptions,
  now = Date.now(),
  retention: Retention = DEFAULT_RETENTION,
): JobsOptions {
  const delay = options.runAt ? Math.max(0, options.runAt.getTime() - now) : (options.delayMs ?? 0);
  return {
    // An idempotency key becomes the job id, which BullMQ adds only once.
    jobId: options.idempotencyKey ? idempotentJobId(taskName, options.idempotencyKey) : randomUUID(),
    priority: toBullPriority(options.priority),
    delay,
    attempts: options.attempts ?? 3,
    backoff: { type: "exponential", delay: options.backoffMs ?? 1000, jitter: 0.5 },
    removeOnComplete: { age: Math.ceil(retention.completedMs / 1000), count: 100_000 },
    removeOnFail: { age: Math.ceil(retention.failedMs / 1000) },
    ...(options.timeoutMs ? { [TIMEOUT_OPTION]: options.timeoutMs } : {}),
  };
}

/** The public id of the job sent with this idempotency key, for finding it again. */
export function idempotentPublicJobId(task: Pick<TaskRef, "name" | "queue">, key: string): string {
  return publicJobId(task.queue, idempotentJobId(task.name, key));
}

function idempotentJobId(taskName: string, key: string): string {
  return "k-" + createHash("sha256").update(taskName).update("\0").update(key).digest("hex").slice(0, 40);
}

/** Public job ids carry their queue, so a job can be found from its id alone. */
export function publicJobId(queue: string, jobId: string): string {
  return `${queue}:${jobId}`;
}

export function parsePublicJobId(id: string): { queue: string; jobId: string } | undefined {
  const at = id.indexOf(":");
  if (at <= 0 || at === id.length - 1) return undefined;
  return { queue: id.slice(0, at), jobId: id.slice(at + 1) };
}

/**
 * A cancelled job is a failed job with exactly this reason: BullMQ has no cancelled state, and
 * an UnrecoverableError of this reason is never retried.
 */
export const CANCELLED_REASON = "cancelled";

/**
 * Fields of a queue's metadata (a small key-value map BullMQ keeps per queue on every backend)
 * that carry cancellation across processes: a request to cancel a job (read by the worker
 * running it), and the record of a job removed before it ran, kept so that it can be listed
 * and retried. A run of a schedule records its outcome the same way.
 */
export const META = Object.freeze({
  cancelRequest: (jobId: string) => `lovage:cancel:${jobId}`,
  cancelledPrefix: "lovage:cancelled:",
  cancelled: (jobId: string) => `lovage:cancelled:${jobId}`,
  scheduleRun: (scheduleId: string) => `lovage:schedule-run:${scheduleId}`,
});

/** The job option that names the schedule a job was started by (on its runs and run-now jobs). */
export const SCHEDULE_OPTION = "lovageSchedule";
