/**
 * The dashboard end to end: a real `lovage start` (embedded PGlite, the built-in mail catcher)
 * driven through Debian's Chromium with playwright-core. It signs in, sends a campaign from a
 * pasted list and from an uploaded CSV, follows it to completion, reads the email log and the
 * caught messages, and runs the `add` task, all under the server's Content-Security-Policy: any
 * violation the browser reports fails the test. It also opens the API docs. It waits on the DOM,
 * never on fixed sleeps, and leaves a screenshot at /tmp/lovage-dashboard.png for a human to
 * look at.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { collectViolations, launchChromium } from "../helpers/browser.js";
import { startLovage } from "../helpers/lovage-process.js";

const SCREENSHOT = "/tmp/lovage-dashboard.png";
const SLOW_MS = 60_000;

/** Waits until `read()` meets the matcher that follows: DOM polling, never a fixed sleep. */
function waitFor<T>(read: () => Promise<T>) {
  return expect.poll(read, { timeout: SLOW_MS, interval: 200 });
}

/** The one browser function a test reads in a frame (the test compiles without DOM types). */
interface Styled {
  getComputedStyle(element: unknown): { color: string };
}

/** The Vietnamese name whose subject line must survive rendering, SMTP and the catcher. */
const VIETNAMESE_NAME = "Trần Văn Hùng";

/**
 * 20 valid recipients in the three pasted forms, some with Vietnamese names, and 2 malformed
 * lines (one of them with a Vietnamese name) at lines 7 and 16.
 */
function pastedRecipients(): { text: string; rejectedLines: Map<number, string> } {
  const names = [VIETNAMESE_NAME, "Nguyễn Thị Ánh", "Lê Quốc Bảo", "Phạm Minh Châu", "Ana Silva"];
  const valid: string[] = [];
  for (let i = 1; i <= 20; i += 1) {
    const name = names[(i - 1) % names.length] ?? "Friend";
    const email = `user${i}@example.com`;
    if (i % 3 === 1) valid.push(`${name} <${email}>`);
    else if (i % 3 === 2) valid.push(`${email},${name}`);
    else valid.push(email);
  }
  const rejectedLines = new Map([
    [7, "Đặng Thu Thảo <thao@>"],
    [16, "not-an-email"],
  ]);
  const lines: string[] = [];
  for (let line = 1; lines.length < 22; line += 1) {
    lines.push(rejectedLines.get(line) ?? valid.shift() ?? "");
  }
  return { text: lines.join("\n"), rejectedLines };
}

