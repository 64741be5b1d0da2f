// Headless Chromium (Debian's, never a downloaded one) through playwright-core, with the launch
// flags that work as root on a CI machine, axe-core checks and two-width screenshots.
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export const LAPTOP = { width: 1440, height: 900 };
export const PHONE = { width: 390, height: 844 };

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// playwright-core starts Chromium with a new, empty --user-data-dir of its own.

/** A page that records console errors and CSP violations, which fail the run. */
export async function newPage(browser, baseURL, options = {}) {
  const context = await browser.newContext({ baseURL, viewport: LAPTOP, acceptDownloads: true, ...options });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: baseURL });
  const page = await context.newPage();
  page.problems = [];
  page.on("console", (message) => {
    const text = message.text();
    // The API's own refusals (401 before a refresh, a forced 403) are logged by Chromium as
    // failed resources; they are asserted on where they happen.
    if (message.type() === "error" && !/Failed to load resource/.test(text)) page.problems.push(`console: ${text}`);
    if (/Content Security Policy|Refused to/.test(text)) page.problems.push(`csp: ${text}`);
  });
  page.on("pageerror", (error) => page.problems.push(`page error: ${error.message}`));
  return { context, page };
}

/** axe-core on the current page: no serious or critical violations. */
export async function checkAccessibility(page, name) {
  // Evaluated through the DevTools protocol, so the page's CSP does not apply to axe itself.
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length > 0) throw new Error(`${name}: accessibility violations:\n${JSON.stringify(bad, null, 2)}`);
  return violations.length;
}

/** Full-page screenshots at laptop and phone width. */
export async function screenshots(page, dir, name) {
  mkdirSync(dir, { recursive: true });
  await page.setViewportSize(LAPTOP);
  await page.screenshot({ path: join(dir, `${name}-laptop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  // Two frames: the chart's ResizeObserver has redrawn at the new width.
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  await page.screenshot({ path: join(dir, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(LAPTOP);
}
