/**
 * The worker registry: each worker process reports itself and beats every few seconds. A worker
 * whose heartbeat is older than the timeout is presumed dead and no longer listed; rows of
 * long-dead workers are removed.
 */
import { sql } from "kysely";
import type { Db } from "./recipients.js";

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
}

export async function recordHeartbeat(db: Db, worker: WorkerSnapshot, stopped = false): Promise<void> {
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
    stopped_at: stopped ? new Date() : null,
  };
  await db
    .insertInto("lovage.workers")
    .values({ id: worker.id, ...row })
    .onConflict((oc) => oc.column("id").doUpdateSet(row))
    .execute();
}

/** Workers whose heartbeat is younger than `timeoutMs` and that have not stopped. */
export async function liveWorkers(db: Db, timeoutMs: number) {
  const rows = await db
    .selectFrom("lovage.workers")
    .selectAll()
    .where("stopped_at", "is", null)
    .where("heartbeat_at", ">", new Date(Date.now() - timeoutMs))
    .orderBy("started_at")
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
    watchdogRestarts: row.watchdog_restarts,
    lastJobAt: row.last_job_at?.toISOString() ?? null,
  }));
}

/** Removes the rows of workers that stopped or went silent more than a day ago. */
export async function forgetOldWorkers(db: Db): Promise<number> {
  const result = await sql`DELETE FROM lovage.workers WHERE heartbeat_at < now() - interval '1 day'`.execute(
    db,
  );
  return Number(result.numAffectedRows ?? 0);
}
