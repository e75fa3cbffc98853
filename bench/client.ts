/**
 * The two reference senders, each run in a fresh process so that its memory and CPU are its
 * own (not the bench's, nor a previous scenario's):
 *
 * - `sequential`: one new SMTP connection per email, one email after another (nodemailer,
 *   `pool: false`): the original student project's way.
 * - `raw`: one nodemailer pool of `poolSize` connections with `inFlight` sends outstanding at
 *   once: no queue, no database, nothing recorded. The ceiling for one process and one pool.
 *
 * It prints one JSON line (a `ClientResult`) and exits. It never retries: a failed send is
 * counted and reported, and the bench fails on it.
 *
 * First it sends `warmup` emails to other addresses, unmeasured, through the same transport.
 *
 * Usage: node dist/bench/client.js sequential|raw SMTP_URL N [poolSize] [inFlight] [warmup]
 */
import nodemailer from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js";
import type SMTPTransport from "nodemailer/lib/smtp-transport/index.js";
import { FROM, SUBJECT, TEXT, recipients, render, type BenchRecipient } from "./message.js";
import { peakRssBytes, sampleOwnRss } from "./proc.js";

export interface ClientResult {
  sent: number;
  failed: number;
  firstError: string | null;
  wallMs: number;
  /** Date.now() when the measured sends began. */
  startedAtEpochMs: number;
  /** VmHWM of this process, or the sampled RSS peak where /proc is missing. */
  peakRssBytes: number;
  /** CPU time used during the run only. */
  cpuSeconds: number;
}

const [mode, smtpUrl, nText, poolSizeText = "5", inFlightText = "500", warmupText = "0"] =
  process.argv.slice(2);
if ((mode !== "sequential" && mode !== "raw") || !smtpUrl || !nText) {
  console.error("usage: client.js sequential|raw SMTP_URL N [poolSize] [inFlight] [warmup]");
  process.exit(2);
}
const n = Number(nText);
const poolSize = Number(poolSizeText);
const inFlight = Number(inFlightText);
const warmup = Number(warmupText);
const server = new URL(smtpUrl);
const common = {
  host: server.hostname,
  port: Number(server.port),
  ignoreTLS: true,
  connectionTimeout: 30_000,
  greetingTimeout: 30_000,
  socketTimeout: 30_000,
};
const transport =
  mode === "raw"
    ? nodemailer.createTransport({
        ...common,
        pool: true,
        maxConnections: poolSize,
        maxMessages: Infinity,
      } as SMTPPool.Options)
    : nodemailer.createTransport({ ...common } as SMTPTransport.Options);

let sent = 0;
let failed = 0;
let firstError: string | null = null;

async function sendOne(recipient: BenchRecipient): Promise<void> {
  try {
    await transport.sendMail({
      from: FROM,
      to: `"${recipient.name}" <${recipient.email}>`,
      subject: render(SUBJECT, recipient),
      text: render(TEXT, recipient),
      messageId: `<bench.${recipient.email.split("@")[0]}.${process.pid}@lovage.test>`,
    });
    sent++;
  } catch (error) {
    failed++;
    firstError ??= (error as Error).message;
  }
}

async function sendAll(list: BenchRecipient[]): Promise<void> {
  if (mode === "sequential") {
    for (const recipient of list) await sendOne(recipient);
    return;
  }
  // A sliding window of sends: the pool queues them and keeps all its connections busy.
  let next = 0;
  const lane = async () => {
    while (next < list.length) await sendOne(list[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, list.length) }, lane));
}

await sendAll(recipients(warmup, "warmup"));
// A failed warm-up send stays counted in `failed`: it fails the bench like any other.
sent = 0;

const memory = sampleOwnRss();
const cpuBefore = process.cpuUsage();
const startedAtEpochMs = Date.now();
const startedAt = performance.now();
await sendAll(recipients(n));
const wallMs = performance.now() - startedAt;
const cpu = process.cpuUsage(cpuBefore);
const sampledPeak = memory.stop();
transport.close();

const result: ClientResult = {
  sent,
  failed,
  firstError,
  wallMs,
  startedAtEpochMs,
  peakRssBytes: peakRssBytes("self") ?? sampledPeak,
  cpuSeconds: (cpu.user + cpu.system) / 1e6,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
