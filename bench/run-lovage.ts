/**
 * Runs one campaign through real `lovage` processes (the built dist/) in a given topology and
 * measures it: the time from POST /api/campaigns until the campaign is `completed`, the CPU
 * the Lovage processes used meanwhile, and their peak resident memory summed. A smaller
 * warm-up campaign goes first, unmeasured, as a long-running service would be warm.
 *
 * This is the hook for topologies: `embedded` is one `lovage start`; `distributed` is one
 * `lovage api` and `workers` × `lovage worker` on a fresh PostgreSQL database, with the broker
 * on Redis (an emptied database index) or on the same PostgreSQL. It starts and stops every
 * process and database it uses, and leaves nothing behind (temporary directories included).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { api } from "../test/helpers/lovage-process.js";
import { spawnNode, type Child } from "./child.js";
import { FROM, SUBJECT, TEXT, recipients } from "./message.js";
import { cpuSeconds, peakRssBytes, rssBytes } from "./proc.js";
import { createBenchDatabase, flushRedis, REDIS_URL } from "./services.js";

export type Topology =
  { kind: "embedded" } | { kind: "distributed"; broker: "redis" | "postgres"; workers: number };

export interface LovageSettings {
  /** How often the campaign's status is read while it sends. */
  pollMs: number;
  /** Extra environment for every Lovage process (LOVAGE_CONCURRENCY, LOVAGE_BATCH_SIZE, …). */
  env: Record<string, string>;
  /** Extra arguments for node itself, before the script (--cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs: string[];
}

export interface LovageRunOptions {
  n: number;
  /** Emails sent (to other addresses) before the measured run, so that it is not a cold start. */
  warmup: number;
  smtpUrl: string;
  lovage: LovageSettings;
  timeoutMs: number;
  log(line: string): void;
}

export interface Measurement {
  /** From the start of the run (the POST, for Lovage) to its end (`completed`). */
  wallMs: number;
  /** Date.now() when the run started, to compare with the sink's clock (same machine). */
  startedAtEpochMs: number;
  /** Summed over the processes that did the work. */
  peakRssBytes: number;
  cpuSeconds: number;
  processes: number;
  /** Anything else worth printing under the table. */
  details: string[];
}

interface CampaignView {
  id: number;
  status: string;
  statusReason: string | null;
  counts: Record<string, number>;
}

/** The built CLI, next to this file's dist/bench/ (the test helper's path is for sources). */
const CLI = fileURLToPath(new URL("../src/cli/index.js", import.meta.url));
const ADMIN_PASSWORD = "bench-password-123";

export interface LovageProcess {
  url: string;
  token: string;
  child: Child;
}

