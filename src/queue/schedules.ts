/**
 * Periodic tasks on BullMQ's job schedulers. A schedule runs one task on a cron expression (in
 * a time zone) or every N milliseconds, with a fixed input. BullMQ keeps, per scheduler, the
 * one delayed job of its next tick under an id made of the scheduler and the tick's time, so
 * every process may upsert the same scheduler and a tick still runs once, whatever the number
 * of workers and API processes.
 *
 * The definitions (enabled or not) live in a store the caller provides: BullMQ forgets a
 * scheduler once removed, and a disabled schedule must survive and be listed. The store is the
 * truth; `apply` makes the broker match it. This module never reads SQL itself.
 */
import { randomBytes } from "node:crypto";
import type { Broker } from "./connection.js";
import {
  DEFAULT_RETENTION,
  META,
  NAME,
  SCHEDULE_OPTION,
  parseInput,
  publicJobId,
  toJobOptions,
  validateSchedule,
  type Retention,
  type TaskRef,
  type TaskSchedule,
} from "./task.js";

export interface Schedule {
  id: string;
  task: string;
  queue: string;
  cron: string | null;
  everyMs: number | null;
  timezone: string | null;
  input: unknown;
  enabled: boolean;
  /** `code`: declared by `defineTask(…, { schedule })`; `api`: created over HTTP. */
  source: "code" | "api";
}

export interface StoredSchedule extends Schedule {
  createdAt: Date;
  updatedAt: Date;
}

/** What schedules need from the store. */
export interface ScheduleStore {
  listSchedules(): Promise<StoredSchedule[]>;
  getSchedule(id: string): Promise<StoredSchedule | undefined>;
  /** Inserts or replaces the definition. */
  saveSchedule(schedule: Schedule): Promise<StoredSchedule>;
  /**
   * Saves a schedule declared in code: its definition follows the code, but whether it is
   * enabled stays what a user last chose.
   */
  saveCodeSchedule(schedule: Omit<Schedule, "enabled" | "source">): Promise<StoredSchedule>;
  setScheduleEnabled(id: string, enabled: boolean): Promise<StoredSchedule | undefined>;
  deleteSchedule(id: string): Promise<boolean>;
}

export interface ScheduleRun {
  jobId: string;
  outcome: "completed" | "failed" | "cancelled";
  error: string | null;
  finishedAt: string;
}

export interface ScheduleView extends Schedule {
  createdAt: string;
  updatedAt: string;
  /** When the next run is due; null when disabled. */
  nextRunAt: string | null;
  lastRun: ScheduleRun | null;
}

export interface NewSchedule {
  id?: string;
  task: string;
  cron?: string;
  everyMs?: number;
  timezone?: string;
  input?: unknown;
  enabled?: boolean;
}

/** A schedule that cannot be made as asked: each problem names its field. */
export class ScheduleError extends Error {
  constructor(
    readonly problems: string[],
    readonly kind: "invalid" | "conflict" = "invalid",
  ) {
    super(problems.join("; "));
    this.name = "ScheduleError";
  }
}

export interface Schedules {
  list(): Promise<ScheduleView[]>;
  get(id: string): Promise<ScheduleView | undefined>;
  create(schedule: NewSchedule): Promise<ScheduleView>;
  setEnabled(id: string, enabled: boolean): Promise<ScheduleView | undefined>;
  remove(id: string): Promise<boolean>;
  /** Sends the schedule's task now, outside its ticks; answers the job id. */
  runNow(id: string): Promise<string | undefined>;
  /**
   * Records the schedules the tasks declare and makes the broker match every stored schedule.
   * Each process calls it at start; running it in several at once is harmless.
   */
  sync(tasks: readonly TaskRef[]): Promise<void>;
}

