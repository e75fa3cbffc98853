/**
 * `node dist/bench/embedded-drain.js [jobs] [concurrency]`: the embedded broker alone. Opens
 * the embedded store in a temporary data directory, enqueues `jobs` jobs that do no I/O, drains
 * them with one BullMQ worker, and prints (JSON) how long that took and how late the event loop ran
 * meanwhile (perf_hooks.monitorEventLoopDelay). Run it with `node --cpu-prof` to see where
 * the main thread's time goes (docs/performance.md).
 *
 * It measures; it never passes or fails. It removes the data directory it made.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { openDatabase } from "../src/db/open.js";
import { openBroker } from "../src/queue/connection.js";

const jobs = Number(process.argv[2] ?? 2000);
const concurrency = Number(process.argv[3] ?? 20);
const ms = (ns: number) => Math.round(ns / 1e5) / 10;

const dataDir = mkdtempSync(join(tmpdir(), "lovage-drain-"));
const openedAt = performance.now();
const store = await openDatabase({ dataDir });
const broker = await openBroker({ kind: "embedded", pool: store.pool });
const openMs = Math.round(performance.now() - openedAt);
try {
  const queue = broker.queue("drain");
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  // Its first tick only sets a baseline (so does reset()): take it before the work starts, or
  // a loop frozen from the start records nothing.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const started = performance.now();
  await queue.addBulk(Array.from({ length: jobs }, (_, i) => ({ name: "noop", data: { i } })));
  const enqueuedMs = Math.round(performance.now() - started);
  let done = 0;
  const drained = new Promise<void>((resolve) => {
    const worker = broker.createWorker("drain", async (job) => (job.data as { i: number }).i, {
      concurrency,
    });
    worker.on("completed", () => {
      if (++done === jobs) void worker.close().then(resolve);
    });
  });
  await drained;
  const totalMs = performance.now() - started;
  // A loop that never reached its timers recorded nothing yet: let it turn once so the last,
  // longest delay is counted too.
  await new Promise((resolve) => setTimeout(resolve, 20));
  delay.disable();
  console.log(
    JSON.stringify({
      jobs,
      concurrency,
      openMs,
      enqueueMs: enqueuedMs,
      drainMs: Math.round(totalMs - enqueuedMs),
      jobsPerSecond: Math.round(jobs / ((totalMs - enqueuedMs) / 1000)),
      eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      samples: delay.count,
      rssMb: Math.round(process.memoryUsage().rss / 1e6),
    }),
  );
} finally {
  await broker.close();
  await store.close();
  rmSync(dataDir, { recursive: true, force: true });
}
