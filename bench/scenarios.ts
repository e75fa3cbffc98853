/**
 * The scenarios `npm run bench` can measure, and how one of them is run against a fresh SMTP
 * sink and checked: the sink must have accepted exactly N messages to N distinct addresses,
 * or the run is a failure, whatever its speed.
 *
 * To measure another topology, add a scenario whose `run` calls `runLovage` with it.
 */
import { fileURLToPath } from "node:url";
import { spawnNode } from "./child.js";
import type { ClientResult } from "./client.js";
import { runLovage, type LovageSettings, type Measurement } from "./run-lovage.js";
import type { SinkStats } from "./sink.js";
import { startSink } from "./start-sink.js";

const CLIENT_SCRIPT = fileURLToPath(new URL("./client.js", import.meta.url));

export interface RunConfig {
  n: number;
  /** Emails sent to other addresses before the measured ones, unmeasured. */
  warmup: number;
  smtpUrl: string;
  /** SMTP connections per pool, for the raw ceiling (Lovage's LOVAGE_SMTP_POOL_SIZE default). */
  poolSize: number;
  /** Sends outstanding at once in the raw ceiling. */
  inFlight: number;
  lovage: LovageSettings;
  timeoutMs: number;
  log(line: string): void;
}

export interface Scenario {
  id: string;
  label: string;
  /** Sequential sending is slow: it may use a smaller N (its rate is still comparable). */
  small: boolean;
  /** Failures are reported in its row but do not fail the bench (work in progress). */
  experimental: boolean;
  /** The relay's limit (`rate=` on its URL), when the scenario measures how close Lovage keeps to it. */
  limitPerSecond?: number;
  run(config: RunConfig): Promise<Measurement>;
}

async function runClient(mode: "sequential" | "raw", config: RunConfig): Promise<Measurement> {
  const child = spawnNode(
    CLIENT_SCRIPT,
    [
      mode,
      config.smtpUrl,
      String(config.n),
      String(config.poolSize),
      String(config.inFlight),
      String(config.warmup),
    ],
    process.env,
  );
  try {
    const line = await child.waitForLine((text) => text.startsWith("{"), config.timeoutMs, `${mode} sender`);
    const result = JSON.parse(line) as ClientResult;
    if (result.failed > 0) {
      throw new Error(`${result.failed} of ${config.n} sends failed; first: ${result.firstError}`);
    }
    return {
      wallMs: result.wallMs,
      startedAtEpochMs: result.startedAtEpochMs,
      peakRssBytes: result.peakRssBytes,
      cpuSeconds: result.cpuSeconds,
      processes: 1,
      details: [],
    };
  } finally {
    await child.stop(2_000);
  }
}

export const SCENARIOS: readonly Scenario[] = [
  {
    id: "sequential",
    label: "sequential (1 connection per email)",
    small: true,
    experimental: false,
    run: (config) => runClient("sequential", config),
  },
  {
    id: "raw",
    label: "raw nodemailer pool (ceiling)",
    small: false,
    experimental: false,
    run: (config) => runClient("raw", config),
  },
  {
    id: "embedded",
    label: "**Lovage embedded** (`lovage start`)",
    small: false,
    experimental: false,
    run: (config) => runLovage({ kind: "embedded" }, config),
  },
  ...[1, 3].map((workers): Scenario => ({
    id: `redis-${workers}`,
    label: `Lovage Redis + PostgreSQL, ${workers} worker${workers > 1 ? "s" : ""}`,
    small: false,
    experimental: true,
    run: (config) => runLovage({ kind: "distributed", broker: "redis", workers }, config),
  })),
  {
    id: "limited-3",
    label: "Lovage Redis + PostgreSQL, 3 workers, relay limited to 100/s (`?rate=100`)",
    small: false,
    experimental: false,
    limitPerSecond: 100,
    run: (config) =>
      runLovage(
        { kind: "distributed", broker: "redis", workers: 3 },
        { ...config, smtpUrl: `${config.smtpUrl}?rate=100` },
      ),
  },
  {
    id: "postgres-1",
    label: "Lovage PostgreSQL only, 1 worker",
    small: false,
    experimental: true,
    run: (config) => runLovage({ kind: "distributed", broker: "postgres", workers: 1 }, config),
  },
];

export const DEFAULT_SCENARIOS = ["sequential", "raw", "embedded", "redis-1", "redis-3", "limited-3"];
export const ALIASES: Record<string, string[]> = {
  lovage: ["embedded"],
  distributed: ["redis-1", "redis-3"],
  redis: ["redis-1", "redis-3"],
  limited: ["limited-3"],
  postgres: ["postgres-1"],
  all: SCENARIOS.map((scenario) => scenario.id),
};

export interface Row {
  scenario: Scenario;
  delayMs: number;
  n: number;
  measurement?: Measurement;
  sink?: SinkStats & { lastDeliveryMs: number | null };
  error?: string;
}

/** Runs a scenario against its own fresh sink and checks what the sink received. */
export async function runScenario(
  scenario: Scenario,
  delayMs: number,
  config: Omit<RunConfig, "smtpUrl">,
): Promise<Row> {
  const row: Row = { scenario, delayMs, n: config.n };
  let sink: Awaited<ReturnType<typeof startSink>> | undefined;
  try {
    sink = await startSink(delayMs);
    const before = await sink.stats();
    const measurement = await scenario.run({ ...config, smtpUrl: sink.url });
    row.measurement = measurement;
    const stats = await sink.stats();
    row.sink = {
      ...stats,
      cpuSeconds: stats.cpuSeconds - before.cpuSeconds,
      lastDeliveryMs: stats.lastAcceptedAtEpochMs
        ? stats.lastAcceptedAtEpochMs - measurement.startedAtEpochMs
        : null,
    };
    const expected = config.n + config.warmup;
    if (stats.messages !== expected || stats.distinct !== expected || stats.duplicates > 0) {
      throw new Error(
        `the SMTP sink received ${stats.messages} messages to ${stats.distinct} distinct addresses ` +
          `(${stats.duplicates} duplicated); expected exactly ${expected} to ${expected}` +
          (config.warmup > 0 ? ` (${config.n} measured + ${config.warmup} warm-up)` : ""),
      );
    }
  } catch (error) {
    row.error = (error as Error).message;
  } finally {
    await sink?.close();
  }
  return row;
}
