/**
 * Tasks: a name, an optional input parser and a handler. A producer sends a task with an input;
 * a worker that has the same definition registered runs it. This module only describes tasks
 * and turns send options into BullMQ job options; it never connects to anything.
 */
import { createHash, randomUUID } from "node:crypto";
import type { JobsOptions } from "bullmq";

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

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

export function defineTask<I, O>(
  name: string,
  definition: {
    handler: (input: I, context: TaskContext) => O | Promise<O>;
    input?: InputParser<I>;
    queue?: string;
    defaults?: SendOptions;
  },
): TaskDefinition<I, O> {
  return implementTask(declareTask<I, O>(name, definition), definition.handler);
}

/** A task's reference alone, for the processes that send it but do not run it. */
export function declareTask<I, O>(
  name: string,
  declaration: { input?: InputParser<I>; queue?: string; defaults?: SendOptions } = {},
): TaskRef<I, O> {
  if (!NAME.test(name)) throw new Error(`task name "${name}" must match ${NAME.source}`);
  const queue = declaration.queue ?? DEFAULT_QUEUE;
  if (!NAME.test(queue)) throw new Error(`queue name "${queue}" of task ${name} must match ${NAME.source}`);
  return Object.freeze({ name, queue, input: declaration.input, defaults: declaration.defaults ?? {} });
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

export function toJobOptions(taskName: string, options: SendOptions, now = Date.now()): JobsOptions {
  const delay = options.runAt ? Math.max(0, options.runAt.getTime() - now) : (options.delayMs ?? 0);
  return {
    // An idempotency key becomes the job id, which BullMQ adds only once.
    jobId: options.idempotencyKey ? idempotentJobId(taskName, options.idempotencyKey) : randomUUID(),
    priority: toBullPriority(options.priority),
    delay,
    attempts: options.attempts ?? 3,
    backoff: { type: "exponential", delay: options.backoffMs ?? 1000, jitter: 0.5 },
    removeOnComplete: { age: 24 * 3600, count: 100_000 },
    removeOnFail: { age: 7 * 24 * 3600 },
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
