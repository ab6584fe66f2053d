// The gost-rs dashboard: one Server-Sent Events stream (`stream`) for
// live data, the web API's routes for everything else. Every name, host
// and log line is data: it is only ever set as text, never as markup.
"use strict";

const BASE = location.pathname.replace(/\/ui(\/.*)?$/, "");
const KINDS = ["services", "chains", "hops", "authers", "admissions", "bypasses", "resolvers",
  "hosts", "ingresses", "routers", "observers", "recorders", "limiters", "climiters", "rlimiters", "loggers"];
const HISTORY = 120; // samples (seconds) kept per service for sparklines
const MAX_LOG = 500;
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function age(s) {
  s = Math.floor(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  return Math.floor(s / 3600) + "h" + Math.floor(s % 3600 / 60) + "m";
}

async function api(method, path, body, type) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = type || "application/json";
    opts.body = body;
  }
  const r = await fetch(BASE + path, opts);
  const text = await r.text();
  let data = text;
  try { data = JSON.parse(text); } catch (_) { /* YAML or text */ }
  if (!r.ok) {
    const msg = data && data.msg ? data.msg : (text || r.statusText);
    throw new Error(msg);
  }
  return data;
}

// ---------------------------------------------------------------- state ---
const services = new Map();   // name -> service object (with status)
const history = new Map();    // name -> [{t, in, out, conns}]
const conns = new Map();      // id -> connection info
let connCount = 0;
let config = null;

// ---------------------------------------------------------------- pages ---
const PAGES = ["overview", "connections", "plugins", "config", "logs"];

function show() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "overview";
  for (const p of PAGES) {
    $("page-" + p).hidden = p !== page;
    const a = $("nav-" + p);
    if (p === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (page === "config") loadConfig();
  if (page === "plugins") refreshConfig();
}
window.addEventListener("hashchange", show);

// ------------------------------------------------------------- overview ---
function spark(points) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + HISTORY + " 28");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...points.map((p) => Math.max(p.in, p.out)));
  svg.setAttribute("aria-label", "bytes per second in and out, peak " + bytes(max) + "/s");
  for (const key of ["in", "out"]) {
    const pl = document.createElementNS(SVG, "polyline");
    const off = HISTORY - points.length;
    pl.setAttribute("points", points.map((p, i) => (off + i) + "," + (27 - 26 * p[key] / max).toFixed(1)).join(" "));
    pl.setAttribute("class", key);
    svg.append(pl);
  }
  return svg;
}

function sample(svc, time) {
  const st = svc.status && svc.status.stats;
  if (!st) return;
  const h = history.get(svc.name) || [];
  const last = h.length ? h[h.length - 1] : null;
  const p = { t: time, totalIn: st.inputBytes, totalOut: st.outputBytes, in: 0, out: 0 };
  if (last && time > last.t) {
    const dt = (time - last.t) / 1000;
    p.in = Math.max(0, (st.inputBytes - last.totalIn) / dt);
    p.out = Math.max(0, (st.outputBytes - last.totalOut) / dt);
  }
  h.push(p);
  while (h.length > HISTORY) h.shift();
  history.set(svc.name, h);
}

