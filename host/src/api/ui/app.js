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

function loadObject() {
  return busy(async () => {
    const gen = ++loadGen;
    $("edit-error").textContent = "";
    $("edit-ok").textContent = "";
    if (!nameSel.value) { $("edit-yaml").value = "name: new-" + kindSel.value.replace(/s$/, "") + "\n"; return; }
    try {
      const yaml = await api("GET", "/config/" + kindSel.value + "/" + encodeURIComponent(nameSel.value) + "?format=yaml");
      if (gen === loadGen) $("edit-yaml").value = yaml;
    } catch (e) { if (gen === loadGen) $("edit-error").textContent = e.message; }
  });
}
kindSel.addEventListener("change", fillNames);
nameSel.addEventListener("change", loadObject);

async function change(method, path, body, done) {
  $("edit-error").textContent = "";
  $("edit-ok").textContent = "";
  try {
    await api(method, path, body, "application/yaml");
    $("edit-ok").textContent = done;
    $("config-yaml").textContent = await api("GET", "/config?format=yaml");
  } catch (e) {
    $("edit-error").textContent = e.message;
  }
}

$("edit").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = nameSel.value;
  if (!name) { $("edit-error").textContent = "no object selected: use Create as new"; return; }
  change("PUT", "/config/" + kindSel.value + "/" + encodeURIComponent(name), $("edit-yaml").value, "applied " + name);
});
$("edit-create").addEventListener("click", async () => {
  await change("POST", "/config/" + kindSel.value, $("edit-yaml").value, "created");
  if ($("edit-error").textContent) return;
  const yaml = $("edit-yaml").value;
  await fillNames();
  $("edit-yaml").value = yaml;
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
