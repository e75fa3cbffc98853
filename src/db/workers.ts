/**
 * The worker registry: each worker process reports itself and beats every few seconds. A worker
 * whose heartbeat is older than the timeout is presumed dead and no longer listed; rows of
 * long-dead workers are removed. A shutdown request is a timestamp on the worker's row: any API
 * process writes it, the worker reads it back with its next heartbeat and stops gracefully.
 */
import { sql } from "kysely";
import type { Db } from "./recipients.js";
import type { WorkerRunningJob } from "./schema.js";

export interface WorkerSnapshot {
  id: string;
  host: string;
  pid: number;
  queues: readonly string[];
  concurrency: number;
  startedAt: Date;
  processed: number;
  failed: number;
  active: number;
  watchdogRestarts: number;
  lastJobAt: Date | null;
  running: readonly WorkerRunningJob[];
}

export interface HeartbeatAnswer {
  /** Someone asked this worker to stop (POST /api/workers/:id/shutdown). */
  shutdownRequested: boolean;
}

export async function recordHeartbeat(
  db: Db,
  worker: WorkerSnapshot,
  stopped = false,
): Promise<HeartbeatAnswer> {
  const row = {
    host: worker.host,
    pid: worker.pid,
    queues: JSON.stringify(worker.queues),
    concurrency: worker.concurrency,
    started_at: worker.startedAt,
    heartbeat_at: new Date(),
    processed: worker.processed,
    failed: worker.failed,
    active: worker.active,
    watchdog_restarts: worker.watchdogRestarts,
    last_job_at: worker.lastJobAt,
    running: JSON.stringify(worker.running),
    stopped_at: stopped ? new Date() : null,
  };
  const answer = await db
    .insertInto("lovage.workers")
    .values({ id: worker.id, ...row })
    .onConflict((oc) => oc.column("id").doUpdateSet(row))
    .returning("shutdown_requested_at")
    .executeTakeFirst();
  return { shutdownRequested: !!answer?.shutdown_requested_at };
}

export interface WorkerView {
  id: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  startedAt: string;
  heartbeatAt: string;
  processed: number;
  failed: number;
  active: number;
  running: WorkerRunningJob[];
  emailsSent: number;
  watchdogRestarts: number;
  lastJobAt: string | null;
  /** When a shutdown was asked for; the worker is stopping. */
  shutdownRequestedAt: string | null;
}

/** Workers whose heartbeat is younger than `timeoutMs` and that have not stopped. */
export async function liveWorkers(db: Db, timeoutMs: number): Promise<WorkerView[]> {
  const rows = await db
    .selectFrom("lovage.workers")
    .selectAll()
    .where("stopped_at", "is", null)
    .where("heartbeat_at", ">", new Date(Date.now() - timeoutMs))
    .orderBy("started_at")
    .orderBy("id")
    .execute();
  return rows.map((row) => ({
    id: row.id,
    host: row.host,
    pid: row.pid,
    queues: row.queues,
    concurrency: row.concurrency,
    startedAt: row.started_at.toISOString(),
    heartbeatAt: row.heartbeat_at.toISOString(),
    processed: row.processed,
    failed: row.failed,
    active: row.active,
    running: row.running,
    emailsSent: row.emails_sent,
    watchdogRestarts: row.watchdog_restarts,
    lastJobAt: row.last_job_at?.toISOString() ?? null,
    shutdownRequestedAt: row.shutdown_requested_at?.toISOString() ?? null,
  }));
}

/**
 * Asks a live worker to stop. Answers the worker as it is then, or undefined when no live
 * worker has that id (unknown, stopped, or silent past `timeoutMs`).
 */
export async function requestShutdown(
  db: Db,
  id: string,
  timeoutMs: number,
): Promise<WorkerView | undefined> {
  const updated = await db
    .updateTable("lovage.workers")
    .set({ shutdown_requested_at: sql<Date>`coalesce(shutdown_requested_at, now())` })
    .where("id", "=", id)
    .where("stopped_at", "is", null)
    .where("heartbeat_at", ">", new Date(Date.now() - timeoutMs))
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) return undefined;
  return (await liveWorkers(db, timeoutMs)).find((worker) => worker.id === id);
}

/** Removes the rows of workers that stopped or went silent more than a day ago. */
export async function forgetOldWorkers(db: Db): Promise<number> {
  const result = await sql`DELETE FROM lovage.workers WHERE heartbeat_at < now() - interval '1 day'`.execute(
    db,
  );
  return Number(result.numAffectedRows ?? 0);
}
