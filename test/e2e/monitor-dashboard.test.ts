/**
 * The monitor's pages end to end, in Debian's Chromium (playwright-core), against a real
 * cluster: two `lovage api` and two `lovage worker` processes on a Redis of the test's own, a
 * fresh PostgreSQL database and a real SMTP server. It sees both workers and shuts one down from
 * the page; pauses and resumes a queue; finds a failed task by name, retries it and sees it
 * complete; cancels a delayed task; creates a schedule every 2 s and sees its runs, one per tick;
 * reads the charts after a campaign, and again after every process restarted; and looks at each
 * page 375 px wide. Any CSP violation or page error fails it. Screenshots go to docs/screenshots/.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { collectViolations, launchChromium } from "../helpers/browser.js";
import type { CampaignView } from "../../src/api/present.js";
import { createTestDatabase } from "../helpers/backends.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { api, waitFor as until } from "../helpers/lovage-process.js";
import { startRedisServer, type RedisServer } from "../helpers/services.js";
import { startTestSmtpServer, type TestSmtpServer } from "../helpers/smtp-server.js";

const SCREENSHOTS = fileURLToPath(new URL("../../docs/screenshots/", import.meta.url));
const INDEX = fileURLToPath(new URL("../../dist/src/index.js", import.meta.url));
const SLOW_MS = 60_000;

function waitFor<T>(read: () => Promise<T>) {
  return expect.poll(read, { timeout: SLOW_MS, interval: 250 });
}

describe("the monitor's pages on a cluster", () => {
  let redis: RedisServer;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let smtp: TestSmtpServer;
  let cluster: Cluster;
  let browser: Browser;
  let page: Page;
  let violations: string[];
  const pageErrors: Error[] = [];
  const dir = mkdtempSync(join(tmpdir(), "lovage-monitor-"));
  const flag = join(dir, "flaky-fixed");
  const tasksModule = join(dir, "tasks.mjs");
  const env = () => ({
    LOVAGE_DATABASE_URL: database.url,
    LOVAGE_BROKER_URL: redis.url,
    LOVAGE_SMTP_URL: smtp.url,
    LOVAGE_TASKS: tasksModule,
    LOVAGE_SHUTDOWN_TIMEOUT_MS: "5000",
  });

  beforeAll(async () => {
    writeFileSync(
      tasksModule,
      `import { existsSync } from "node:fs";
import { defineTask } from ${JSON.stringify(INDEX)};
export const add = defineTask("add", { handler: ({ a, b }) => a + b });
export const flaky = defineTask("flaky", {
  handler: () => {
    if (!existsSync(${JSON.stringify(flag)})) throw new Error("flaky: the flag file is not there yet");
    return "fixed";
  },
});
export const tick = defineTask("tick", { handler: () => Date.now() });
`,
    );
    [redis, database, smtp] = await Promise.all([
      startRedisServer(),
      createTestDatabase(),
      startTestSmtpServer({ keepBodies: false }),
    ]);
    cluster = await startCluster({ env: env(), apis: 2, workers: 2 });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(SLOW_MS);
    page.on("pageerror", (error) => pageErrors.push(error));
    violations = await collectViolations(page);
    await page.goto(cluster.api.url);
    await page.getByTestId("login-password").fill(cluster.api.adminPassword);
    await page.getByTestId("login-submit").click();
    await page.getByTestId("nav-overview").waitFor();
  }, 180_000);

  afterEach(({ task }) => {
    if (task.result?.state === "fail")
      for (const member of [...(cluster?.apis ?? []), ...(cluster?.workers ?? [])])
        console.error(`lovage output:\n${member.output().slice(-2000)}`);
    expect(pageErrors.map((e) => e.message)).toEqual([]);
    expect(violations).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await cluster?.stop();
    await smtp?.close();
    await redis?.stop();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

  it("sees both workers, shuts one down from the page and sees it leave", async () => {
    await page.getByTestId("nav-workers").click();
    const rows = page.getByTestId("worker-row");
    await waitFor(() => rows.count()).toBe(2);
    await shot("workers");
    const target = await rows.first().getAttribute("data-worker");
    const member = cluster.workers.find((w) => w.output().includes(target!))!;
    const exited = new Promise<number | null>((resolve) => member.child.once("exit", resolve));
    await rows.first().getByTestId("worker-shutdown").click();
    await rows.first().getByTestId("worker-shutdown-confirm").click();
    await waitFor(() => rows.count()).toBe(1);
    expect(await rows.first().getAttribute("data-worker")).not.toBe(target);
    expect(await exited).toBe(0);
  }, 90_000);

  it("pauses a queue so that a task waits, and resumes it", async () => {
    await page.getByTestId("nav-queues").click();
    const card = page.locator('[data-testid="queue-card"][data-queue="default"]');
    await card.getByTestId("queue-pause").click();
    await waitFor(() => card.getAttribute("data-paused")).toBe("true");
    const sent = await api<{ id: string }>(cluster.api, "POST", "/api/tasks/add", { input: { a: 2, b: 3 } });
    expect(sent.status).toBe(202);
    await waitFor(() => card.getByTestId("queue-count-waiting").textContent()).toBe("1");
    await shot("queues");
    await card.getByTestId("queue-resume").click();
    await waitFor(() => card.getAttribute("data-paused")).toBe("false");
    await waitFor(() => card.getByTestId("queue-count-waiting").textContent()).toBe("0");
    const done = await api<{ state: string; result: unknown }>(
      cluster.api,
      "GET",
      `/api/tasks/${sent.body.id}`,
    );
    expect(done.body).toMatchObject({ state: "completed", result: 5 });
  }, 90_000);

  it("finds a failed task by name, retries it and sees it complete", async () => {
    const sent = await api<{ id: string }>(cluster.api, "POST", "/api/tasks/flaky", {
      input: null,
      options: { attempts: 1 },
    });
    await until(
      async () =>
        (await api<{ state: string }>(cluster.api, "GET", `/api/tasks/${sent.body.id}`)).body.state ===
        "failed",
    );
    await page.getByTestId("nav-tasks").click();
    await page.getByTestId("tasks-name").fill("flaky");
    await page.getByTestId("tasks-state").selectOption("failed");
    const row = page.locator(`[data-testid="task-row"][data-id="${sent.body.id}"]`);
    await waitFor(() => row.count()).toBe(1);
    await row.click();
    await waitFor(() => page.getByTestId("task-detail-state").textContent()).toBe("failed");
    expect(await page.getByTestId("task-detail-error").textContent()).toContain(
      "the flag file is not there yet",
    );
    await shot("task-detail");
    writeFileSync(flag, "");
    await page.getByTestId("task-retry").click();
    await waitFor(() => page.getByTestId("task-detail-state").textContent()).toBe("completed");
    expect(await page.getByTestId("task-detail-result").textContent()).toContain("fixed");
  }, 90_000);

  it("cancels a delayed task from its detail", async () => {
    await page.getByTestId("nav-tasks").click();
    await page.getByTestId("task-name").fill("add");
    await page.getByTestId("task-input").fill('{"a":1,"b":1}');
    await page.getByTestId("task-delay").fill("600000");
    await page.getByTestId("task-submit").click();
    await waitFor(() => page.getByTestId("task-state").textContent()).toBe("delayed");
    await page.getByTestId("task-id").locator("a").click();
    await waitFor(() => page.getByTestId("task-detail-state").textContent()).toBe("delayed");
    await page.getByTestId("task-cancel").click();
    await waitFor(() => page.getByTestId("task-detail-state").textContent()).toBe("cancelled");
    await page.getByTestId("nav-tasks").click();
    await page.getByTestId("tasks-table").waitFor();
    await shot("tasks");
  }, 60_000);

  it("creates a schedule every 2 s and sees at least three runs, one per tick", async () => {
    await page.getByTestId("nav-schedules").click();
    await page.getByTestId("schedule-task").fill("tick");
    await page.getByTestId("schedule-id").fill("every-2s");
    await page.getByTestId("schedule-kind").selectOption("every");
    await page.getByTestId("schedule-every").fill("2000");
    await page.getByTestId("schedule-input").fill("");
    await page.getByTestId("schedule-submit").click();
    const row = page.locator('[data-testid="schedule-row"][data-schedule="every-2s"]');
    await row.getByTestId("schedule-open").click();
    // Runs that happened; the next one waits as a delayed job until its tick.
    const runs = page.locator('[data-testid="schedule-run"][data-state="completed"]');
    await waitFor(() => runs.count()).toBeGreaterThanOrEqual(3);
    await shot("schedules");
    await row.getByTestId("schedule-disable").click();
    await waitFor(() => row.getAttribute("data-enabled")).toBe("false");
    // Every run the store knows, not only those shown: one per 2 s tick, never two. A run's
    // tick is when it started (its job is created a tick earlier, as the previous one starts).
    const all = await api<{
      tasks: { state: string; startedAt: string | null; scheduleId: string | null }[];
    }>(cluster.api, "GET", "/api/tasks?name=tick&limit=500");
    const started = all.body.tasks
      .filter((t) => t.scheduleId === "every-2s" && t.state === "completed" && t.startedAt)
      .map((t) => Date.parse(t.startedAt!))
      .sort((a, b) => a - b);
    expect(started.length).toBeGreaterThanOrEqual(3);
    const gaps = started.slice(1).map((t, i) => t - started[i]!);
    expect(
      gaps.every((gap) => gap > 1_000),
      `runs started ${JSON.stringify(gaps)} ms apart`,
    ).toBe(true);
  }, 90_000);

  async function campaignSent(count: number) {
    const created = await api<{ campaign: CampaignView }>(cluster.api, "POST", "/api/campaigns", {
      from: "Charts <charts@lovage.test>",
      subject: "Charts",
      text: "Hello",
      recipients: Array.from({ length: count }, (_, i) => `chart${Date.now()}-${i}@gmail.com`),
    });
    expect(created.status).toBe(202);
    await until(
      async () =>
        (await api<CampaignView>(cluster.api, "GET", `/api/campaigns/${created.body.campaign.id}`)).body
          .status === "completed",
      { timeoutMs: 60_000 },
    );
  }

  it("reads the charts after a campaign: non-zero points", async () => {
    await campaignSent(25);
    await page.getByTestId("nav-overview").click();
    const emails = page.getByTestId("chart-emails");
    await waitFor(async () => Number(await emails.getAttribute("data-total"))).toBeGreaterThanOrEqual(25);
    expect(Number(await emails.getAttribute("data-points"))).toBeGreaterThan(0);
    await waitFor(async () =>
      Number(await page.getByTestId("chart-jobs").getAttribute("data-points")),
    ).toBeGreaterThan(0);
    expect(await page.getByTestId("stat-workers").textContent()).toBe("1");
    await waitFor(() => page.getByTestId("stat-emails").textContent()).toBe("25");
    expect(await page.locator('[data-testid="by-domain-row"][data-key="gmail"]').count()).toBe(1);
    // uPlot drew into its canvas.
    expect(await emails.locator("canvas").count()).toBeGreaterThan(0);
    await shot("overview");
  }, 120_000);

  it("lays every page out in 375 px without sideways scrolling", async () => {
    const token = await page.evaluate('localStorage.getItem("lovage.token")');
    const phone = await browser.newPage({ viewport: { width: 375, height: 800 } });
    phone.on("pageerror", (error) => pageErrors.push(error));
    const phoneViolations = await collectViolations(phone);
    try {
      await phone.goto(cluster.api.url);
      await phone.evaluate(`localStorage.setItem("lovage.token", ${JSON.stringify(token)})`);
      await phone.reload();
      for (const [view, ready] of [
        ["overview", "chart-emails"],
        ["workers", "workers-table"],
        ["queues", "queue-card"],
        ["tasks", "tasks-table"],
        ["schedules", "schedules-table"],
      ] as const) {
        await phone.evaluate(`window.location.hash = "#/${view}"`);
        await phone.getByTestId(ready).first().waitFor();
        const width = Number(await phone.evaluate("document.documentElement.scrollWidth"));
        expect(width, `${view} is ${width} px wide`).toBeLessThanOrEqual(375);
        if (view === "overview" || view === "queues")
          await phone.screenshot({ path: join(SCREENSHOTS, `${view}-375.png`), fullPage: true });
      }
      expect(phoneViolations).toEqual([]);
    } finally {
      await phone.close();
    }
  }, 90_000);

  it("still charts the hour before after every process restarts", async () => {
    for (const member of [...cluster.workers, ...cluster.apis]) await member.stop();
    await cluster.stop();
    cluster = await startCluster({ env: env(), apis: 1, workers: 1 });
    // The new API has a new address: sign in there (the secret is shared, the token still good).
    const token = await page.evaluate('localStorage.getItem("lovage.token")');
    await page.goto(`${cluster.api.url}/#/overview`);
    await page.evaluate(`localStorage.setItem("lovage.token", ${JSON.stringify(token)})`);
    await page.reload();
    await page.getByTestId("overview").waitFor();
    const emails = page.getByTestId("chart-emails");
    await waitFor(async () => Number(await emails.getAttribute("data-total"))).toBeGreaterThanOrEqual(25);
    await waitFor(async () =>
      Number(await page.getByTestId("chart-jobs").getAttribute("data-points")),
    ).toBeGreaterThan(0);
  }, 120_000);
});