/** Starts `lovage start` or `lovage api` on a free port, waits until it listens, and logs in. */
async function startLovage(
  command: "start" | "api",
  env: Record<string, string>,
  nodeArgs: string[],
): Promise<LovageProcess> {
  const child = spawnNode(
    CLI,
    [command],
    { ...process.env, PORT: "0", LOVAGE_CATCHER_PORT: "0", LOVAGE_ADMIN_PASSWORD: ADMIN_PASSWORD, ...env },
    nodeArgs,
  );
  try {
    const ready = await child.waitForLine(
      (line) => line.startsWith("Lovage is running at "),
      60_000,
      `lovage ${command} ready`,
    );
    const url = ready.slice("Lovage is running at ".length).trim();
    const login = await fetch(`${url}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
    });
    if (!login.ok) throw new Error(`login failed: ${login.status} ${await login.text()}`);
    const { token } = (await login.json()) as { token: string };
    return { url, token, child };
  } catch (error) {
    await child.stop(2_000);
    throw error;
  }
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);

function topologyName(topology: Topology): string {
  return topology.kind === "embedded"
    ? "embedded"
    : `${topology.broker === "redis" ? "redis+postgres" : "postgres"}, ${topology.workers} worker(s)`;
}

/** POSTs a campaign and waits, polling, until it is `completed` with every recipient sent. */
export async function sendCampaign(
  lovage: LovageProcess,
  list: ReturnType<typeof recipients>,
  options: Pick<LovageRunOptions, "lovage" | "timeoutMs">,
): Promise<{ postMs: number; wallMs: number }> {
  const begin = performance.now();
  const created = await api<{ campaign: CampaignView; accepted: number }>(lovage, "POST", "/api/campaigns", {
    name: `bench ${list.length}`,
    from: FROM,
    subject: SUBJECT,
    text: TEXT,
    recipients: list,
  });
  if (created.status !== 202) {
    throw new Error(`POST /api/campaigns answered ${created.status}: ${JSON.stringify(created.body)}`);
  }
  if (created.body.accepted !== list.length) {
    throw new Error(`POST /api/campaigns accepted ${created.body.accepted} of ${list.length} recipients`);
  }
  const postMs = performance.now() - begin;
  const id = created.body.campaign.id;

  let view: CampaignView = created.body.campaign;
  while (view.status !== "completed") {
    if (view.status === "paused" || view.status === "cancelled") {
      throw new Error(
        `campaign ${view.status}: ${view.statusReason ?? "no reason given"}; counts ${JSON.stringify(view.counts)}`,
      );
    }
    if (performance.now() - begin > options.timeoutMs) {
      throw new Error(
        `campaign not completed after ${options.timeoutMs} ms (status ${view.status}); counts ${JSON.stringify(view.counts)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.lovage.pollMs));
    const polled = await api<CampaignView>(lovage, "GET", `/api/campaigns/${id}`);
    if (polled.status !== 200) {
      throw new Error(`GET /api/campaigns/${id} answered ${polled.status}: ${JSON.stringify(polled.body)}`);
    }
    view = polled.body;
  }
  const wallMs = performance.now() - begin;
  if (view.counts.sent !== list.length) {
    throw new Error(
      `campaign completed with ${view.counts.sent} of ${list.length} sent: ${JSON.stringify(view.counts)}`,
    );
  }
  return { postMs, wallMs };
}

export interface StartedTopology {
  /** The process with the API (and, embedded, everything else). */
  lovage: LovageProcess;
  /** Every Lovage process, the API's first. */
  pids: number[];
  startupMs: number;
  /** The last lines the processes printed, for a failure's report. */
  output(): string;
  close(log: (line: string) => void): Promise<void>;
}

/**
 * Starts a topology on fresh storage (a temporary data directory, or a new PostgreSQL database
 * and an emptied Redis index) and logs in; `close()` stops every process and removes
 * everything it made, even when a step failed.
 */
export async function startTopology(
  topology: Topology,
  env: Record<string, string>,
  nodeArgs: string[],
): Promise<StartedTopology> {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), "lovage-bench-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const workers: Child[] = [];
  let lovage: LovageProcess | undefined;
  const output = () =>
    [lovage?.child.output() ?? "", ...workers.map((worker) => worker.output())]
      .join("\n")
      .trim()
      .split("\n")
      .slice(-15)
      .join("\n");
  const close = async (log: (line: string) => void) => {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        // Keep cleaning: one failed step must not leave the other processes running.
        log(`  cleanup failed: ${(error as Error).message}`);
      }
    }
    cleanups.length = 0;
  };
  try {
    const startup = performance.now();
    if (topology.kind === "embedded") {
      const started = await startLovage("start", { ...env, LOVAGE_DATA_DIR: dataDir }, nodeArgs);
      cleanups.push(() => started.child.stop());
      lovage = started;
    } else {
      const database = await createBenchDatabase();
      cleanups.push(() => database.drop());
      const shared: Record<string, string> = { LOVAGE_DATABASE_URL: database.url };
      if (topology.broker === "redis") {
        await flushRedis();
        shared.LOVAGE_BROKER_URL = REDIS_URL;
      }
      const started = await startLovage("api", { ...env, ...shared, LOVAGE_DATA_DIR: dataDir }, nodeArgs);
      cleanups.push(() => started.child.stop());
      lovage = started;
      for (let i = 0; i < topology.workers; i++) {
        // A worker prints nothing to parse at `warn`; at `info` it logs "worker started" once
        // its BullMQ worker listens, and nothing per job.
        const worker = spawnNode(
          CLI,
          ["worker"],
          { ...process.env, LOVAGE_DATA_DIR: dataDir, ...env, ...shared, LOVAGE_LOG_LEVEL: "info" },
          nodeArgs,
        );
        workers.push(worker);
        cleanups.push(() => worker.stop());
      }
      await Promise.all(
        workers.map((worker, i) =>
          worker.waitForLine((line) => line.includes('"worker started"'), 60_000, `worker ${i + 1} started`),
        ),
      );
    }
    return {
      lovage,
      pids: [lovage.child.pid, ...workers.map((worker) => worker.pid)],
      startupMs: performance.now() - startup,
      output,
      close,
    };
  } catch (error) {
    const printed = output();
    await close(() => undefined);
    throw new Error(`${(error as Error).message}${printed ? `\n${printed}` : ""}`, { cause: error });
  }
}

