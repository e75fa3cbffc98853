/**
 * What workers tell about the SMTP servers: each one's figures (rewritten every few seconds, so
 * the API, another process, can read them) and the events (a server out or back, a rate
 * lowered, a suspension).
 */
import { sql } from "kysely";
import type { Db } from "./recipients.js";

export interface ServerFiguresRow {
  name: string;
  state: string;
  until: Date | null;
  sent: number;
  failed: number;
  deferred: number;
  rate: number;
  limitRate: number | null;
  connections: number;
  reply: string | null;
}

export interface SmtpEventRow {
  at: Date;
  scope: string;
  name: string;
  kind: string;
  reply: string | null;
  rate: number | null;
  connections: number | null;
  until: Date | null;
}

export async function recordServerFigures(
  db: Db,
  workerId: string,
  figures: readonly ServerFiguresRow[],
): Promise<void> {
  if (figures.length === 0) return;
  await db
    .insertInto("lovage.smtp_servers")
    .values(
      figures.map((f) => ({
        worker_id: workerId,
        name: f.name,
        state: f.state,
        until: f.until,
        sent: f.sent,
        failed: f.failed,
        deferred: f.deferred,
        rate: f.rate,
        limit_rate: f.limitRate,
        connections: f.connections,
        reply: f.reply,
        updated_at: new Date(),
      })),
    )
    .onConflict((oc) =>
      oc.columns(["worker_id", "name"]).doUpdateSet((eb) => ({
        state: eb.ref("excluded.state"),
        until: eb.ref("excluded.until"),
        sent: eb.ref("excluded.sent"),
        failed: eb.ref("excluded.failed"),
        deferred: eb.ref("excluded.deferred"),
        rate: eb.ref("excluded.rate"),
        limit_rate: eb.ref("excluded.limit_rate"),
        connections: eb.ref("excluded.connections"),
        reply: eb.ref("excluded.reply"),
        updated_at: eb.ref("excluded.updated_at"),
      })),
    )
    .execute();
}

/** A stopped worker's figures go with it. */
export async function forgetServerFigures(db: Db, workerId: string): Promise<void> {
  await db.deleteFrom("lovage.smtp_servers").where("worker_id", "=", workerId).execute();
}

/** The figures of workers heard from within `freshMs`, one row per (worker, server). */
export async function liveServerFigures(
  db: Db,
  freshMs: number,
): Promise<(ServerFiguresRow & { workerId: string })[]> {
  const rows = await db
    .selectFrom("lovage.smtp_servers")
    .selectAll()
    .where("updated_at", ">", new Date(Date.now() - freshMs))
    .orderBy("name")
    .orderBy("worker_id")
    .execute();
  return rows.map((r) => ({
    workerId: r.worker_id,
    name: r.name,
    state: r.state,
    until: r.until,
    sent: r.sent,
    failed: r.failed,
    deferred: r.deferred,
    rate: r.rate,
    limitRate: r.limit_rate,
    connections: r.connections,
    reply: r.reply,
  }));
}

export async function recordSmtpEvents(
  db: Db,
  worker: string,
  events: readonly SmtpEventRow[],
): Promise<void> {
  if (events.length === 0) return;
  await db
    .insertInto("lovage.smtp_events")
    .values(
      events.map((e) => ({
        at: e.at,
        scope: e.scope,
        name: e.name,
        kind: e.kind,
        reply: e.reply,
        rate: e.rate,
        connections: e.connections,
        until: e.until,
        worker,
      })),
    )
    .execute();
}

/** Events between two times (the span of a campaign), the newest first. */
export async function listSmtpEvents(
  db: Db,
  options: { from?: Date | null; to?: Date | null; limit: number },
): Promise<(SmtpEventRow & { worker: string | null })[]> {
  let query = db.selectFrom("lovage.smtp_events").selectAll().orderBy("at", "desc").limit(options.limit);
  if (options.from) query = query.where("at", ">=", options.from);
  if (options.to) query = query.where("at", "<=", options.to);
  const rows = await query.execute();
  return rows.map((r) => ({
    at: r.at,
    scope: r.scope,
    name: r.name,
    kind: r.kind,
    reply: r.reply,
    rate: r.rate,
    connections: r.connections,
    until: r.until,
    worker: r.worker,
  }));
}

/** Events by server and kind, for /metrics. */
export async function countSmtpEvents(db: Db): Promise<{ name: string; kind: string; n: number }[]> {
  const rows = await sql<{ name: string; kind: string; n: number }>`
    SELECT name, kind, count(*)::int AS n FROM lovage.smtp_events GROUP BY name, kind`.execute(db);
  return rows.rows;
}

/** Old events go: a week is plenty for a campaign view. */
export async function forgetOldSmtpEvents(db: Db, olderThanMs = 7 * 86400_000): Promise<void> {
  await db
    .deleteFrom("lovage.smtp_events")
    .where("at", "<", new Date(Date.now() - olderThanMs))
    .execute();
}