describe("the dashboard", () => {
  let server: Awaited<ReturnType<typeof startLovage>>;
  let browser: Browser;
  let page: Page;
  let violations: string[];
  const pageErrors: Error[] = [];

  beforeAll(async () => {
    server = await startLovage();
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(SLOW_MS);
    page.on("pageerror", (error) => pageErrors.push(error));
    violations = await collectViolations(page);
  }, 120_000);

  afterEach(({ task }) => {
    if (task.result?.state === "fail") console.error(`lovage output:\n${server.output().slice(-4000)}`);
    // An uncaught exception in the page is a failure even when the assertions passed.
    expect(pageErrors.map((e) => e.message)).toEqual([]);
    // So is anything the Content-Security-Policy refused: the dashboard must work under it.
    expect(violations).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await server?.dispose();
  });

  async function fillCampaignFields(subject: string, text: string): Promise<void> {
    await page.getByTestId("nav-new-campaign").click();
    await page.getByTestId("campaign-from").fill("Lovage Test <news@example.com>");
    await page.getByTestId("campaign-subject").fill(subject);
    await page.getByTestId("campaign-text").fill(text);
  }

  it("signs in, sends a pasted list, follows it to completion and shows the caught mail", async () => {
    const response = await page.goto(new URL("/", server.url).href);
    const headers = response!.headers();
    expect(headers["content-security-policy"]).toContain("script-src 'self';");
    expect(headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(headers["content-security-policy"]).not.toContain("unsafe-inline");
    expect(headers["x-frame-options"]).toBe("DENY");
    expect(headers["x-content-type-options"]).toBe("nosniff");
    expect(headers["referrer-policy"]).toBe("no-referrer");
    await waitFor(() => page.getByTestId("login-username").inputValue()).toBe("admin");
    await page.getByTestId("login-password").fill(server.adminPassword);
    await page.getByTestId("login-submit").click();
    await page.getByTestId("nav-campaigns").waitFor();

    const { text, rejectedLines } = pastedRecipients();
    await fillCampaignFields("Chào {{name}}", "Xin chào {{name}},\n\nĐây là thư thử nghiệm của Lovage.");
    await page
      .getByTestId("campaign-html")
      .fill('<p style="color: rgb(47, 125, 79)">Xin chào <strong>{{name}}</strong>,</p>');
    await page.getByTestId("campaign-recipients").fill(text);
    await page.getByTestId("campaign-submit").click();

    // The import report: 20 accepted, the two bad lines with their numbers and values.
    await waitFor(() => page.getByTestId("accepted-count").textContent()).toMatch(/accepted 20\b/i);
    const rows = page.getByTestId("rejected-row");
    await waitFor(() => rows.count()).toBe(2);
    for (const [i, [line, value]] of [...rejectedLines].entries()) {
      const row = rows.nth(i);
      expect(await row.getByTestId("rejected-line").textContent()).toBe(String(line));
      expect(await row.textContent()).toContain(value);
    }

    // The campaign page follows the sending live until every recipient is sent.
    const detail = page.getByTestId("campaign-detail");
    await detail.waitFor();
    await waitFor(() => page.getByTestId("campaign-status").textContent()).toBe("completed");
    expect(await page.getByTestId("campaign-send-at").textContent()).toContain("sends at once");
    expect(await page.getByTestId("campaign-priority").textContent()).toContain("priority 0");
    await waitFor(() => page.getByTestId("count-sent").textContent()).toBe("20");
    expect(await page.getByTestId("count-total").textContent()).toBe("20");
    expect(await page.getByTestId("count-failed").textContent()).toBe("0");

    // The email log shows the sent rows (it refreshes itself as the counts move).
    const sentRows = page.locator('[data-testid="recipient-row"][data-status="sent"]');
    await waitFor(() => sentRows.count()).toBe(20);
    expect(await page.getByTestId("log-table").textContent()).toContain("user1@example.com");

    // The filter asks the server: no failed row.
    await page.getByTestId("log-status-filter").selectOption("failed");
    await waitFor(() => page.getByTestId("recipient-row").count()).toBe(0);
    await page.getByTestId("log-status-filter").selectOption("");
    await waitFor(() => sentRows.count()).toBe(20);
    await page.evaluate("window.scrollTo(0, 0)"); // a string: the test compiles without DOM types
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // The campaigns list shows it complete with a full progress bar.
    await page.getByTestId("nav-campaigns").click();
    const progress = page.getByTestId("campaign-progress").first();
    await waitFor(() => progress.getAttribute("aria-valuenow")).toBe("20");

    // The mail catcher caught the personalized subject with its Vietnamese name intact.
    await page.getByTestId("nav-messages").click();
    const subject = `Chào ${VIETNAMESE_NAME}`;
    const message = page.getByTestId("message-subject").filter({ hasText: subject }).first();
    await message.waitFor();
    await message.click();
    await waitFor(() => page.getByTestId("message-view-subject").textContent()).toBe(subject);
    const html = page.frameLocator('[data-testid="message-html-frame"]').locator("strong");
    expect(await html.textContent()).toBe(VIETNAMESE_NAME);
    // The email's own inline style applies: the preview has a policy of its own.
    const color = await html.evaluate(
      (element) => (globalThis as unknown as Styled).getComputedStyle(element).color,
    );
    expect(color).toBe("rgb(47, 125, 79)");
    await page.getByTestId("message-tab-text").click();
    expect(await page.getByTestId("message-text").textContent()).toContain(`Xin chào ${VIETNAMESE_NAME}`);
  }, 180_000);

  it("accepts recipients uploaded as a CSV file and reports its bad row by file line", async () => {
    await fillCampaignFields("Hello {{name}} from {{city}}", "Hi {{name}}, greetings to {{city}}.");
    await page.getByTestId("recipients-mode-file").click();
    const csv = [
      "email,name,city",
      "mai@example.com,Phạm Thị Mai,Hà Nội",
      "khoa@example.com,Võ Đăng Khoa,Huế",
      "linh@example.com,Đỗ Mỹ Linh,Đà Nẵng",
      "broken-address,Nobody,Nowhere",
    ].join("\n");
    await page.getByTestId("campaign-file").setInputFiles({
      name: "recipients.csv",
      mimeType: "text/csv",
      buffer: Buffer.from(csv, "utf8"),
    });
    await page.getByTestId("campaign-submit").click();

    await waitFor(() => page.getByTestId("accepted-count").textContent()).toMatch(/accepted 3\b/i);
    const rejected = page.getByTestId("rejected-row");
    await waitFor(() => rejected.count()).toBe(1);
    expect(await rejected.first().getByTestId("rejected-line").textContent()).toBe("5");
    expect(await page.getByTestId("count-total").textContent()).toBe("3");
  }, 120_000);

  it("runs the add task with JSON input and shows its result", async () => {
    await page.getByTestId("nav-tasks").click();
    await page.getByTestId("task-name").fill("add");
    await page.getByTestId("task-input").fill('{"a":10,"b":20}');
    await page.getByTestId("task-submit").click();
    await waitFor(() => page.getByTestId("task-state").textContent()).toBe("completed");
    expect(await page.getByTestId("task-result").textContent()).toBe("30");
  }, 60_000);

  it("lets an admin add a viewer, who sees no Users tab and is refused a change", async () => {
    await page.getByTestId("nav-users").click();
    await page.getByTestId("user-name").fill("dash-viewer");
    await page.getByTestId("user-password").fill("dash-viewer-pw");
    await page.getByTestId("user-role").selectOption("viewer");
    await page.getByTestId("user-add").click();
    await page.getByTestId("user-dash-viewer").waitFor();
    expect(await page.getByTestId("whoami").textContent()).toBe("admin · admin");

    const viewer = await browser.newPage({ viewport: { width: 375, height: 800 } });
    try {
      await viewer.goto(new URL("/", server.url).href);
      await viewer.getByTestId("login-username").fill("dash-viewer");
      await viewer.getByTestId("login-password").fill("dash-viewer-pw");
      await viewer.getByTestId("login-submit").click();
      await waitFor(() => viewer.getByTestId("whoami").textContent()).toBe("dash-viewer · viewer");
      expect(await viewer.getByTestId("nav-users").count()).toBe(0);
      await viewer.getByTestId("nav-tasks").click();
      await viewer.getByTestId("task-name").fill("add");
      await viewer.getByTestId("task-input").fill('{"a":1,"b":2}');
      await viewer.getByTestId("task-submit").click();
      await waitFor(() => viewer.getByTestId("task-error").textContent()).toContain(
        "needs the role sender or admin; dash-viewer is viewer",
      );
      // Signing out revokes the token on the server: reusing it is refused.
      const token = await viewer.evaluate<string>('localStorage.getItem("lovage.token")');
      await viewer.getByTestId("logout").click();
      await viewer.getByTestId("login-form").waitFor();
      const reused = await fetch(new URL("/api/campaigns", server.url), {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(reused.status).toBe(401);
    } finally {
      await viewer.close();
    }
  }, 60_000);

  it("goes back to the sign-in form when the server rejects the stored token", async () => {
    await page.evaluate('localStorage.setItem("lovage.token", "not-a-valid-token")');
    await page.goto(new URL("/#/campaigns", server.url).href);
    await page.getByTestId("login-form").waitFor();
    expect(await page.evaluate('localStorage.getItem("lovage.token")')).toBeNull();
  }, 60_000);

  it("shows the API docs under their own policy, with no violation", async () => {
    const response = await page.goto(new URL("/api/docs", server.url).href);
    expect(response!.headers()["content-security-policy"]).toContain("frame-ancestors 'none'");
    await waitFor(() => page.locator(".swagger-ui .info .title").textContent()).toContain("Lovage API");
    // The operations are drawn from the OpenAPI document, fetched under the docs' policy.
    await waitFor(() => page.locator(".swagger-ui .opblock").count()).toBeGreaterThan(5);
    // Opening an operation draws its parameters and schemas, more of swagger-ui's code.
    await page.locator(".swagger-ui .opblock-summary").first().click();
    await page.locator(".swagger-ui .opblock-body").first().waitFor();
  }, 60_000);

  it("reports a violation when the page breaks the policy, so the checks above can fail", async () => {
    const probe = await browser.newPage();
    try {
      const caught = await collectViolations(probe);
      await probe.goto(new URL("/", server.url).href);
      await probe.getByTestId("login-form").waitFor();
      await probe.evaluate(`document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>')`);
      await waitFor(async () => caught.length).toBeGreaterThan(0);
      expect(caught.join("\n")).toMatch(/style-src/);
    } finally {
      await probe.close();
    }
  }, 60_000);
});
