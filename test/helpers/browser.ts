/**
 * Debian's Chromium for the browser tests, as the machine allows it (playwright-core, no
 * downloaded browser, root without a sandbox), and the page's CSP violations as a list the
 * tests assert empty.
 */
import { type Browser, chromium, type Page } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/**
 * Reports each CSP violation of every frame to `report` (exposed by the test). A string: the
 * test compiles without DOM types.
 */
const REPORT_VIOLATIONS = `document.addEventListener("securitypolicyviolation", (e) =>
  window.lovageCspViolation(e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " at " +
    (e.sourceFile || document.location.href) + ":" + e.lineNumber));`;

/** Collects the CSP violations of a page: its events, and Chromium's "Refused to …" console lines. */
export async function collectViolations(page: Page): Promise<string[]> {
  const violations: string[] = [];
  await page.exposeFunction("lovageCspViolation", (text: string) => violations.push(text));
  await page.addInitScript(REPORT_VIOLATIONS);
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/.test(message.text())) violations.push(message.text());
  });
  return violations;
}
