// A person at HyOS's dashboard, in headless Chromium (Debian's package, driven by
// playwright-core): opens it, creates the admin, signs out and in again, sees the server
// running, presses "Restart Server", sees it running again, and keeps a screenshot.
//
// Usage: node dashboard-browser.js URL SCREENSHOT.png
// Env: CHROMIUM (default /usr/bin/chromium), ADMIN_USER, ADMIN_PASSWORD, STEP_TIMEOUT_MS.
// Prints one JSON line per step on stdout; exits 1 with the failing step on stderr.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, screenshot] = process.argv.slice(2);
const user = process.env.ADMIN_USER || "admin";
const password = process.env.ADMIN_PASSWORD || "correct-horse-battery-staple";
const timeout = Number(process.env.STEP_TIMEOUT_MS || 60000);
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const started = Date.now();
function step(name, extra = {}) {
  console.log(JSON.stringify({ step: name, ms: Date.now() - started, ...extra }));
}

// What tells a person the server runs: the bar under the menu says "Server Online" and
// Quick Actions disables "Start Server" (HyOS: state === "running").
async function seesRunning(page, options = {}) {
  await page.getByText("Server Online", { exact: true }).waitFor(options);
  const start = page.getByRole("button", { name: "Start Server", exact: true });
  await start.waitFor(options);
  const deadline = Date.now() + (options.timeout || timeout);
  while (!(await start.isDisabled())) {
    if (Date.now() > deadline) throw new Error("Start Server stays enabled: not running");
    await page.waitForTimeout(250);
  }
}

// page.goto, again while the app's own client-side redirect (sign-out → /login → /setup)
// aborts it: Chromium reports the page's navigation superseding ours as net::ERR_ABORTED.
// (CI failed once that way.) Anything else, or past the step timeout, is a failure.
async function gotoAfterRedirects(page, href) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      await page.goto(href);
      return;
    } catch (err) {
      if (!String(err.message).includes("net::ERR_ABORTED") || Date.now() > deadline) throw err;
      console.error(`dashboard-browser: navigation to ${href} superseded at ${page.url()}; again`);
      await page.waitForLoadState("load").catch(() => {});
    }
  }
}

// Clicks until what the click should cause happens (`happened`, a promise made before the
// first click): a click that lands while the page is still hydrating or re-rendering does
// nothing (CI: "Sign out" once, "Restart Server" once, each left waiting 60 s). `fill`
// (re)types the form before each click, as hydration may reset what was typed before it.
// Up to `tries` clicks, `every` ms apart; resolves to what `happened` resolved to.
async function clickUntil(locator, happened, what, fill = async () => {}, tries = 5, every = 10000) {
  happened.catch(() => {});
  const nothing = Symbol("nothing");
  for (let click = 1; ; click++) {
    // A later click may find the form gone because the first one worked after all.
    const limit = click === 1 ? timeout : every;
    const later = (err) => { if (click === 1) throw err; };
    await fill(limit).catch(later);
    await locator.click({ timeout: limit }).catch(later);
    const result = await Promise.race([
      happened,
      new Promise((resolve) => setTimeout(() => resolve(nothing), every)),
    ]);
    if (result !== nothing) return result;
    if (click >= tries) throw new Error(`${what}: nothing happened after ${tries} clicks`);
    console.error(`dashboard-browser: ${what}: click ${click} did nothing in ${every} ms; again`);
  }
}

async function main() {
  if (!url || !screenshot) throw new Error("usage: node dashboard-browser.js URL SCREENSHOT.png");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "hyos-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || (await context.newPage());
  try {
    context.setDefaultTimeout(timeout);
    const failed = [];
    page.on("response", (r) => {
      if (r.url().includes("/api/") && r.status() >= 500) failed.push(`${r.status()} ${r.url()}`);
    });

    await page.goto(url);
    await page.waitForURL(/\/setup$/);
    step("setup page", { url: page.url() });
    // The setup and login forms: the same fields, setup's with a confirmation.
    const typeCredentials = (fields) => async (limit) => {
      for (const field of fields) {
        await page.fill(field, field === "#username" ? user : password, { timeout: limit });
      }
    };
    const toHome = () => page.waitForURL((u) => u.pathname === "/");
    await clickUntil(
      page.getByRole("button", { name: "Create account" }), toHome(), "Create account",
      typeCredentials(["#username", "#password", "#confirm-password"]),
    );
    step("admin created, signed in", { url: page.url() });

    // Sign out, then in again with the new account. The app's client cache still holds
    // the first visit's "needs setup" and sends the signed-out browser to /setup (HyOS's
    // quirk: a person reloads); load the login page afresh.
    await clickUntil(
      page.getByTitle("Sign out"), page.waitForURL(/\/(login|setup)/), "Sign out",
    );
    await gotoAfterRedirects(page, new URL("/login", url).href);
    await page.waitForURL(/\/login/);
    await clickUntil(
      page.getByRole("button", { name: "Sign in" }), toHome(), "Sign in",
      typeCredentials(["#username", "#password"]),
    );
    step("signed in");

    await seesRunning(page);
    step("server running");

    const restart = page.getByRole("button", { name: "Restart Server", exact: true });
    await restart.waitFor();
    // The request going out is what the click causes; its answer waits for the restart.
    // A request that failed on the way (CI once: no answer at all) is pressed again, once.
    let reply = null;
    for (let press = 1; reply === null; press++) {
      const request = await clickUntil(
        restart,
        page.waitForRequest((r) => r.url().endsWith("/api/server/restart") && r.method() === "POST"),
        "Restart Server",
      );
      reply = await request.response();
      if (reply === null) {
        const why = request.failure() ? request.failure().errorText : "no answer";
        if (press >= 2) throw new Error(`Restart Server: the request failed twice (${why})`);
        console.error(`dashboard-browser: Restart Server's request failed (${why}); again`);
      }
    }
    step("restart pressed", { status: reply.status(), body: await reply.text() });
    if (reply.status() !== 200) throw new Error(`restart answered ${reply.status()}`);

    // The dashboard polls its status every 15 s; reload to ask now once it is back.
    const deadline = Date.now() + timeout;
    for (;;) {
      await page.reload();
      try {
        await seesRunning(page, { timeout: 5000 });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
    step("server running again");
    await page.screenshot({ path: screenshot, fullPage: true });
    step("screenshot", { path: screenshot, failed_api_calls: failed });
  } catch (err) {
    // What the browser showed when it failed, beside the screenshot it would have kept.
    const shot = screenshot.replace(/\.png$/, "") + ".failed.png";
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    throw new Error(`${err.message}\n  at ${page.url()} (screenshot ${shot})`);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`dashboard-browser: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
