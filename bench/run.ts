/**
 * `npm run bench`: sends N emails to a local SMTP sink several ways, in one run, and prints a
 * Markdown table of emails/s, wall time, peak memory and CPU, with Lovage's throughput as a
 * ratio of sequential sending (the original's way) and of a raw nodemailer pool (the ceiling).
 * Each is measured with the sink answering at once and after a delay (a remote server).
 *
 * It measures; it never passes or fails on speed. It fails (exit 1) only when a scenario did
 * not deliver exactly N distinct messages or broke, except the experimental distributed ones,
 * whose failure is reported in their row. Progress goes to stderr, the table to stdout.
 *
 * Settings (environment):
 *   BENCH_N              emails per scenario (default 2000)
 *   BENCH_SEQUENTIAL_N   emails for the sequential baseline (default 100)
 *   BENCH_WARMUP         emails sent first, unmeasured, by the same process (default 500;
 *                        at most 5 for the sequential baseline, which opens a connection each)
 *   BENCH_ONLY           scenarios, comma-separated: sequential, raw, embedded, redis-1,
 *                        redis-3, limited-3 (3 workers, a relay at rate=100), postgres-1, or
 *                        distributed / limited / all (default: all but postgres-1)
 *   BENCH_DELAYS_MS      SMTP reply delays to measure, comma-separated (default 0,50)
 *   BENCH_POOL_SIZE      connections of the raw pool (default 5, Lovage's LOVAGE_SMTP_POOL_SIZE)
 *   BENCH_RAW_IN_FLIGHT  raw sends outstanding at once (default 500)
 *   BENCH_LOVAGE_ENV     extra settings for the Lovage processes, e.g.
 *                        "LOVAGE_CONCURRENCY=20,LOVAGE_BATCH_SIZE=100"
 *   BENCH_LOVAGE_NODE_ARGS  extra node arguments for them, space-separated, e.g.
 *                        "--cpu-prof --cpu-prof-dir=/tmp/lovage-prof"
 *   BENCH_POLL_MS        how often the campaign's status is read while it sends (default 100)
 *   BENCH_TIMEOUT_MS     longest a scenario may take (default 180000)
 *   BENCH_POSTGRES_URL   admin URL to create databases (default postgres://postgres@127.0.0.1:5432/postgres)
 *   BENCH_REDIS_URL      Redis database to flush and use (default redis://127.0.0.1:6379/5)
 *   BENCH_MILLION        topologies of the million-recipient run, comma-separated: embedded,
 *                        redis-1, or none (default embedded,redis-1)
 *   BENCH_MILLION_ROWS   rows of its CSV (default 1000000)
 */
import { windowOf } from "../src/mail/rate-limits.js";
import { loadConfig } from "../src/config.js";
import { cpus, loadavg, totalmem } from "node:os";
import { runMillion, type MillionResult } from "./million.js";
import type { Topology } from "./run-lovage.js";
import { ALIASES, DEFAULT_SCENARIOS, runScenario, SCENARIOS, type Row, type Scenario } from "./scenarios.js";

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) fail(`${name}: expected a whole number ≥ 1, got "${raw}"`);
  return value;
}

function list(name: string): string[] | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  return raw
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

function selectedScenarios(): Scenario[] {
  const names = list("BENCH_ONLY") ?? DEFAULT_SCENARIOS;
  const ids = new Set(names.flatMap((name) => ALIASES[name] ?? [name]));
  for (const id of ids) {
    if (!SCENARIOS.some((scenario) => scenario.id === id)) {
      const known = [...SCENARIOS.map((s) => s.id), ...Object.keys(ALIASES)].join(", ");
      fail(`BENCH_ONLY: unknown scenario "${id}"; expected some of ${known}`);
    }
  }
  return SCENARIOS.filter((scenario) => ids.has(scenario.id));
}

function lovageEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of list("BENCH_LOVAGE_ENV") ?? []) {
    const eq = pair.indexOf("=");
    if (eq < 1) fail(`BENCH_LOVAGE_ENV: expected KEY=VALUE pairs separated by commas, got "${pair}"`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

const n = positiveInteger("BENCH_N", 2_000);
const sequentialN = positiveInteger("BENCH_SEQUENTIAL_N", 100);
const warmup = process.env.BENCH_WARMUP === "0" ? 0 : positiveInteger("BENCH_WARMUP", 500);
// The ceiling gets as many connections as Lovage uses by default, so the two compare fairly.
const poolSize = positiveInteger("BENCH_POOL_SIZE", loadConfig({}).smtpPoolSize);
const inFlight = positiveInteger("BENCH_RAW_IN_FLIGHT", 500);
const timeoutMs = positiveInteger("BENCH_TIMEOUT_MS", 180_000);
const delays = (list("BENCH_DELAYS_MS") ?? ["0", "50"]).map((raw) => {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0)
    fail(`BENCH_DELAYS_MS: expected whole numbers ≥ 0, got "${raw}"`);
  return value;
});
const scenarios = selectedScenarios();
const MILLION_TOPOLOGIES: Record<string, { label: string; topology: Topology }> = {
  embedded: { label: "Lovage embedded", topology: { kind: "embedded" } },
  "redis-1": {
    label: "Lovage Redis + PostgreSQL, 1 worker",
    topology: { kind: "distributed", broker: "redis", workers: 1 },
  },
};
const millionIds = (list("BENCH_MILLION") ?? ["embedded", "redis-1"]).filter((id) => id !== "none");
for (const id of millionIds) {
  if (!MILLION_TOPOLOGIES[id])
    fail(`BENCH_MILLION: unknown topology "${id}"; expected embedded, redis-1 or none`);
}
const millionRows = positiveInteger("BENCH_MILLION_ROWS", 1_000_000);
const lovage = {
  pollMs: positiveInteger("BENCH_POLL_MS", 100),
  env: lovageEnv(),
  nodeArgs: (process.env.BENCH_LOVAGE_NODE_ARGS ?? "").split(" ").filter(Boolean),
};
const log = (line: string) => console.error(line);

const rows: Row[] = [];
const benchStart = performance.now();
// Other work on the machine skews every number: say how busy it was.
const loadAtStart = loadavg()[0]!;
for (const delayMs of delays) {
  for (const scenario of scenarios) {
    const count = scenario.small ? Math.min(sequentialN, n) : n;
    log(`bench: ${scenario.id}, SMTP reply after ${delayMs} ms, N = ${count} …`);
    const row = await runScenario(scenario, delayMs, {
      n: count,
      warmup: scenario.small ? Math.min(warmup, 5) : warmup,
      poolSize,
      inFlight,
      lovage,
      timeoutMs,
      log,
    });
    rows.push(row);
    if (row.error) log(`  FAILED: ${row.error}`);
    else log(`  ${rate(row)!.toFixed(0)} emails/s in ${(row.measurement!.wallMs / 1000).toFixed(2)} s`);
    if (row.sink) log(`  delivered per second, warm-up included: ${row.sink.perSecond.join(" ")}`);
  }
}

function rate(row: Row | undefined): number | undefined {
  if (!row?.measurement || row.error) return undefined;
  return row.n / (row.measurement.wallMs / 1000);
}

function find(id: string, delayMs: number): Row | undefined {
  return rows.find((row) => row.scenario.id === id && row.delayMs === delayMs);
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined) return "—";
  const value = a / b;
  return `${value >= 10 ? value.toFixed(0) : value.toFixed(2)}×`;
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");

const lines: string[] = [];
lines.push(
  "| SMTP reply | sender | N | wall (s) | emails/s | ÷ sequential | ÷ raw pool | peak RSS (MB) | CPU (s) | CPU ms/email |",
  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
);
const failures: Row[] = [];
for (const row of rows) {
  const latency = row.delayMs === 0 ? "at once" : `after ${row.delayMs} ms`;
  if (row.error || !row.measurement) {
    failures.push(row);
    const short = row.error!.length > 90 ? `${row.error!.slice(0, 90)}…` : row.error!;
    lines.push(
      `| ${latency} | ${row.scenario.label} | ${row.n} | failed: ${cell(short)} [${failures.length}] | — | — | — | — | — | — |`,
    );
    continue;
  }
  const m = row.measurement;
  const own = rate(row);
  const isReference = row.scenario.id === "sequential" || row.scenario.id === "raw";
  const processes = m.processes > 1 ? ` (${m.processes} processes)` : "";
  lines.push(
    `| ${latency} | ${row.scenario.label} | ${row.n} | ${(m.wallMs / 1000).toFixed(2)} | ${own!.toFixed(0)} | ` +
      `${row.scenario.id === "sequential" ? "1×" : ratio(own, rate(find("sequential", row.delayMs)))} | ` +
      `${isReference && row.scenario.id === "raw" ? "1×" : ratio(own, rate(find("raw", row.delayMs)))} | ` +
      `${mb(m.peakRssBytes)}${processes} | ${m.cpuSeconds.toFixed(1)} | ${((m.cpuSeconds * 1000) / row.n).toFixed(1)} |`,
  );
}

// The pace: how close Lovage keeps to a relay's limit, shared by its workers (goal ≥ 0.9).
for (const row of rows) {
  const limit = row.scenario.limitPerSecond;
  const own = rate(row);
  if (limit === undefined || own === undefined) continue;
  const latency = row.delayMs === 0 ? "at once" : `after ${row.delayMs} ms`;
  const window = windowOf(limit);
  lines.push(
    "",
    `${row.scenario.label}, SMTP reply ${latency}: ${own.toFixed(1)} emails/s, ${(own / limit).toFixed(2)} of the limit (goal ≥ 0.9; the counters allow at most the limit in any second, an average of ${((window.points * 1000) / window.windowMs).toFixed(1)}/s).`,
  );
}

const million: { id: string; result?: MillionResult; error?: string }[] = [];
for (const id of millionIds) {
  log(`bench: ${millionRows} recipients on ${id} …`);
  try {
    const result = await runMillion(MILLION_TOPOLOGIES[id]!.topology, {
      rows: millionRows,
      lovage,
      timeoutMs: Math.max(timeoutMs, 600_000),
      log,
    });
    million.push({ id, result });
  } catch (error) {
    log(`  FAILED: ${(error as Error).message}`);
    million.push({ id, error: (error as Error).message });
  }
}
if (million.length > 0) {
  lines.push(
    "",
    `| ${millionRows.toLocaleString("en")} recipients | CSV accepted in (s) | peak RSS (MB) | campaign detail p50 / max (ms) | first log page p50 / max (ms) | first-minute rate (emails/s) | ÷ 10,000-recipient rate |`,
    "|---|--:|--:|--:|--:|--:|--:|",
  );
  for (const { id, result, error } of million) {
    const label = MILLION_TOPOLOGIES[id]!.label;
    if (!result) {
      lines.push(`| ${label} | failed: ${cell(error!.slice(0, 90))} | — | — | — | — | — |`);
      continue;
    }
    const processes = result.processes > 1 ? ` (${result.processes} processes)` : "";
    lines.push(
      `| ${label} | ${(result.acceptMs / 1000).toFixed(1)} | ${mb(result.peakRssBytes)}${processes} | ` +
        `${result.detailMs.p50.toFixed(0)} / ${result.detailMs.max.toFixed(0)} | ` +
        `${result.firstPageMs.p50.toFixed(0)} / ${result.firstPageMs.max.toFixed(0)} | ` +
        `${result.firstMinuteRate.toFixed(0)} | ${(result.firstMinuteRate / result.referenceRate).toFixed(2)}× |`,
    );
  }
  const csvMb = million.find((entry) => entry.result)?.result?.csvBytes;
  lines.push(
    "",
    `The CSV (${csvMb ? `${mb(csvMb)} MB, ` : ""}email,name,company) is uploaded through POST /api/campaigns as ` +
      "multipart; peak RSS is the Lovage processes' high-water mark over their whole life; the " +
      "detail and first page are read once a second during the first minute of sending, and the " +
      "first-minute rate is compared with a 10,000-recipient campaign sent by the same processes just before.",
  );
}

const cpu = cpus();
lines.push(
  "",
  `Machine: ${cpu.length} CPU (${cpu[0]?.model.trim() ?? "unknown"}), ${(totalmem() / 1024 ** 3).toFixed(0)} GB, ` +
    `Node ${process.version}, ${process.platform}. N = ${n} (sequential: ${Math.min(sequentialN, n)}), ` +
    `after a warm-up of ${warmup} (sequential: ${Math.min(warmup, 5)}) in the same process; ` +
    `SMTP pool ${poolSize} connections; the SMTP sink runs in its own process. ` +
    `Whole bench: ${((performance.now() - benchStart) / 1000).toFixed(0)} s; ` +
    `load average ${loadAtStart.toFixed(1)} at its start, ${loadavg()[0]!.toFixed(1)} at its end.`,
);

lines.push(
  "Emails/s: from the POST of the campaign to its `completed` status (polled every " +
    `${lovage.pollMs} ms) for Lovage, from the first send to the last reply for the others. ` +
    "Peak RSS: the high-water mark over the process's life (start-up included), summed over " +
    "processes; CPU: user + system during the run, of the sending processes only (not the sink, " +
    `Redis or PostgreSQL). The raw pool is one process with one pool of ${poolSize} connections; ` +
    `each Lovage worker process has its own pool of ${lovage.env.LOVAGE_SMTP_POOL_SIZE ?? poolSize}.`,
);

for (const id of ["embedded", "redis-1", "redis-3", "postgres-1"]) {
  const label = SCENARIOS.find((scenario) => scenario.id === id)!.label.replaceAll("*", "");
  const parts = delays
    .map((delayMs) => {
      const own = rate(find(id, delayMs));
      if (own === undefined) return undefined;
      const latency = delayMs === 0 ? "at once" : `${delayMs} ms`;
      return `${ratio(own, rate(find("sequential", delayMs)))} sequential and ${ratio(own, rate(find("raw", delayMs)))} the raw pool (${latency})`;
    })
    .filter(Boolean);
  if (parts.length > 0) lines.push(`${label}: ${parts.join("; ")}.`);
}

const details = rows
  .filter((row) => row.measurement && !row.error)
  .map((row) => {
    const extra = [...row.measurement!.details];
    if (row.sink) {
      extra.unshift(`sink CPU ${row.sink.cpuSeconds.toFixed(1)} s (warm-up included)`);
      if (row.sink.lastDeliveryMs !== null) {
        extra.unshift(`last delivery at ${(row.sink.lastDeliveryMs / 1000).toFixed(2)} s`);
      }
    }
    return extra.length > 0
      ? `- ${row.scenario.label.replaceAll("*", "")}, ${row.delayMs} ms: ${extra.join(", ")}`
      : undefined;
  })
  .filter(Boolean);
if (details.length > 0) lines.push("", ...(details as string[]));

if (failures.length > 0) {
  lines.push("", "Failures:");
  failures.forEach((row, i) => lines.push(`[${i + 1}] ${row.scenario.id}, ${row.delayMs} ms: ${row.error}`));
}

console.log(lines.join("\n"));

const fatal = failures.filter((row) => !row.scenario.experimental);
if (million.some((entry) => entry.error)) {
  console.error("\nBENCH FAILED: the million-recipient run");
  process.exit(1);
}
if (fatal.length > 0) {
  console.error(`\nBENCH FAILED: ${fatal.map((row) => `${row.scenario.id} (${row.delayMs} ms)`).join(", ")}`);
  process.exit(1);
}
process.exit(0);
