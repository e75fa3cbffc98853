/** Schedule definitions (see queue/schedules.ts): one row per schedule, enabled or not. */
import type { Selectable } from "kysely";
import type { Schedule, ScheduleStore, StoredSchedule } from "../queue/schedules.js";
import type { Db } from "./recipients.js";
import type { SchedulesTable } from "./schema.js";

function toSchedule(row: Selectable<SchedulesTable>): StoredSchedule {
  return {
    id: row.id,
    task: row.task,
    queue: row.queue,
    cron: row.cron,
    everyMs: row.every_ms === null ? null : Number(row.every_ms),
    timezone: row.timezone,
    input: row.input,
    enabled: row.enabled,
    source: row.source,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function columns(schedule: Omit<Schedule, "enabled" | "source">) {
  return {
    task: schedule.task,
    queue: schedule.queue,
    cron: schedule.cron,
    every_ms: schedule.everyMs,
    timezone: schedule.timezone,
    input: JSON.stringify(schedule.input ?? null),
    updated_at: new Date(),
  };
}

export async function listSchedules(db: Db): Promise<StoredSchedule[]> {
  const rows = await db.selectFrom("lovage.schedules").selectAll().orderBy("id").execute();
  return rows.map(toSchedule);
}

export async function getSchedule(db: Db, id: string): Promise<StoredSchedule | undefined> {
  const row = await db.selectFrom("lovage.schedules").selectAll().where("id", "=", id).executeTakeFirst();
  return row && toSchedule(row);
}

export async function saveSchedule(db: Db, schedule: Schedule): Promise<StoredSchedule> {
  const values = { ...columns(schedule), enabled: schedule.enabled, source: schedule.source };
  const row = await db
    .insertInto("lovage.schedules")
    .values({ id: schedule.id, ...values })
    .onConflict((oc) => oc.column("id").doUpdateSet(values))
    .returningAll()
    .executeTakeFirstOrThrow();
  return toSchedule(row);
}

/** Takes a definition from code; `enabled` is kept when the row exists (a user may have disabled it). */
export async function saveCodeSchedule(
  db: Db,
  schedule: Omit<Schedule, "enabled" | "source">,
): Promise<StoredSchedule> {
  const values = columns(schedule);
  const row = await db
    .insertInto("lovage.schedules")
    .values({ id: schedule.id, ...values, enabled: true, source: "code" })
    .onConflict((oc) => oc.column("id").doUpdateSet({ ...values, source: "code" }))
    .returningAll()
    .executeTakeFirstOrThrow();
  return toSchedule(row);
}

export async function setScheduleEnabled(
  db: Db,
  id: string,
  enabled: boolean,
): Promise<StoredSchedule | undefined> {
  const row = await db
    .updateTable("lovage.schedules")
    .set({ enabled, updated_at: new Date() })
    .where("id", "=", id)
    .returningAll()
    .executeTakeFirst();
  return row && toSchedule(row);
}

export async function deleteSchedule(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom("lovage.schedules").where("id", "=", id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** The store port queue/schedules.ts declares, on this database. */
export function createScheduleStore(db: Db): ScheduleStore {
  return {
    listSchedules: () => listSchedules(db),
    getSchedule: (id) => getSchedule(db, id),
    saveSchedule: (schedule) => saveSchedule(db, schedule),
    saveCodeSchedule: (schedule) => saveCodeSchedule(db, schedule),
    setScheduleEnabled: (id, enabled) => setScheduleEnabled(db, id, enabled),
    deleteSchedule: (id) => deleteSchedule(db, id),
  };
}