/**
 * Runs `work` on a started topology; on a failure prints the processes' last lines, and stops
 * and removes everything in any case.
 */
export async function withTopology<T>(
  topology: Topology,
  env: Record<string, string>,
  options: { lovage: Pick<LovageSettings, "nodeArgs">; log(line: string): void },
  work: (started: StartedTopology) => Promise<T>,
): Promise<T> {
  const started = await startTopology(topology, env, options.lovage.nodeArgs);
  try {
    return await work(started);
  } catch (error) {
    const output = started.output();
    if (output) options.log(`  output of the lovage processes (last lines):\n${output}`);
    throw error;
  } finally {
    await started.close((line) => options.log(line));
  }
}

export async function runLovage(topology: Topology, options: LovageRunOptions): Promise<Measurement> {
  const env: Record<string, string> = {
    LOVAGE_SMTP_URL: options.smtpUrl,
    LOVAGE_LOG_LEVEL: "warn",
    ...options.lovage.env,
  };
  let sampler: NodeJS.Timeout | undefined;
  return withTopology(topology, env, options, async ({ lovage, pids, startupMs }) => {
    const warmupMs =
      options.warmup > 0
        ? (await sendCampaign(lovage, recipients(options.warmup, "warmup"), options)).wallMs
        : 0;

    const cpuBefore = pids.map((pid) => cpuSeconds(pid) ?? 0);
    const totalRss = () => pids.reduce((sum, pid) => sum + (rssBytes(pid) ?? 0), 0);
    const rssBefore = totalRss();
    let rssPeakInRun = rssBefore;
    sampler = setInterval(() => (rssPeakInRun = Math.max(rssPeakInRun, totalRss())), 100);
    const startedAtEpochMs = Date.now();
    const { postMs, wallMs } = await sendCampaign(lovage, recipients(options.n), options);
    clearInterval(sampler);
    const cpuAfter = pids.map((pid) => cpuSeconds(pid) ?? 0);
    const cpuUsed = cpuAfter.map((after, i) => after - cpuBefore[i]!);
    const peak = pids.reduce((sum, pid) => sum + (peakRssBytes(pid) ?? 0), 0);
    options.log(
      `  ${topologyName(topology)}: ready in ${(startupMs / 1000).toFixed(1)} s; ` +
        `warm-up of ${options.warmup} took ${(warmupMs / 1000).toFixed(1)} s; POST took ${Math.round(postMs)} ms`,
    );
    return {
      wallMs,
      startedAtEpochMs,
      peakRssBytes: peak,
      cpuSeconds: cpuUsed.reduce((sum, used) => sum + used, 0),
      processes: pids.length,
      details: [
        `POST ${Math.round(postMs)} ms`,
        `startup ${(startupMs / 1000).toFixed(1)} s`,
        `RSS ${mb(rssBefore)} MB before the run, ${mb(rssPeakInRun)} MB at most during it (sampled)`,
        ...(pids.length > 1
          ? [
              `CPU s api ${cpuUsed[0]!.toFixed(1)}, workers ${cpuUsed
                .slice(1)
                .map((used) => used.toFixed(1))
                .join(" + ")}`,
            ]
          : []),
      ],
    };
  }).finally(() => clearInterval(sampler));
}