function renderServices() {
  const body = $("services").tBodies[0];
  body.replaceChildren();
  for (const svc of [...services.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const st = svc.status || {};
    const stats = st.stats;
    const h = history.get(svc.name) || [];
    const last = h.length ? h[h.length - 1] : null;
    const kind = (svc.handler && svc.handler.type || "") + " / " + (svc.listener && svc.listener.type || "tcp");
    body.append(el("tr", { "data-service": svc.name },
      el("th", { scope: "row" }, svc.name),
      el("td", { class: "nowrap state-" + (st.state || "") }, st.state || ""),
      el("td", { class: "nowrap" }, svc.addr || ""),
      el("td", {}, kind),
      el("td", { class: "num", "data-field": "conns" }, stats ? stats.currentConns + " / " + stats.totalConns : "stats off"),
      el("td", { class: "num", "data-field": "in" }, stats && last ? bytes(Math.round(last.in)) + "/s" : ""),
      el("td", { class: "num", "data-field": "out" }, stats && last ? bytes(Math.round(last.out)) + "/s" : ""),
      el("td", {}, stats ? spark(h) : "")));
  }
  const ev = $("events");
  ev.replaceChildren();
  for (const svc of services.values()) {
    const list = ((svc.status || {}).events || []).slice(-20).reverse();
    const ul = el("ul", {});
    for (const e of list) ul.append(el("li", {}, new Date(e.time * 1000).toLocaleTimeString() + " " + e.msg));
    ev.append(el("details", {}, el("summary", {}, svc.name + " (" + list.length + ")"), ul));
  }
}

function renderProcess(p) {
  const dl = $("process");
  dl.replaceChildren();
  const fact = (k, v) => dl.append(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
  fact("Version", p.version);
  fact("Uptime", age(p.uptime));
  fact("Memory (RSS)", p.rssBytes ? bytes(p.rssBytes) : "n/a");
  fact("Connections", p.connections);
  fact("PID", p.pid);
}

// Node health from the stream's `health` events: one row per node of
// each service's chains and forwarder, and one per chain of a group.
let health = [];
function until(ms) { return new Date(ms).toLocaleTimeString(); }
function healthCell(x) {
  if (x.failed) return el("td", { class: "bad", "data-field": "health" }, "dead until " + until(x.deadUntil));
  return el("td", { class: "good", "data-field": "health" }, "ok");
}
function renderChains() {
  const box = $("chains");
  box.replaceChildren();
  if (!health.length) { box.append(el("p", {}, "No chains or forwarders.")); return; }
  const head = el("tr", {}, ...["Service", "Chain", "Hop", "Node", "Address", "Failures", "Health", "Probe"].map((h) => el("th", {}, h)));
  const tb = el("tbody", {});
  // `key` names the row for scripts: service/chain/hop/node.
  const row = (key, chain, hop, x, addr, probe) => {
    const last = x.lastFailure ? "last failure " + until(x.lastFailure) : "never failed";
    tb.append(el("tr", { "data-node": key.join("/") },
      el("td", {}, key[0]), el("td", {}, chain), el("td", {}, hop), el("td", {}, x.name), el("td", {}, addr),
      el("td", { class: "num", "data-field": "fails", title: last }, x.fails), healthCell(x), el("td", {}, probe)));
  };
  const hops = (item, chain, list) => {
    for (const h of list) {
      for (const n of h.nodes) {
        row([item.service, chain, h.name, n.name], chain, h.name + " (" + h.strategy + ")", n, n.addr + (n.backup ? " backup" : ""), "");
      }
    }
  };
  for (const item of health) {
    if (item.hops) hops(item, "forwarder", item.hops);
    for (const c of item.chains || []) {
      if (item.group) {
        const p = c.probe;
        const probe = !p ? "" : !p.time ? p.type + " " + p.addr + ": not yet" :
          p.type + " " + p.addr + ": " + (p.ok ? "ok in " + p.latencyMs + " ms" : "failed: " + p.error) + " at " + until(p.time);
        const r = { name: "(chain)", fails: c.fails, failed: c.failed, deadUntil: c.deadUntil, lastFailure: c.lastFailure };
        row([item.service, c.name, "", ""], c.name + " (group " + item.group.strategy + ")", "", r, "", probe);
      }
      hops(item, c.name, c.hops);
    }
  }
  box.append(el("div", { class: "scroll" }, el("table", { id: "health" }, el("thead", {}, head), tb)));
}

async function refreshConfig() {
  try { config = await api("GET", "/config"); } catch (e) { return; }
  renderPlugins();
}

// ---------------------------------------------------------- connections ---
function renderConns() {
  const f = $("conn-filter").value.trim().toLowerCase();
  const body = $("conns").tBodies[0];
  body.replaceChildren();
  let shown = 0;
  for (const c of [...conns.values()].sort((a, b) => a.id - b.id)) {
    const text = [c.id, c.service, c.client, c.user, c.target, (c.nodes || []).join(" ")].join(" ").toLowerCase();
    if (f && !text.includes(f)) continue;
    shown++;
    const close = el("button", { class: "danger", "aria-label": "close connection " + c.id, onclick: () => closeConn(c.id) }, "Close");
    body.append(el("tr", { "data-id": c.id },
      el("td", { class: "num" }, c.id), el("td", {}, c.service), el("td", {}, c.client),
      el("td", {}, c.user || ""), el("td", {}, c.target || ""),
      el("td", {}, (c.chain ? c.chain + ": " : "") + (c.nodes || []).join(" > ")),
      el("td", { class: "num" }, bytes(c.inputBytes)), el("td", { class: "num" }, bytes(c.outputBytes)),
      el("td", { class: "num" }, age((Date.now() - c.since) / 1000)), el("td", {}, close)));
  }
  $("conn-count").textContent = "(" + shown + (connCount > conns.size ? " of " + connCount + " listed" : "") + ")";
}
$("conn-filter").addEventListener("input", renderConns);

async function closeConn(id) {
  $("conn-error").textContent = "";
  try {
    await api("DELETE", "/connections/" + id);
    conns.delete(id);
    renderConns();
  } catch (e) {
    $("conn-error").textContent = "close " + id + ": " + e.message;
  }
}

// -------------------------------------------------------------- plugins ---
function renderPlugins() {
  const body = $("plugins").tBodies[0];
  body.replaceChildren();
  if (!config) return;
  const found = [];
  const walk = (v, path) => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, path + (x && x.name ? "/" + x.name : "[" + i + "]")));
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        if (k === "plugin" && x && typeof x === "object") found.push({ path, p: x });
        else walk(x, path + "." + k);
      }
    }
  };
  for (const [section, list] of Object.entries(config)) if (Array.isArray(list)) walk(list, section);
  for (const { path, p } of found) {
    const users = (config.services || []).filter((s) => JSON.stringify(s).includes('"' + path.split("/")[1] + '"') && !path.startsWith("services")).map((s) => s.name);
    body.append(el("tr", {}, el("td", {}, path), el("td", {}, p.type || "grpc"),
      el("td", {}, p.path || p.addr || ""), el("td", {}, path.startsWith("services") ? path.split("/")[1].split(".")[0] : users.join(", "))));
  }
  if (!found.length) body.append(el("tr", {}, el("td", { colspan: 4 }, "No object uses a plugin.")));
}

