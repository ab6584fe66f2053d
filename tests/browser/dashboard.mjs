// Browser tests of the dashboard, run by tests/tests/dashboard.rs against
// a gost it started: Debian's chromium, driven by playwright-core.
// Environment: UI (the dashboard's URL), API_USER, API_PASS, FWD_PORT (a
// forwarding service "fwd" with stats, to an echo server), ECHO (that
// server's address), NEW_PORT (a free port for a service the test adds),
// CHAINED_PORT (a service "chained" whose chain "c" has one node, "gone",
// that nothing listens for), MOVED_PORT (a free port the form moves "fwd"
// to), SHOTS (where screenshots go), CHROMIUM (the browser binary).
import { chromium } from "playwright-core";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";

const env = (k) => { const v = process.env[k]; if (!v) throw new Error("missing " + k); return v; };
const UI = env("UI"), USER = env("API_USER"), PASS = env("API_PASS");
const FWD = Number(env("FWD_PORT")), NEW = Number(env("NEW_PORT")), ECHO = env("ECHO");
const CHAINED = Number(env("CHAINED_PORT")), MOVED = Number(env("MOVED_PORT"));
const SHOTS = env("SHOTS");
fs.mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({ executablePath: env("CHROMIUM"), args: ["--no-sandbox"] });
let failed = 0;
async function test(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log("ok   " + name + " (" + (Date.now() - t0) + " ms)");
  } catch (e) {
    failed++;
    console.log("FAIL " + name + ": " + (e && e.stack || e));
  }
}

// A client of the fwd service that echoes; resolves once connected.
function client(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => resolve(s));
    s.on("error", reject);
  });
}
function echo(s, text) {
  return new Promise((resolve) => { s.once("data", (d) => resolve(String(d))); s.write(text); });
}
const closed = (s, ms) => new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error("connection not closed in " + ms + " ms")), ms);
  s.on("close", () => { clearTimeout(t); resolve(); });
});

const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASS }, viewport: { width: 1100, height: 800 } });
const page = await ctx.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("dialog", (d) => { errors.push("dialog: " + d.message()); d.dismiss(); });

await test("the API's auth is required", async () => {
  const anon = await browser.newContext();
  for (const route of ["", "app.js", "../stream", "../connections"]) {
    const r = await anon.request.get(UI + route);
    if (r.status() !== 401) throw new Error(route + ": status " + r.status());
  }
  // A browser without credentials gets the challenge, not the page.
  const p = await anon.newPage();
  let shown = "";
  try {
    const r = await p.goto(UI);
    if (r.status() !== 401) throw new Error("status " + r.status());
    shown = await p.content();
  } catch (e) {
    if (!String(e).includes("ERR_INVALID_AUTH_CREDENTIALS")) throw e;
  }
  if (shown.includes("Overview")) throw new Error("page shown without credentials");
  await anon.close();
});

