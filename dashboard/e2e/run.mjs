// The dashboard end to end, in headless Chromium against the real stack that
// scripts/dashboard-e2e.sh starts (control API, proxy, metering, demo upstream, PostgreSQL,
// Redis, the broker). The scenario of issue 15, with axe checks and screenshots of every page.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { checkAccessibility, launch, newPage, screenshots } from "./browser.mjs";

const BASE = need("E2E_BASE_URL");
const GATEWAY = need("E2E_GATEWAY_URL");
const ADMIN_EMAIL = need("E2E_ADMIN_EMAIL");
const ADMIN_PASSWORD = need("E2E_ADMIN_PASSWORD");
const TENANT_ID = need("E2E_TENANT_ID");
const INVOICE_ID = need("E2E_INVOICE_ID");
const SHOTS = need("E2E_SCREENSHOT_DIR");

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/dashboard-e2e.sh)`);
  return value;
}

const results = [];
async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true, ms: Date.now() - started });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}\n${error.stack ?? error}`);
    throw error;
  }
}

/** Polls `probe` until it returns a truthy value; the condition, not a delay, ends the wait. */
async function until(what, probe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function apiLogin(email, password) {
  const response = await fetch(`${BASE}/api/v1/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ email, password }) });
  assert.equal(response.status, 200, `login of ${email}`);
  return (await response.json()).access_token;
}

async function apiCall(token, method, path, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

async function gateway(key, path = "/hello") {
  const response = await fetch(`${GATEWAY}${path}`, { headers: { Authorization: `Bearer ${key}` } });
  await response.arrayBuffer();
  return response.status;
}

async function signIn(page, email, password) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
}

function assertNoProblems(page) {
  assert.deepEqual(page.problems, [], "console errors or CSP violations");
}

const browser = await launch();
let failed = false;
try {
  const adminToken = await apiLogin(ADMIN_EMAIL, ADMIN_PASSWORD);
  const password = "correct horse battery staple";
  const tenantAdmin = `owner-${Date.now()}@demo.example`;
  const viewer = `viewer-${Date.now()}@demo.example`;
  for (const [email, role] of [[tenantAdmin, "tenant_admin"], [viewer, "tenant_viewer"]]) {
    const created = await apiCall(adminToken, "POST", `/api/v1/tenants/${TENANT_ID}/users`, { email, role, password });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }

  const { context, page } = await newPage(browser, BASE, { timezoneId: "America/New_York" });

  await step("login shows a wrong password and throttling with the wait", async () => {
    await page.goto("/");
    await page.getByRole("heading", { name: "Sign in to your dashboard" }).waitFor();
    const response = await page.request.get("/");
    assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
    assert.equal(response.headers()["cache-control"], "no-cache");
    await checkAccessibility(page, "login");
    await screenshots(page, SHOTS, "login");
    const stranger = `nobody-${Date.now()}@demo.example`;
    await page.getByLabel("Email").fill(stranger);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "Wrong email or password" }).waitFor();
    await screenshots(page, SHOTS, "login-error");
    // Five failures per account, then 429 with Retry-After.
    for (let i = 0; i < 5; i += 1) await page.getByRole("button", { name: "Sign in" }).click({ timeout: 5000 }).catch(() => {});
    const throttled = await page.getByTestId("throttled").textContent({ timeout: 10_000 });
    assert.match(throttled ?? "", /Too many sign-in attempts\.Try again in \d+ (s|min)\./);
    await screenshots(page, SHOTS, "login-throttled");
  });

  await step("a tenant admin signs in and sees the overview", async () => {
    await signIn(page, tenantAdmin, password);
    await page.getByTestId("quota-used").waitFor();
    // The demo plan: a $49.00 base fee, the first 10,000 requests free.
    assert.match(await page.getByTestId("projected-total").textContent(), /\$49\.00/);
    await checkAccessibility(page, "overview");
  });

  let secret;
  await step("create a key and copy its secret", async () => {
    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByRole("heading", { level: 1, name: "API keys" }).waitFor();
    await page.getByLabel("Name").fill("e2e backend");
    await page.getByRole("button", { name: "Create key" }).click();
    secret = await page.getByTestId("secret-value").textContent();
    assert.match(secret, /^tg_(live|test)_[0-9A-Za-z]{16}_[0-9A-Za-z]{32}$/);
    await page.getByRole("button", { name: "Copy", exact: true }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
    await checkAccessibility(page, "keys");
    await screenshots(page, SHOTS, "keys-secret");
  });

  const SENT = 7;
  await step("traffic through the proxy shows in the chart, the table and the quota meter", async () => {
    const before = await apiCall(adminToken, "GET", `/api/v1/tenants/${TENANT_ID}/usage/current`);
    for (let i = 0; i < SENT; i += 1) assert.equal(await gateway(secret), 200);
    await until("metering to count the requests", async () => {
      const now = await apiCall(adminToken, "GET", `/api/v1/tenants/${TENANT_ID}/usage/current`);
      return now.body.billable_requests >= before.body.billable_requests + SENT;
    }, 60_000);
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { level: 1, name: "Usage" }).waitFor();
    await page.getByLabel("API key").selectOption({ label: "e2e backend" });
    await until("the usage table to show the requests", async () => (await page.getByTestId("usage-total").textContent()) === String(SENT));
    assert.ok(await page.locator("[data-testid=usage-chart] canvas").count() >= 1, "the chart draws");
    await page.getByRole("button", { name: "Status class" }).click();
    await checkAccessibility(page, "usage");
    await screenshots(page, SHOTS, "usage");
    // CSV export: the same numbers.
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export CSV" }).click()]);
    const csv = readFileSync(await download.path(), "utf8");
    const rows = csv.trim().split("\r\n").slice(1).map((r) => r.split(","));
    assert.equal(rows.reduce((n, r) => n + Number(r[r.length - 6] ?? 0), 0), SENT);
    // The overview's meter moved.
    await page.getByRole("link", { name: "Overview" }).click();
    const used = await until("the quota meter to count them", async () => {
      const text = (await page.getByTestId("quota-used").textContent()) ?? "";
      const n = Number(text.replace(/[^0-9]/g, ""));
      return n >= before.body.billable_requests + SENT ? n : false;
    });
    assert.ok(used >= SENT);
    // p95 from metering's latency histograms: a latency, not the "—" of no data.
    const p95 = await until("the overview to show a p95", async () => {
      const text = (await page.getByTestId("stat-latency").textContent()) ?? "";
      return /^[0-9.,]+ (µs|ms)$/.test(text) ? text : false;
    });
    // The hint names the bucket's bound only where it says more than the estimate.
    const hint = (await page.getByTestId("stat-latency-hint").textContent()) ?? "";
    assert.match(hint, /mean [0-9.,]+ (µs|ms)$/);
    const escaped = p95.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    assert.doesNotMatch(hint, new RegExp(`(under|at most) ${escaped} ·`));
    const meter = page.getByRole("meter", { name: "Monthly quota used" });
    assert.equal(Number(await meter.getAttribute("aria-valuenow")), used);
    await page.getByTestId("stat-requests").filter({ hasText: String(SENT) }).waitFor();
    await screenshots(page, SHOTS, "overview");
  });

  await step("times are in the browser's zone, with UTC available", async () => {
    await page.getByRole("link", { name: "API keys" }).click();
    const row = page.locator("tr", { hasText: "e2e backend" });
    const local = await row.locator("td").nth(3).textContent();
    await page.getByRole("button", { name: "UTC", exact: true }).click();
    const utc = await row.locator("td").nth(3).textContent();
    assert.match(utc, / UTC$/);
    assert.notEqual(local, utc);
    await page.getByRole("button", { name: "Local time" }).click();
  });

  let rotated;
  await step("rotate the key without overlap, then revoke the new one: the proxy refuses both", async () => {
    await page.getByRole("button", { name: /^Rotate tg_/ }).first().click();
    await page.getByRole("dialog").getByLabel("Overlap").selectOption({ label: "None: the old key stops now" });
    await screenshots(page, SHOTS, "keys-rotate-dialog");
    await page.getByRole("button", { name: "Rotate key" }).click();
    await page.getByRole("heading", { name: /Copy the secret/ }).waitFor();
    rotated = await page.getByTestId("secret-value").textContent();
    assert.notEqual(rotated, secret);
    assert.equal(await until("the proxy to accept the new key", async () => ((await gateway(rotated)) === 200 ? 200 : false)), 200);
    await until("the proxy to refuse the rotated-out key", async () => (await gateway(secret)) === 401);
    const prefix = rotated.split("_").slice(0, 3).join("_");
    await page.getByRole("button", { name: `Revoke ${prefix}` }).click();
    await checkAccessibility(page, "keys-revoke-dialog");
    await screenshots(page, SHOTS, "keys-revoke-dialog");
    await page.getByRole("button", { name: "Revoke key" }).click();
    await page.getByText(`Key ${prefix} is revoked`).waitFor();
    await until("the proxy to refuse the revoked key", async () => (await gateway(rotated)) === 401);
    await screenshots(page, SHOTS, "keys");
  });

  await step("open an invoice and download it", async () => {
    await page.getByRole("link", { name: "Invoices" }).click();
    await page.getByTestId("invoices-table").waitFor();
    await checkAccessibility(page, "invoices");
    await screenshots(page, SHOTS, "invoices");
    await page.getByRole("link", { name: "January 2026" }).click();
    await page.getByTestId("invoice-lines").waitFor();
    assert.match(await page.getByTestId("invoice-total").textContent(), /12\.34/);
    await checkAccessibility(page, "invoice");
    await screenshots(page, SHOTS, "invoice");
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
    assert.equal(download.suggestedFilename(), "invoice-2026-01.html");
    const html = readFileSync(await download.path(), "utf8");
    assert.match(html, /12\.34/);
  });

  await step("an expired access token refreshes through the cookie; a lost session returns to login", async () => {
    // The next API call is refused as if the token had expired: the app refreshes and retries.
    let refused = false;
    await page.route("**/api/v1/tenants/*/invoices?*", async (route) => {
      if (refused) return route.continue();
      refused = true;
      return route.fulfill({ status: 401, contentType: "application/json", body: '{"error":{"code":"unauthenticated","message":"token expired"}}' });
    });
    await page.getByRole("link", { name: "← All invoices" }).click();
    await page.getByTestId("invoices-table").waitFor();
    assert.ok(refused);
    await page.unroute("**/api/v1/tenants/*/invoices?*");
    // Without the cookie the refresh fails: back to login, with the reason.
    await context.clearCookies();
    await page.route("**/api/v1/tenants/*/api-keys?*", (route) =>
      route.fulfill({ status: 401, contentType: "application/json", body: '{"error":{"code":"unauthenticated","message":"token expired"}}' }),
    );
    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByText("Your session has expired. Please sign in again.").waitFor();
    await page.unroute("**/api/v1/tenants/*/api-keys?*");
    assertNoProblems(page);
  });
  await context.close();

  await step("a tenant viewer sees no write controls and a clear error when a write is forced", async () => {
    const { context: viewerContext, page: vpage } = await newPage(browser, BASE);
    await signIn(vpage, viewer, password);
    await vpage.getByRole("link", { name: "API keys" }).click();
    await vpage.getByTestId("keys-table").waitFor();
    assert.equal(await vpage.getByRole("button", { name: "Create key" }).count(), 0);
    assert.equal(await vpage.getByRole("button", { name: /^(Rotate|Revoke) / }).count(), 0);
    await vpage.getByText("You have read-only access").waitFor();
    await checkAccessibility(vpage, "keys-viewer");
    await screenshots(vpage, SHOTS, "keys-viewer");
    // Force it: the page is told the viewer is an admin; the server still refuses.
    await vpage.route("**/api/v1/me", async (route) => {
      const response = await route.fetch();
      const me = await response.json();
      await route.fulfill({ response, json: { ...me, role: "tenant_admin" } });
    });
    await vpage.reload();
    await vpage.getByRole("link", { name: "API keys" }).click();
    await vpage.getByRole("button", { name: "Create key" }).click();
    const alert = vpage.getByRole("alert").filter({ hasText: "You are not allowed to do this." });
    await alert.waitFor();
    assert.match(await alert.textContent(), /403 forbidden/);
    await screenshots(vpage, SHOTS, "keys-viewer-forced-write");
    assertNoProblems(vpage);
    await viewerContext.close();
  });

  await step("a platform admin sees every admin page, suspends the tenant and its key stops working", async () => {
    const { context: adminContext, page: apage } = await newPage(browser, BASE);
    const ownerToken = await apiLogin(tenantAdmin, password);
    const key = await apiCall(ownerToken, "POST", `/api/v1/tenants/${TENANT_ID}/api-keys`, { name: "suspension check" });
    assert.equal(key.status, 201);
    assert.equal(await until("the proxy to accept the new key", async () => ((await gateway(key.body.secret)) === 200 ? 200 : false)), 200);
    await signIn(apage, ADMIN_EMAIL, ADMIN_PASSWORD);
    await apage.getByTestId("tenant-picker").waitFor();
    for (const [link, name, ready] of [
      ["Plans", "plans", "plans-table"],
      ["Subscriptions", "subscriptions", null],
      ["Audit log", "audit-log", "audit-table"],
      ["Tenants", "tenants", "tenants-table"],
    ]) {
      await apage.getByRole("link", { name: link }).click();
      await apage.getByRole("heading", { level: 1, name: link }).waitFor();
      if (ready) await apage.getByTestId(ready).waitFor();
      else await apage.getByRole("heading", { name: "Subscription history" }).waitFor();
      await checkAccessibility(apage, name);
      await screenshots(apage, SHOTS, name);
    }
    // Create a plan from the keyboard-usable form: the server's error lands at the field it names.
    await apage.getByRole("link", { name: "Plans" }).click();
    const planForm = apage.getByTestId("create-plan-form");
    await planForm.getByLabel("Name", { exact: true }).fill("E2E graduated");
    await planForm.getByLabel("Model").selectOption("graduated");
    await planForm.getByLabel("Base fee per month (minor units, e.g. cents)").fill("4900");
    const lastUpTo = planForm.getByLabel("Tier 2: up to (units)");
    await lastUpTo.fill("50");
    await planForm.getByRole("button", { name: "Create plan" }).click();
    await planForm.getByRole("alert").waitFor();
    assert.match(await planForm.getByRole("alert").textContent(), /pricing\.tiers\[1\]\.up_to/);
    assert.equal(await lastUpTo.getAttribute("aria-invalid"), "true");
    assert.equal(await lastUpTo.evaluate((el) => el === document.activeElement), true, "focus moves to the field the server named");
    await checkAccessibility(apage, "plans-form-error");
    await screenshots(apage, SHOTS, "plans-form-error");
    await lastUpTo.fill("");
    await lastUpTo.press("Enter");
    await apage.getByText("Plan E2E graduated created.").waitFor();
    await apage.getByTestId("plans-table").getByRole("rowheader", { name: "E2E graduated" }).waitFor();
    await checkAccessibility(apage, "plans-created");
    await screenshots(apage, SHOTS, "plans-created");
    await apage.getByRole("link", { name: "Tenants" }).click();
    await apage.getByTestId("tenants-table").waitFor();
    await apage.getByRole("button", { name: "Suspend demo" }).click();
    await screenshots(apage, SHOTS, "tenants-suspend-dialog");
    await apage.getByRole("button", { name: "Suspend tenant" }).click();
    await apage.getByText("Tenant demo is suspended").waitFor();
    await until("the proxy to refuse the suspended tenant's key", async () => (await gateway(key.body.secret)) !== 200);
    await apage.getByRole("button", { name: "Reactivate demo" }).click();
    await apage.getByRole("button", { name: "Reactivate tenant" }).click();
    await apage.getByText("Tenant demo is active again").waitFor();
    await until("the proxy to accept the reactivated tenant's key", async () => (await gateway(key.body.secret)) === 200);
    // The tenant pages as the platform admin sees them (with the tenant picker).
    await apage.getByRole("link", { name: "Overview" }).click();
    await apage.getByTestId("quota-used").waitFor();
    await screenshots(apage, SHOTS, "overview-platform-admin");
    assertNoProblems(apage);
    await adminContext.close();
  });
} catch {
  failed = true;
} finally {
  await browser.close();
}
const passed = results.filter((r) => r.ok).length;
console.log(`dashboard e2e: ${passed} passed, ${results.length - passed} failed; screenshots in ${SHOTS}`);
process.exit(failed ? 1 : 0);