// ------------------------------------------------------------ configuration ---
async function loadConfig() {
  try {
    $("config-yaml").textContent = await api("GET", "/config?format=yaml");
  } catch (e) {
    $("config-yaml").textContent = e.message;
  }
  await fillNames();
}

const kindSel = $("edit-kind"), nameSel = $("edit-name");
for (const k of KINDS) kindSel.append(el("option", { value: k }, k));

// Loads overlap (a page switch and a selection); only the latest may
// fill the editor, and the form says when none is pending.
let loadGen = 0, loading = 0;
async function busy(fn) {
  loading++;
  $("edit").dataset.busy = "1";
  try { return await fn(); } finally {
    if (--loading === 0) delete $("edit").dataset.busy;
  }
}

function fillNames() {
  return busy(async () => {
    const gen = ++loadGen;
    const kind = kindSel.value;
    const keep = nameSel.value;
    let list = [];
    try { list = (await api("GET", "/config/" + kind)).data.list; } catch (_) { /* empty */ }
    if (gen !== loadGen) return;
    nameSel.replaceChildren(...list.map((o) => el("option", { value: o.name }, o.name)));
    if (list.some((o) => o.name === keep)) nameSel.value = keep;
    await loadObject();
  });
}

// ---------------------------------------------------------------- form ---
// The form shows every field the object sets (nested blocks and list
// entries flattened to dotted paths) and a few common ones it does not;
// Apply writes back only the fields changed, over the object as loaded,
// through the same routes and checks as the YAML editor.
const HINTS = {
  services: ["addr", "handler.type", "handler.chain", "handler.auther", "listener.type", "bypass", "admission", "limiter", "climiter", "rlimiter", "resolver", "hosts", "observer"],
  chains: [],
  hops: ["selector.strategy", "selector.maxFails:number", "selector.failTimeout", "bypass"],
  bypasses: ["whitelist:bool", "matchers:list"],
  admissions: ["whitelist:bool", "matchers:list"],
  limiters: ["limits:list"], climiters: ["limits:list"], rlimiters: ["limits:list"],
};
const SECRET = /^(password|token|passphrase)$/;
let loaded = null;   // the object as loaded (JSON), the form's base
let fields = [];     // {path, type, value, input, error}