// Reported, not a benchmark: the machine running the tests is shared.
// The bound is ten times the aim (300 ms) so only a real regression
// fails it.
await test("first paint on loopback, from the browser's Performance API", async () => {
  const fresh = await browser.newContext({ httpCredentials: { username: USER, password: PASS }, viewport: { width: 1100, height: 800 } });
  const p = await fresh.newPage();
  await p.goto(UI + "#overview");
  await p.locator('#services tr[data-service="fwd"]').waitFor({ timeout: 5000 });
  const shown = await p.evaluate(() => performance.now());
  const m = await p.evaluate(() => {
    const paint = Object.fromEntries(performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
    const nav = performance.getEntriesByType("navigation")[0];
    const files = performance.getEntriesByType("resource").filter((r) => /\/ui\/app\.(js|css)$/.test(r.name));
    return {
      fp: paint["first-paint"], fcp: paint["first-contentful-paint"], dcl: nav.domContentLoadedEventEnd,
      bytes: nav.transferSize + files.reduce((a, r) => a + r.transferSize, 0), files: files.length,
    };
  });
  await fresh.close();
  console.log("perf: first-paint " + Math.round(m.fp) + " ms, first-contentful-paint " + Math.round(m.fcp) +
    " ms, DOMContentLoaded " + Math.round(m.dcl) + " ms, services shown by " + Math.round(shown) +
    " ms, page and its " + m.files + " files " + m.bytes + " bytes transferred");
  if (!(m.fcp > 0) || m.files !== 2) throw new Error("no paint entry or files missing: " + JSON.stringify(m));
  if (m.fcp > 3000) throw new Error("first contentful paint after " + m.fcp + " ms");
});

await test("the overview shows the services and their counters move with traffic", async () => {
  await page.goto(UI + "#overview");
  const row = page.locator('#services tr[data-service="fwd"]');
  await row.waitFor({ timeout: 5000 });
  const state = await row.locator("td").first().textContent();
  if (!["running", "ready"].includes(state)) throw new Error("state " + state);
  await page.locator("#process dd").first().waitFor();
  const before = await row.locator('[data-field="conns"]').textContent();
  const s = await client(FWD);
  const big = "x".repeat(64 * 1024);
  for (let i = 0; i < 20; i++) { s.write(big); await new Promise((r) => setTimeout(r, 50)); }
  await page.waitForFunction(() => {
    const c = document.querySelector('#services tr[data-service="fwd"] [data-field="in"]');
    return c && /[KM]iB\/s/.test(c.textContent);
  }, null, { timeout: 5000 });
  const after = await row.locator('[data-field="conns"]').textContent();
  if (after === before) throw new Error("connections still " + after);
  if (await page.locator('#services tr[data-service="fwd"] svg.spark polyline').count() !== 2) throw new Error("no sparkline");
  s.destroy();
});

await test("a chain node that fails is shown dead until its failTimeout ends", async () => {
  await page.goto(UI + "#overview");
  const cell = page.locator('#health tr[data-node="chained/c/h/gone"] [data-field="health"]');
  await cell.waitFor({ timeout: 5000 });
  if (await cell.textContent() !== "ok") throw new Error("before any connection: " + await cell.textContent());
  const s = await client(CHAINED);
  await closed(s, 5000);
  await page.locator('#health tr[data-node="chained/c/h/gone"] [data-field="health"]', { hasText: "dead until" })
    .waitFor({ timeout: 5000 });
  const fails = await page.locator('#health tr[data-node="chained/c/h/gone"] [data-field="fails"]').textContent();
  if (Number(fails) < 1) throw new Error("failures " + fails);
  await page.screenshot({ path: path.join(SHOTS, "overview.png"), fullPage: true });
});

await test("names are shown as text, never run", async () => {
  await page.goto(UI + "#overview");
  await page.locator("#services th", { hasText: "<img src=x onerror=window.pwned=1>" }).waitFor({ timeout: 5000 });
  if (await page.evaluate(() => window.pwned)) throw new Error("markup in a name ran");
  if (await page.locator("#services img").count()) throw new Error("an img element was made");
});

await test("closing a connection from the page closes it", async () => {
  const s = await client(FWD);
  if (await echo(s, "hi") !== "hi") throw new Error("no echo");
  const mine = "127.0.0.1:" + s.localPort;
  await page.goto(UI + "#connections");
  const row = page.locator("#conns tbody tr", { hasText: mine });
  await row.waitFor({ timeout: 5000 });
  await page.fill("#conn-filter", String(s.localPort));
  if (await page.locator("#conns tbody tr").count() !== 1) throw new Error("filter shows other rows");
  await page.screenshot({ path: path.join(SHOTS, "connections.png"), fullPage: true });
  const gone = closed(s, 5000);
  await row.getByRole("button", { name: /close connection/ }).click();
  await gone;
  await row.waitFor({ state: "detached", timeout: 5000 });
  await page.fill("#conn-filter", "");
});

async function openEditor(kind, name) {
  await page.goto(UI + "#config");
  await page.selectOption("#edit-kind", kind);
  await page.waitForFunction((n) => [...document.querySelectorAll("#edit-name option")].some((o) => o.value === n), name);
  await page.selectOption("#edit-name", name);
  await page.waitForFunction((n) => !document.getElementById("edit").dataset.busy &&
    document.getElementById("edit-yaml").value.includes("name: " + n), name);
}

await test("an invalid edit shows the API's error next to the object and changes nothing", async () => {
  const before = await (await page.request.get(UI.replace(/ui\/$/, "") + "config/services/fwd")).json();
  await openEditor("services", "fwd");
  await page.check("#mode-yaml");
  await page.fill("#edit-yaml", "addr: [unclosed\n");
  await page.click("#edit-apply");
  await page.locator("#edit-error", { hasText: "invalid YAML" }).waitFor({ timeout: 5000 });
  await page.fill("#edit-yaml", "addr: {not: a string}\nhandler: {type: tcp}\n");
  await page.click("#edit-apply");
  await page.locator("#edit-error", { hasText: "invalid service: addr" }).waitFor({ timeout: 5000 });
  await page.screenshot({ path: path.join(SHOTS, "config-error.png"), fullPage: true });
  const after = await (await page.request.get(UI.replace(/ui\/$/, "") + "config/services/fwd")).json();
  if (JSON.stringify(after.data.addr) !== JSON.stringify(before.data.addr)) throw new Error("addr changed");
  const s = await client(FWD);
  if (await echo(s, "still") !== "still") throw new Error("fwd broken");
  s.destroy();
});

await test("a valid edit takes effect: a new service accepts connections", async () => {
  // The editor loads the selected object first; the new one replaces it.
  await openEditor("services", "fwd");
  await page.check("#mode-yaml");
  await page.fill("#edit-yaml", [
    "name: added", "addr: 127.0.0.1:" + NEW, "handler: {type: tcp}", "listener: {type: tcp}",
    "forwarder:", "  nodes: [{name: t, addr: '" + ECHO + "'}]", ""].join("\n"));
  await page.click("#edit-create");
  await page.waitForFunction(() => document.getElementById("edit-ok").textContent === "created" ||
    document.getElementById("edit-error").textContent, null, { timeout: 5000 });
  const err = await page.locator("#edit-error").textContent();
  if (err) throw new Error("refused: " + err);
  const s = await client(NEW);
  if (await echo(s, "new") !== "new") throw new Error("no echo through the new service");
  s.destroy();
});

await test("the form edits a service's address; a bad value shows the API's error next to its field", async () => {
  await openEditor("services", "fwd");
  await page.check("#mode-form");
  const addr = page.locator('#edit-fields [data-path="addr"] input');
  if (await addr.inputValue() !== "127.0.0.1:" + FWD) throw new Error("addr field shows " + await addr.inputValue());
  await addr.fill("127.0.0.1:abc");
  await page.click("#edit-apply");
  await page.locator('#edit-fields [data-path="addr"] .error', { hasText: "invalid port" }).waitFor({ timeout: 5000 });
  if (await addr.getAttribute("aria-invalid") !== "true") throw new Error("field not marked invalid");
  if (await page.locator("#edit-error").textContent()) throw new Error("error shown away from the field");
  await page.screenshot({ path: path.join(SHOTS, "config-form-error.png"), fullPage: true });
  await addr.fill("127.0.0.1:" + FWD);
  const type = page.locator('#edit-fields [data-path="handler.type"] input');
  await type.fill("nope");
  await page.click("#edit-apply");
  await page.locator('#edit-fields [data-path="handler.type"] .error', { hasText: "not supported" }).waitFor({ timeout: 5000 });
  const s = await client(FWD);
  if (await echo(s, "same") !== "same") throw new Error("fwd changed by a refused edit");
  s.destroy();
  await type.fill("tcp");
  await addr.fill("127.0.0.1:" + MOVED);
  await page.click("#edit-apply");
  await page.locator("#edit-ok", { hasText: "applied fwd" }).waitFor({ timeout: 5000 });
  const moved = await client(MOVED);
  if (await echo(moved, "moved") !== "moved") throw new Error("no echo on the new address");
  moved.destroy();
  // The form is loaded again from the running config.
  if (await addr.inputValue() !== "127.0.0.1:" + MOVED) throw new Error("form shows " + await addr.inputValue());
  const cfg = await (await page.request.get(UI.replace(/ui\/$/, "") + "config/services/fwd")).json();
  if (cfg.data.addr !== "127.0.0.1:" + MOVED || cfg.data.handler.type !== "tcp") throw new Error("config " + JSON.stringify(cfg.data));
});

await test("logs and plugins pages render, and the layout fits a phone", async () => {
  await page.goto(UI + "#logs");
  await page.locator("#log li").first().waitFor({ timeout: 5000 });
  await page.screenshot({ path: path.join(SHOTS, "logs.png"), fullPage: true });
  await page.goto(UI + "#plugins");
  await page.locator("#plugins tbody tr").first().waitFor({ timeout: 5000 });
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(UI + "#overview");
  await page.locator('#services tr[data-service="fwd"]').waitFor();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 400) throw new Error("page is " + wide + " px wide on a 390 px screen");
  await page.screenshot({ path: path.join(SHOTS, "phone.png"), fullPage: true });
  // Keyboard: on a fresh load the first Tab reaches the navigation, and
  // Enter on a link opens its page.
  await page.reload();
  await page.locator('#services tr[data-service="fwd"]').waitFor();
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  if (focused !== "nav-overview") throw new Error("first Tab focused " + focused);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.locator("#page-connections:not([hidden])").waitFor({ timeout: 2000 });
});

if (errors.length) { failed++; console.log("FAIL page errors: " + errors.join("; ")); }
await browser.close();
process.exit(failed ? 1 : 0);
