/**
 * Keeps the per-minute figures going: the roll-up of email figures, a queue-depth sample and
 * the pruning of old minutes (in each API process; several share the work safely), and each
 * worker's ended jobs, buffered and written every few seconds. It decides when; the store
 * (src/db/figures.ts) decides how. A store that does not answer costs a tick, not a crash:
 * email figures wait in the store, job figures in memory (up to a bound).
 */
import type { JobFigure, QueueDepth } from "../db/figures.js";

export interface FiguresLogger {
  warn(obj: object, msg: string): void;
}

/** What the figures loop needs of the store and the broker. */
export interface FiguresStore {
  rollUpEmails(): Promise<number>;
  recordQueueDepth(at: Date, depths: readonly QueueDepth[]): Promise<void>;
  prune(retentionMs: number): Promise<void>;
}

export const FIGURES_TICK_MS = 10_000;
const PRUNE_EVERY_MS = 3600_000;

export function startFigures(options: {
  store: FiguresStore;
  /** The queues' depth now. */
  depths: () => Promise<QueueDepth[]>;
  retentionMs: number;
  tickMs?: number;
  logger: FiguresLogger;
}): { close(): Promise<void> } {
  const { store, logger } = options;
  let lastPrune = 0;
  let running: Promise<void> | undefined;
  async function tick() {
    try {
      await store.rollUpEmails();
      await store.recordQueueDepth(new Date(), await options.depths());
      if (Date.now() - lastPrune > PRUNE_EVERY_MS) {
        lastPrune = Date.now();
        await store.prune(options.retentionMs);
      }
    } catch (error) {
      logger.warn({ err: (error as Error).message }, "figures not updated this tick");
    }
  }
  const timer = setInterval(() => {
    running ??= tick().finally(() => (running = undefined));
  }, options.tickMs ?? FIGURES_TICK_MS);
  timer.unref();
  running = tick().finally(() => (running = undefined));
  return {
    async close() {
      clearInterval(timer);
      await running;
      // A last roll-up: what this process's own workers recorded is counted before it goes.
      await store.rollUpEmails().catch(() => undefined);
    },
  };
}

/** Jobs kept in memory while the store does not answer; older ones are dropped past it. */
const MAX_BUFFERED = 100_000;
export const JOB_FIGURES_FLUSH_MS = 5_000;

/** A worker's ended jobs, written to the store every `flushMs` and when closed. */
export function createJobFigures(options: {
  record: (jobs: readonly JobFigure[]) => Promise<void>;
  flushMs?: number;
  logger: FiguresLogger;
}): { add(job: JobFigure): void; flush(): Promise<void>; close(): Promise<void> } {
  let buffer: JobFigure[] = [];
  let flushing: Promise<void> | undefined;
  async function write() {
    if (buffer.length === 0) return;
    const taken = buffer;
    buffer = [];
    try {
      await options.record(taken);
    } catch (error) {
      buffer = [...taken, ...buffer].slice(-MAX_BUFFERED);
      options.logger.warn(
        { err: (error as Error).message, buffered: buffer.length },
        "job figures not written; kept for the next flush",
      );
    }
  }
  const flush = () => (flushing ??= write().finally(() => (flushing = undefined)));
  const timer = setInterval(() => void flush(), options.flushMs ?? JOB_FIGURES_FLUSH_MS);
  timer.unref();
  return {
    add(job) {
      buffer.push(job);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flushing;
      await write();
    },
  };
}