function typeOf(v) {
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return "number";
  if (Array.isArray(v)) return "list";
  return "string";
}

function flatten(v, path, out) {
  const scalars = (a) => a.every((x) => x === null || typeof x !== "object");
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) if (!(path.length === 0 && k === "status")) flatten(x, path.concat(k), out);
  } else if (Array.isArray(v) && !scalars(v)) {
    v.forEach((x, i) => flatten(x, path.concat(i), out));
  } else if (v !== null) {
    out.push({ path, type: typeOf(v), value: v });
  }
  return out;
}

function buildForm(obj) {
  loaded = obj;
  const list = flatten(obj, [], []);
  const have = new Set(list.map((f) => f.path.join(".")));
  for (const h of ["name"].concat(HINTS[kindSel.value] || [])) {
    const [p, type] = h.split(":");
    if (!have.has(p)) list.push({ path: p.split("."), type: type || "string", value: undefined });
  }
  list.sort((a, b) => (b.path.join(".") === "name") - (a.path.join(".") === "name"));
  const box = $("edit-fields");
  box.replaceChildren();
  fields = list.map((f, i) => {
    const id = "f-" + i, key = f.path.join(".");
    let input;
    if (f.type === "bool") {
      input = el("input", { type: "checkbox", id });
      input.checked = f.value === true;
    } else if (f.type === "list") {
      input = el("textarea", { id, rows: Math.min(6, Math.max(2, (f.value || []).length + 1)), spellcheck: "false" });
      input.value = (f.value || []).join("\n");
    } else {
      const secret = SECRET.test(String(f.path[f.path.length - 1]));
      input = el("input", { id, type: secret ? "password" : "text", spellcheck: "false", inputmode: f.type === "number" ? "decimal" : "text" });
      input.value = f.value === undefined ? "" : String(f.value);
    }
    const error = el("p", { id: id + "-error", class: "error", role: "alert" });
    input.setAttribute("aria-describedby", id + "-error");
    const label = el("label", { for: id }, key.replace(/\.(\d+)(?=\.|$)/g, "[$1]") + (f.type === "list" ? " (one per line)" : ""));
    box.append(el("div", { class: "field " + f.type, "data-path": key }, label, input, error));
    return Object.assign(f, { input, error });
  });
}

// The input's value as the config takes it; `undefined` removes the key.
function formValue(f) {
  if (f.type === "bool") return f.input.checked;
  if (f.type === "list") {
    const items = f.input.value.split("\n").map((x) => x.trim()).filter((x) => x);
    return items.length || f.value !== undefined ? items : undefined;
  }
  const text = f.input.value.trim();
  if (text === "") return undefined;
  // A number field keeps what was typed when it is not a number: the
  // API names the field in its error.
  if (f.type === "number" && text !== "" && !isNaN(Number(text))) return Number(text);
  return text;
}

