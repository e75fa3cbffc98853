/**
 * The test SMTP server (./smtp-server.ts) as a process of its own, so that a test can run it on
 * another host, e.g. inside a network namespace (`ip netns exec NS node …`). It accepts every
 * message (after `delayMs`, when given), keeps no body, and serves its counts over HTTP on the
 * same address: `GET /deliveries` → `{"total", "distinct", "duplicates"}` (accepted messages,
 * distinct envelope recipients, addresses accepted more than once).
 *
 * When both listen it prints one JSON line `{"smtp": "smtp://…", "http": "http://…"}`. It
 * exits on SIGTERM, SIGINT, or when its stdin closes (its parent went away).
 *
 * Usage: node dist/test/helpers/smtp-sink-process.js HOST SMTP_PORT HTTP_PORT [DELAY_MS]
 */
import { createServer } from "node:http";
import { startTestSmtpServer } from "./smtp-server.js";

export interface SinkDeliveries {
  total: number;
  distinct: number;
  duplicates: number;
}

const [host = "127.0.0.1", smtpPortArg = "0", httpPortArg = "0", delayArg = "0"] = process.argv.slice(2);
const smtpPort = Number(smtpPortArg);
const httpPort = Number(httpPortArg);
const delayMs = Number(delayArg);
if (![smtpPort, httpPort, delayMs].every((n) => Number.isInteger(n) && n >= 0)) {
  console.error("usage: smtp-sink-process HOST SMTP_PORT HTTP_PORT [DELAY_MS]");
  process.exit(2);
}

const smtp = await startTestSmtpServer({
  host,
  port: smtpPort,
  keepBodies: false,
  script: delayMs > 0 ? () => ({ delayMs }) : () => "accept",
});

function deliveries(): SinkDeliveries {
  const addresses = new Set<string>();
  for (const message of smtp.received) {
    for (const address of message.envelopeTo) addresses.add(address.toLowerCase());
  }
  return { total: smtp.received.length, distinct: addresses.size, duplicates: smtp.duplicates().length };
}

const http = createServer((request, response) => {
  if (request.method === "GET" && request.url === "/deliveries") {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify(deliveries()));
    return;
  }
  response.writeHead(404, { "content-type": "application/json" });
  response.end(JSON.stringify({ error: "not found" }));
});
await new Promise<void>((ready, fail) => {
  http.once("error", fail);
  http.listen(httpPort, host, () => {
    http.off("error", fail);
    ready();
  });
});
const address = http.address();
const boundHttpPort = typeof address === "object" && address ? address.port : httpPort;
process.stdout.write(`${JSON.stringify({ smtp: smtp.url, http: `http://${host}:${boundHttpPort}` })}\n`);

let exiting = false;
async function exit(): Promise<void> {
  if (exiting) return;
  exiting = true;
  http.closeAllConnections();
  await Promise.all([smtp.close(), new Promise((done) => http.close(done))]);
  process.exit(0);
}
process.on("SIGTERM", () => void exit());
process.on("SIGINT", () => void exit());
process.stdin.on("end", () => void exit());
process.stdin.resume();
