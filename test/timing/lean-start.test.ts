/**
 * A first `lovage start` on an empty data directory, as a user runs it: it copies the build's
 * data directory template instead of running initdb, so it answers /healthz within seconds of
 * being spawned (about 2.6–3.3 s on the quiet 2-core machine; initdb in the process took
 * 8.5–13.8 s: the bound is loose because a timed test must not fail on a busy machine, and the
 * figure is printed), and its peak RSS (all threads: the database's WebAssembly heap included)
 * stays well below what initdb in the process left (about 840 MB), before and after a campaign.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CampaignView } from "../../src/api/present.js";
import { api, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const HEALTHZ_WITHIN_MS = 8_000;
const PEAK_RSS_MB = 450;

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe("a first embedded start", () => {
  let smtp: TestSmtpServer;
  let lovage: LovageProcess | undefined;

  beforeAll(async () => {
    smtp = await startTestSmtpServer({ keepBodies: false });
  });

  afterAll(async () => {
    await lovage?.dispose();
    await smtp?.close();
  });

  it(`answers /healthz within ${HEALTHZ_WITHIN_MS} ms of its spawn on an empty directory, below ${PEAK_RSS_MB} MB peak RSS through a campaign`, async () => {
    const port = await freePort();
    const spawnedAt = performance.now();
    const starting = startLovage({ env: { PORT: String(port), LOVAGE_SMTP_URL: smtp.url } });
    const healthyAfterMs = await waitFor(
      async () => {
        const response = await fetch(`http://127.0.0.1:${port}/healthz`);
        return response.ok ? performance.now() - spawnedAt : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 25, message: "/healthz answers" },
    );
    lovage = await starting;
    const pid = lovage.child.pid!;
    const afterStartMb = peakRssMb(pid);

    const addresses = Array.from({ length: 2000 }, (_, i) => `lean-${i}@example.com`);
    const { body } = await api<{ campaign: CampaignView }>(lovage, "POST", "/api/campaigns", {
      from: "Timing <timing@lovage.test>",
      subject: "Lean",
      text: "Hello {{email}}",
      recipients: addresses,
    });
    const started = lovage;
    await waitFor(
      async () => {
        const view = (await api<CampaignView>(started, "GET", `/api/campaigns/${body.campaign.id}`)).body;
        return view.status === "completed" ? view : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250, message: "campaign completed" },
    );
    const afterCampaignMb = peakRssMb(pid);
    console.log(
      `first start: /healthz after ${Math.round(healthyAfterMs)} ms; peak RSS ${Math.round(afterStartMb)} MB after start, ${Math.round(afterCampaignMb)} MB after 2,000 emails`,
    );
    expect(smtp.duplicates()).toEqual([]);
    expect(addresses.every((address) => smtp.deliveries(address) === 1)).toBe(true);
    expect(healthyAfterMs).toBeLessThan(HEALTHZ_WITHIN_MS);
    expect(afterStartMb).toBeLessThan(PEAK_RSS_MB);
    expect(afterCampaignMb).toBeLessThan(PEAK_RSS_MB);
  }, 180_000);
});
