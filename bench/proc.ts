/**
 * What the benchmark reads about a process from Linux's /proc: its peak resident memory and
 * the CPU time it used. It only reads; on a system without /proc it answers `undefined` and
 * the caller falls back to what Node can say about itself.
 */
import { readFileSync } from "node:fs";

const CLOCK_TICKS_PER_SECOND = 100;

/** VmHWM ("high water mark"): the largest resident set the process had in its life, in bytes. */
export function peakRssBytes(pid: number | "self"): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    // The process is gone or this is not Linux: the caller reports what it sampled instead.
    return undefined;
  }
}

/** VmRSS: the resident set now, in bytes. */
export function rssBytes(pid: number | "self"): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
  } catch {
    return undefined;
  }
}

/** User + system CPU time the process has used so far, in seconds. */
export function cpuSeconds(pid: number | "self"): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after its ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
    return (utime + stime) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Samples `process.memoryUsage().rss` until stopped; the fallback when /proc is missing. */
export function sampleOwnRss(intervalMs = 50): { stop(): number } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage().rss);
    },
  };
}