function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

function fromForm() {
  const obj = JSON.parse(JSON.stringify(loaded || {}));
  delete obj.status;
  for (const f of fields) {
    const v = formValue(f);
    const was = f.type === "bool" ? f.value === true : f.value;
    if (same(v, was)) continue;
    let o = obj;
    for (const k of f.path.slice(0, -1)) {
      if (o[k] === null || typeof o[k] !== "object") o[k] = {};
      o = o[k];
    }
    const last = f.path[f.path.length - 1];
    if (v === undefined) delete o[last]; else o[last] = v;
  }
  return JSON.stringify(obj);
}

// The field an API error names: its dotted path ("handler.retries"), the
// path in words ("handler type"), or its last key ("addr"), the longest
// found winning. `null` when none is named.
function fieldOf(msg) {
  let best = null, score = 0;
  const has = (w) => new RegExp("(^|[^\\w.])" + w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "($|[^\\w])").test(msg);
  for (const f of fields) {
    const dotted = f.path.join("."), words = f.path.join(" "), last = String(f.path[f.path.length - 1]);
    for (const [w, s] of [[dotted, 2 * dotted.length + 1], [words, 2 * words.length + 1], [last, last.length]]) {
      if (s > score && isNaN(Number(w)) && has(w)) { best = f; score = s; }
    }
  }
  return best;
}

function clearErrors() {
  $("edit-error").textContent = "";
  $("edit-ok").textContent = "";
  for (const f of fields) { f.error.textContent = ""; f.input.removeAttribute("aria-invalid"); }
}

function showError(msg) {
  const f = formMode() ? fieldOf(msg) : null;
  if (!f) { $("edit-error").textContent = msg; return; }
  f.error.textContent = msg;
  f.input.setAttribute("aria-invalid", "true");
  f.input.focus();
}

function formMode() { return $("mode-form").checked; }
function showMode() {
  $("edit-fields").hidden = !formMode();
  $("edit-yaml-box").hidden = formMode();
}
for (const m of ["mode-form", "mode-yaml"]) $(m).addEventListener("change", showMode);
showMode();

function loadObject() {
  return busy(async () => {
    const gen = ++loadGen;
    clearErrors();
    if (!nameSel.value) {
      const name = "new-" + kindSel.value.replace(/s$/, "");
      $("edit-yaml").value = "name: " + name + "\n";
      buildForm({ name });
      return;
    }
    const path = "/config/" + kindSel.value + "/" + encodeURIComponent(nameSel.value);
    try {
      const [obj, yaml] = await Promise.all([api("GET", path), api("GET", path + "?format=yaml")]);
      if (gen !== loadGen) return;
      $("edit-yaml").value = yaml;
      buildForm(obj.data);
    } catch (e) { if (gen === loadGen) $("edit-error").textContent = e.message; }
  });
}
kindSel.addEventListener("change", fillNames);
nameSel.addEventListener("change", loadObject);

// The body of an apply or create, from the form or the YAML editor.
function edited() {
  return formMode() ? [fromForm(), "application/json"] : [$("edit-yaml").value, "application/yaml"];
}

async function change(method, path, body, done) {
  clearErrors();
  try {
    await api(method, path, body && body[0], body && body[1]);
    $("edit-ok").textContent = done;
    $("config-yaml").textContent = await api("GET", "/config?format=yaml");
    return true;
  } catch (e) {
    showError(e.message);
    return false;
  }
}

