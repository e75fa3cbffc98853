/**
 * The benchmark's SMTP sink, run as its own process so that parsing what it receives never
 * takes CPU from the event loop of the process being measured. It starts the test SMTP server
 * (test/helpers/smtp-server.ts) answering at once or after `delayMs`, prints one JSON line
 * `{"url", "port"}`, then answers each `stats` line on stdin with one JSON line of counts.
 * It exits when stdin closes or says `exit`. It never relays or keeps a message body.
 *
 * Usage: node dist/bench/sink.js [delayMs]
 */
import { createInterface } from "node:readline";
import { startTestSmtpServer, type Script } from "../test/helpers/smtp-server.js";

export interface SinkStats {
  /** Accepted messages. */
  messages: number;
  /** Distinct envelope recipients over all accepted messages. */
  distinct: number;
  /** Addresses accepted more than once. */
  duplicates: number;
  /** CPU time the sink has used since it started, in seconds. */
  cpuSeconds: number;
  /** Date.now() when the last message was accepted (to within a few ms), or null. */
  lastAcceptedAtEpochMs: number | null;
  /** Messages accepted in each second since the first one: how steady the flow was. */
  perSecond: number[];
}

const delayMs = Number(process.argv[2] ?? "0");
if (!Number.isFinite(delayMs) || delayMs < 0) {
  console.error(`sink: expected a delay in milliseconds, got "${process.argv[2]}"`);
  process.exit(2);
}

const script: Script = delayMs > 0 ? () => ({ delayMs }) : () => "accept";
const server = await startTestSmtpServer({ script, keepBodies: false });
process.stdout.write(`${JSON.stringify({ url: server.url, port: server.port })}\n`);

// The test server keeps no timestamps; watching its count is cheap and precise enough.
let lastCount = 0;
let lastAcceptedAtEpochMs: number | null = null;
let firstAcceptedAtEpochMs: number | null = null;
const perSecond: number[] = [];
setInterval(() => {
  if (server.received.length === lastCount) return;
  const now = Date.now();
  firstAcceptedAtEpochMs ??= now;
  const second = Math.floor((now - firstAcceptedAtEpochMs) / 1000);
  while (perSecond.length <= second) perSecond.push(0);
  perSecond[second]! += server.received.length - lastCount;
  lastCount = server.received.length;
  lastAcceptedAtEpochMs = now;
}, 5).unref();

function stats(): SinkStats {
  const addresses = new Set<string>();
  for (const message of server.received) {
    for (const address of message.envelopeTo) addresses.add(address.toLowerCase());
  }
  const cpu = process.cpuUsage();
  return {
    messages: server.received.length,
    distinct: addresses.size,
    duplicates: server.duplicates().length,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    lastAcceptedAtEpochMs,
    perSecond,
  };
}

let exiting = false;
async function exit(): Promise<void> {
  if (exiting) return;
  exiting = true;
  await server.close();
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = line.trim();
  if (command === "stats") process.stdout.write(`${JSON.stringify(stats())}\n`);
  else if (command === "exit") void exit();
  else process.stdout.write(`${JSON.stringify({ error: `unknown command "${command}"` })}\n`);
});
lines.on("close", () => void exit());