export function createSchedules(options: {
  broker: Broker;
  store: ScheduleStore;
  /** The tasks a schedule may name, to know their queue and check their input. */
  tasks: { get(name: string): TaskRef | undefined };
  retention?: Retention;
}): Schedules {
  const { broker, store } = options;
  const retention = options.retention ?? DEFAULT_RETENTION;

  function jobOptions(schedule: Schedule) {
    const task = options.tasks.get(schedule.task);
    const {
      jobId: _jobId,
      delay: _delay,
      ...rest
    } = toJobOptions(schedule.task, task?.defaults ?? {}, Date.now(), retention);
    return { ...rest, [SCHEDULE_OPTION]: schedule.id };
  }

  /** Makes the broker's scheduler match the definition: there when enabled, gone when not. */
  async function apply(schedule: Schedule): Promise<void> {
    const queue = broker.queue(schedule.queue);
    if (!schedule.enabled) {
      await queue.removeJobScheduler(schedule.id);
      return;
    }
    await queue.upsertJobScheduler(
      schedule.id,
      schedule.cron !== null
        ? { pattern: schedule.cron, ...(schedule.timezone ? { tz: schedule.timezone } : {}) }
        : { every: schedule.everyMs! },
      { name: schedule.task, data: schedule.input, opts: jobOptions(schedule) },
    );
  }

  async function view(schedule: StoredSchedule): Promise<ScheduleView> {
    const queue = broker.queue(schedule.queue);
    const [scheduler, lastRaw] = await Promise.all([
      schedule.enabled ? queue.getJobScheduler(schedule.id) : undefined,
      queue.backend.getQueueMetaField(META.scheduleRun(schedule.id)),
    ]);
    let lastRun: ScheduleRun | null = null;
    try {
      lastRun = lastRaw ? (JSON.parse(lastRaw) as ScheduleRun) : null;
    } catch {
      // A record that does not parse says nothing about the last run.
    }
    return {
      ...schedule,
      createdAt: schedule.createdAt.toISOString(),
      updatedAt: schedule.updatedAt.toISOString(),
      nextRunAt: scheduler?.next ? new Date(scheduler.next).toISOString() : null,
      lastRun,
    };
  }

  function check(schedule: Schedule): void {
    const spec: TaskSchedule = {
      ...(schedule.cron !== null ? { cron: schedule.cron } : {}),
      ...(schedule.everyMs !== null ? { everyMs: schedule.everyMs } : {}),
      ...(schedule.timezone !== null ? { timezone: schedule.timezone } : {}),
    };
    const problems = validateSchedule(spec);
    if (!NAME.test(schedule.id)) problems.unshift(`id: expected a name matching ${NAME.source}`);
    if (problems.length > 0) throw new ScheduleError(problems);
  }

  return {
    async list() {
      const schedules = await store.listSchedules();
      return Promise.all(schedules.map(view));
    },

    async get(id) {
      const schedule = await store.getSchedule(id);
      return schedule && view(schedule);
    },

    async create(request) {
      const task = options.tasks.get(request.task);
      if (!task) throw new ScheduleError([`task: no task named "${request.task}"`]);
      const id = request.id ?? `${task.name}-${randomBytes(4).toString("hex")}`;
      const schedule: Schedule = {
        id,
        task: task.name,
        queue: task.queue,
        cron: request.cron ?? null,
        everyMs: request.everyMs ?? null,
        timezone: request.timezone ?? null,
        input: request.input ?? null,
        enabled: request.enabled ?? true,
        source: "api",
      };
      check(schedule);
      try {
        schedule.input = parseInput(task, schedule.input);
      } catch (error) {
        throw new ScheduleError([`input: ${(error as Error).message}`]);
      }
      if (await store.getSchedule(id)) throw new ScheduleError([`id: a schedule "${id}" exists`], "conflict");
      // The broker first: a scheduler it refuses is not stored.
      await apply(schedule);
      return view(await store.saveSchedule(schedule));
    },

    async setEnabled(id, enabled) {
      const current = await store.getSchedule(id);
      if (!current) return undefined;
      await apply({ ...current, enabled });
      const saved = await store.setScheduleEnabled(id, enabled);
      return saved && view(saved);
    },

    async remove(id) {
      const current = await store.getSchedule(id);
      if (!current) return false;
      await broker.queue(current.queue).removeJobScheduler(id);
      await broker.queue(current.queue).backend.removeQueueMetaFields([META.scheduleRun(id)]);
      return store.deleteSchedule(id);
    },

    async runNow(id) {
      const schedule = await store.getSchedule(id);
      if (!schedule) return undefined;
      const job = await broker.queue(schedule.queue).add(schedule.task, schedule.input, {
        ...jobOptions(schedule),
        jobId: `run-${id}-${Date.now()}-${randomBytes(3).toString("hex")}`,
      });
      return publicJobId(schedule.queue, String(job.id));
    },

    async sync(tasks) {
      for (const task of tasks) {
        if (!task.schedule) continue;
        await store.saveCodeSchedule({
          id: task.name,
          task: task.name,
          queue: task.queue,
          cron: task.schedule.cron ?? null,
          everyMs: task.schedule.everyMs ?? null,
          timezone: task.schedule.timezone ?? null,
          input: task.schedule.input ?? null,
        });
      }
      for (const schedule of await store.listSchedules()) await apply(schedule);
    },
  };
}