$("edit").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = nameSel.value;
  if (!name) { $("edit-error").textContent = "no object selected: use Create as new"; return; }
  if (await change("PUT", "/config/" + kindSel.value + "/" + encodeURIComponent(name), edited(), "applied " + name)) {
    await loadObject();
    $("edit-ok").textContent = "applied " + name;
  }
});
$("edit-create").addEventListener("click", async () => {
  const body = edited();
  if (!await change("POST", "/config/" + kindSel.value, body, "created")) return;
  const yaml = $("edit-yaml").value;
  await fillNames();
  if (!formMode()) $("edit-yaml").value = yaml;
  $("edit-ok").textContent = "created";
});
$("edit-delete").addEventListener("click", async () => {
  const name = nameSel.value;
  if (!name || !confirm("Delete " + kindSel.value + " " + name + "?")) return;
  await change("DELETE", "/config/" + kindSel.value + "/" + encodeURIComponent(name), undefined, "deleted " + name);
  await fillNames();
});
$("save").addEventListener("click", () => change("POST", "/config", undefined, "saved"));

// ----------------------------------------------------------------- logs ---
let paused = false;
function addLog(l) {
  if (paused) return;
  const ol = $("log");
  const fields = Object.entries(l.fields || {}).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
  ol.append(el("li", { class: l.level }, l.time + " " + l.level.toUpperCase() + " " + l.msg + (fields ? " " + fields : "")));
  while (ol.children.length > MAX_LOG) ol.firstChild.remove();
  ol.scrollTop = ol.scrollHeight;
}
$("log-pause").addEventListener("click", (e) => {
  paused = !paused;
  e.target.setAttribute("aria-pressed", String(paused));
  e.target.textContent = paused ? "Resume" : "Pause";
});
$("log-clear").addEventListener("click", () => $("log").replaceChildren());
$("log-level").addEventListener("change", connect);
$("log-service").addEventListener("change", connect);

// --------------------------------------------------------------- stream ---
let source = null;
function connect() {
  if (source) source.close();
  const q = new URLSearchParams({ level: $("log-level").value });
  const svc = $("log-service").value.trim();
  // The service filter is the log page's: services and connections come
  // unfiltered on a second stream when it is set.
  if (svc) q.set("topics", "logs"), q.set("service", svc);
  source = new EventSource(BASE + "/stream?" + q);
  if (svc) openData(); else closeData();
  wire(source, !svc);
}

let data = null;
function openData() {
  if (data) return;
  data = new EventSource(BASE + "/stream?topics=services,connections,health,process");
  wire(data, true);
}
function closeData() { if (data) { data.close(); data = null; } }

function wire(s, all) {
  s.addEventListener("open", () => { $("link").textContent = "live"; $("link").className = ""; });
  s.addEventListener("error", () => { $("link").textContent = "disconnected, retrying…"; $("link").className = "down"; });
  s.addEventListener("log", (e) => addLog(JSON.parse(e.data)));
  s.addEventListener("dropped", (e) => {
    const d = JSON.parse(e.data);
    $("log-dropped").textContent = d.count + " log lines dropped: this page read too slowly";
  });
  if (!all) return;
  s.addEventListener("hello", () => { services.clear(); conns.clear(); });
  s.addEventListener("services", (e) => {
    const d = JSON.parse(e.data);
    for (const svc of d.changed) services.set(svc.name, svc);
    for (const n of d.removed) { services.delete(n); history.delete(n); }
    renderServices();
  });
  s.addEventListener("health", (e) => {
    health = JSON.parse(e.data).list;
    renderChains();
  });
  s.addEventListener("connections", (e) => {
    const d = JSON.parse(e.data);
    for (const c of d.opened) conns.set(c.id, c);
    for (const u of d.updated) { const c = conns.get(u.id); if (c) Object.assign(c, u); }
    for (const id of d.closed) conns.delete(id);
    connCount = d.count;
    if (!$("page-connections").hidden) renderConns();
  });
  // Sent every second, after that second's changes: the clock of the
  // rates and sparklines.
  s.addEventListener("process", (e) => {
    const p = JSON.parse(e.data);
    renderProcess(p);
    for (const svc of services.values()) sample(svc, p.time);
    renderServices();
    if (!$("page-connections").hidden) renderConns();
  });
}

show();
connect();
