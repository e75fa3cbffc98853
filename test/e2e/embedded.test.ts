/**
 * The embedded topology as a user runs it: the real `lovage start` process, a real SMTP
 * server given in LOVAGE_SMTP_URL, the HTTP API; and a `kill -9` in the middle of a campaign.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CampaignView } from "../../src/api/present.js";
import { unrecordedLimit } from "../../src/mail/send-batch.js";
import { api, startLovage, waitFor, type LovageProcess } from "../helpers/lovage-process.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

interface Created {
  campaign: CampaignView;
  accepted: number;
  rejected: { line: number; value: string; reason: string }[];
}

describe("lovage start (embedded)", () => {
  let smtp: TestSmtpServer;
  const processes: LovageProcess[] = [];

  beforeAll(async () => {
    smtp = await startTestSmtpServer({ keepBodies: false });
  });

  afterEach(async () => {
    // Newest first: a restarted process runs on the directory its predecessor made.
    for (const lovage of processes.splice(0).reverse()) await lovage.dispose();
  });

  afterAll(async () => {
    await smtp?.close();
  });

  async function start(env: Record<string, string> = {}, dataDir?: string) {
    const lovage = await startLovage({
      env: { LOVAGE_SMTP_URL: smtp.url, LOVAGE_DEFAULT_FROM: "Lovage test <lovage@example.com>", ...env },
      dataDir,
    });
    processes.push(lovage);
    return lovage;
  }

  async function campaign(lovage: LovageProcess, id: number) {
    const { body } = await api<CampaignView>(lovage, "GET", `/api/campaigns/${id}`);
    return body;
  }

  it("accepts 1,000 addresses, rejects 10 malformed lines and 5 duplicates by line, and delivers each once", async () => {
    const lovage = await start();
    const lines = Array.from({ length: 1000 }, (_, i) => `Người nhận ${i} <one-${i}@example.com>`);
    const malformed = [
      "bob@",
      "no-at-sign",
      "a b@x.com",
      "@x.com",
      "x@@y.com",
      "x@localhost",
      "a@b..com",
      "two words",
      "x@y",
      "<>",
    ];
    malformed.forEach((bad, i) => lines.splice(i * 100 + 3, 0, bad));
    for (let i = 0; i < 5; i++) lines.push(`ONE-${i}@example.com`);
    const { status, body } = await api<Created>(lovage, "POST", "/api/campaigns", {
      subject: "Chào {{name}}",
      text: "Xin chào {{name}}",
      from: "Lovage <news@example.com>",
      recipients: lines.join("\n"),
    });
    expect(status).toBe(202);
    expect(body.accepted).toBe(1000);
    expect(body.rejected).toHaveLength(15);
    expect(body.rejected.slice(0, 10).map((r) => r.line)).toEqual(malformed.map((_, i) => i * 100 + 4));
    expect(body.rejected.slice(10).map((r) => r.reason)).toEqual(
      // The first malformed line (line 4) pushes one-3 and one-4 down to lines 5 and 6.
      [1, 2, 3, 5, 6].map((firstLine) => `duplicate of line ${firstLine}`),
    );
    const done = await waitFor(
      async () => {
        const view = await campaign(lovage, body.campaign.id);
        return view.status === "completed" ? view : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250, message: "campaign completed" },
    );
    expect(done.counts.sent).toBe(1000);
    for (let i = 0; i < 1000; i++) expect(smtp.deliveries(`one-${i}@example.com`)).toBe(1);
    expect(smtp.duplicates()).toEqual([]);
  });

  it(
    "completes a 3,000-address campaign after a kill -9 without delivering any address twice",
    async () => {
      // A remote-like server (5 ms a message) so that the kill lands mid-campaign.
      smtp.setScript(() => ({ delayMs: 5 }));
      const env = { LOVAGE_JOB_LOCK_MS: "3000", LOVAGE_CONCURRENCY: "8", LOVAGE_SMTP_POOL_SIZE: "6" };
      const first = await start(env);
      const addresses = Array.from({ length: 3000 }, (_, i) => `crash-${i}@example.com`);
      const { body } = await api<Created>(first, "POST", "/api/campaigns", {
        subject: "Crash test",
        text: "Hello {{email}}",
        recipients: addresses,
      });
      expect(body.accepted).toBe(3000);
      const id = body.campaign.id;
      await waitFor(async () => (await campaign(first, id)).counts.sent >= 600, {
        timeoutMs: 120_000,
        intervalMs: 100,
        message: "600 sent before the kill",
      });
      await first.kill();
      const deliveredBeforeRestart = addresses.filter((a) => smtp.deliveries(a) > 0).length;
      expect(deliveredBeforeRestart).toBeLessThan(3000);

      const second = await start(env, first.dataDir);
      const done = await waitFor(
        async () => {
          const view = await campaign(second, id);
          return view.status === "completed" ? view : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 250, message: "campaign completed after the restart" },
      );
      const { sent, failed, unknown } = done.counts;
      expect(sent + failed + unknown).toBe(3000);
      expect(smtp.duplicates()).toEqual([]);
      const delivered = addresses.filter((a) => smtp.deliveries(a) === 1).length;
      // Every `sent` row was delivered; an `unknown` one may or may not have been.
      expect(delivered).toBeGreaterThanOrEqual(sent);
      expect(delivered).toBeLessThanOrEqual(sent + unknown);
      // At most the SMTP transactions started and not yet recorded at the kill: one server with
      // LOVAGE_SMTP_POOL_SIZE connections in flight, and as many being recorded.
      expect(unknown).toBeLessThanOrEqual(unrecordedLimit(Number(env.LOVAGE_SMTP_POOL_SIZE)));
    },
    /* two starts of the embedded process and 3,000 messages on 2 shared cores */ 180_000,
  );
});
