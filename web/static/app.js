// modelops dashboard: plain JavaScript, no build step, no third-party code.
// Every value from the API goes into the page as text (never as HTML).
"use strict";

// canaryForm keeps, per model, what was chosen in the canary controls, so the
// page's refresh every few seconds does not undo it.
const state = { who: null, csrf: "", models: [], source: null, since: 0, timer: null, canaryForm: {} };

// h builds an element: h("td", {class: "num"}, "3").
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

async function api(path, opts = {}) {
  const headers = { "Accept": "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method && opts.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const resp = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? (data.error.message || data.error) : resp.statusText;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// loadFailed: the banner says a page could not load, and goes once one does.
let loadFailed = false;

function alertBox(msg, ok) {
  const el = document.getElementById("alert");
  loadFailed = false;
  if (!msg) { el.hidden = true; return; }
  el.textContent = msg;
  el.className = ok ? "alert ok" : "alert";
  el.hidden = false;
}

const canAct = () => state.who && state.who.role === "admin";
const pct = (v) => (100 * (v || 0)).toFixed(2) + "%";
const ms = (v) => (v || 0) + " ms";
const short = (d) => (d || "").slice(0, 12);
const when = (t) => (t ? new Date(t).toLocaleString() : "-");
const vname = (n) => (n ? "v" + n : "-");

function badge(status, text) {
  return h("span", { class: "badge " + (status || "grey") }, text || status || "n/a");
}

// ---- sign-in ----

async function loadSession() {
  try {
    const who = await api("/ui/session");
    state.who = who;
    state.csrf = who.csrf || "";
  } catch (e) {
    state.who = null;
  }
  renderWho();
}

function renderWho() {
  const who = document.getElementById("who");
  const form = document.getElementById("signin");
  who.replaceChildren();
  if (state.who && state.who.no_auth) {
    form.hidden = true;
    who.append(h("span", { id: "no-auth", class: "warn" }, "No sign-in: anyone who reaches this control plane is an admin (--insecure-no-auth)"));
  } else if (state.who) {
    form.hidden = true;
    who.append(h("span", {}, "Signed in as ", h("strong", {}, state.who.name), " (" + state.who.role + ")"));
    who.append(h("button", { type: "button", id: "signout", onclick: signOut }, "Sign out"));
  } else {
    form.hidden = false;
    who.append(h("span", {}, "Not signed in"));
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const input = document.getElementById("token");
  try {
    const who = await api("/ui/login", { method: "POST", body: { token: input.value } });
    input.value = "";
    state.who = who;
    state.csrf = who.csrf;
    renderWho();
    alertBox("");
    startLive();
    route();
  } catch (e) {
    alertBox("Sign-in failed: " + e.message);
  }
}

async function signOut() {
  try { await api("/ui/logout", { method: "POST" }); } catch (e) { /* signed out anyway */ }
  state.who = null;
  state.csrf = "";
  stopLive();
  renderWho();
  route();
}

// ---- confirmation ----

function confirmAction(text) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

// act asks before an action, then says what it did (done) or why it was refused.
async function act(ask, done, path, body, method) {
  if (!(await confirmAction(ask))) return;
  try {
    await api(path, { method: method || "POST", body });
    alertBox("Done: " + done, true);
  } catch (e) {
    alertBox("Refused: " + e.message);
  }
  route();
}

// ---- pages ----

function setMain(title, ...children) {
  const main = document.getElementById("main");
  main.replaceChildren(h("h1", {}, title), ...children);
  document.title = title + " · modelops";
}

function signInPrompt() {
  setMain("Sign in", h("section", { class: "empty" }, "Sign in with a token to see models, versions and the fleet. ",
    "Make one with ", h("code", {}, "modelctl token create --name me --role viewer"), "."));
}

async function overview() {
  const { models } = await api("/api/v1/models");
  state.models = models;
  if (models.length === 0) {
    setMain("Models", h("section", { class: "empty", id: "empty" },
      h("p", {}, "No models yet."),
      h("p", {}, "Push one: ", h("code", {}, "modelctl push model.onnx --model calling-score"),
        " then ", h("code", {}, "modelctl promote calling-score 1"))));
    return;
  }
  const [healths, fleet] = await Promise.all([
    Promise.all(models.map((m) => api("/api/v1/models/" + encodeURIComponent(m.name) + "/health").catch(() => null))),
    api("/api/v1/fleet").catch(() => ({ nodes: [] })),
  ]);
  // Nodes that cannot load a model's deployment, by model: the overview warns of them.
  const unserved = {};
  for (const n of fleet.nodes || []) for (const m of Object.keys(n.load_errors || {})) unserved[m] = (unserved[m] || 0) + 1;
  const rows = models.map((m, i) => {
    const hl = healths[i];
    const arm = hl && hl.arms.find((a) => a.version === m.production && a.arm === "champion");
    const drift = !arm ? badge("grey", "no traffic")
      : arm.drift === "too_few_rows" ? badge("grey", `too few rows (${arm.drift_rows} of ${arm.drift_min_rows})`)
      : arm.drift ? badge(arm.drift, arm.drift + " " + Math.max(arm.max_feature_psi, arm.prediction_psi).toFixed(3))
      : badge("grey", "no reference");
    const canary = m.candidate ? `v${m.candidate.version} ${m.candidate.mode} ${m.candidate.traffic}%` : "-";
    return h("tr", { "data-model": m.name },
      h("td", {}, h("a", { href: "#/model/" + encodeURIComponent(m.name) }, m.name)),
      h("td", {}, vname(m.production), unserved[m.name] ? h("span", { class: "unserved" }, " ", h("a", { href: "#/fleet" },
        badge("red", `${unserved[m.name]} node${unserved[m.name] > 1 ? "s" : ""} cannot load its deployment`))) : null),
      h("td", {}, canary),
      h("td", { class: "num" }, arm ? arm.request_rate.toFixed(1) : "-"),
      h("td", { class: "num" }, arm ? pct(arm.error_rate) : "-"),
      h("td", { class: "num" }, arm ? pct(arm.fallback_rate) : "-"),
      h("td", { class: "num" }, arm ? ms(arm.p99_ms) : "-"),
      h("td", {}, drift));
  });
  setMain("Models", h("section", {}, h("table", { id: "models" },
    h("caption", { class: "muted" }, "Production over the monitor window; drift is the largest PSI of features and prediction."),
    h("thead", {}, h("tr", {}, ["Model", "Production", "Canary", "Req/s", "Errors", "Fallbacks", "p99", "Drift"].map((t, i) =>
      h("th", { scope: "col", class: i >= 3 && i <= 6 ? "num" : null }, t)))),
    h("tbody", {}, rows))));
}

function chart(title, series, field, scale) {
  const colors = ["#0b5cad", "#cf222e", "#1a7f37", "#9a6700", "#8250df"];
  const W = 300, H = 110;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const names = Object.keys(series);
  let max = 0;
  for (const n of names) for (const p of series[n]) max = Math.max(max, p[field] * scale);
  const top = max; // what the legend says; an all-zero chart still needs a scale
  if (max === 0) max = 1;
  names.forEach((n, i) => {
    const pts = series[n];
    if (pts.length < 2) return;
    const d = pts.map((p, j) => `${(j / (pts.length - 1)) * (W - 4) + 2},${H - 4 - (p[field] * scale / max) * (H - 8)}`).join(" ");
    svg.append(s("polyline", { points: d, fill: "none", stroke: colors[i % colors.length], "stroke-width": 1.6 }));
  });
  const legend = h("div", { class: "legend" }, names.map((n, i) => {
    const sw = h("span", { class: "sw" });
    sw.style.background = colors[i % colors.length];
    return h("span", {}, sw, n);
  }), h("span", {}, "max " + (Math.round(top * 1000) / 1000)));
  return h("div", { class: "chart" }, h("h3", {}, title), svg, legend);
}

// heatmap charts the production version's champion series (any version's when
// production has none yet; never the rules' answers before a model).
function heatmap(series, features, production) {
  const name = series[`v${production}/champion`] ? `v${production}/champion`
    : Object.keys(series).find((k) => k.startsWith("v") && k.endsWith("/champion"));
  if (!name || !features || features.length === 0) return h("p", { class: "muted" }, "No drift data yet.");
  const pts = series[name];
  const grid = h("div", { class: "heat", role: "img", "aria-label": "PSI per feature over time for " + name });
  grid.style.gridTemplateColumns = `10rem repeat(${pts.length}, 1fr)`;
  for (const f of features) {
    grid.append(h("span", { class: "muted" }, f));
    for (const p of pts) {
      const v = (p.feature_psi && p.feature_psi[f]) || 0;
      // A PSI over a handful of rows is noise: shown, but not coloured as drift.
      const few = p.drift === "too_few_rows";
      const cell = h("span", { class: few ? "cell few" : "cell",
        title: few ? `${f}: PSI ${v.toFixed(3)} over too few rows (${p.drift_rows} of ${p.drift_min_rows})` : `${f}: PSI ${v.toFixed(3)}` });
      cell.style.background = few ? "#d0d7de" : v >= 0.25 ? "#cf222e" : v >= 0.1 ? "#d4a72c" : v > 0 ? "#4ac26b" : "#e7eaf0";
      grid.append(cell);
    }
  }
  return h("div", {}, h("p", { class: "legend" }, name + ": green < 0.1 ≤ amber < 0.25 ≤ red; grey: too few rows to grade"), grid);
}

// The model page shows this many of the model's latest events, and of its latest
// versions (production and the canary always among them).
const TIMELINE_EVENTS = 200;
const SHOWN_VERSIONS = 20;

// Versions are immutable, and so are their cards: each is fetched once, not on
// every refresh (a card with its reference histograms is tens of kilobytes).
const cardCache = new Map();
function cardOf(enc, version) {
  const key = enc + "/" + version;
  if (!cardCache.has(key)) {
    cardCache.set(key, api(`/api/v1/models/${enc}/versions/${version}`).then((x) => x.card)
      .catch((e) => { cardCache.delete(key); return null; }));
  }
  return cardCache.get(key);
}

async function modelPage(name) {
  const enc = encodeURIComponent(name);
  const [m, health, series, events] = await Promise.all([
    api("/api/v1/models/" + enc),
    api("/api/v1/models/" + enc + "/health").catch(() => ({ arms: [] })),
    api("/api/v1/models/" + enc + "/series?span=15m&step=30s").catch(() => ({ series: {} })),
    api("/api/v1/events?model=" + enc + "&last=" + TIMELINE_EVENTS),
  ]);
  const wanted = new Set([m.production, m.candidate && m.candidate.version]);
  const recent = m.versions.filter((v, i) => i >= m.versions.length - SHOWN_VERSIONS || wanted.has(v.version));
  const cards = await Promise.all(recent.map((v) => cardOf(enc, v.version)));
  const rejected = m.rejected || {};
  const admin = canAct();
  const off = admin ? null : true;

  const versionRows = recent.slice().reverse().map((v) => {
    const card = cards[recent.indexOf(v)] || {};
    const metrics = card.metrics || {};
    const mm = metrics.test_model, fm = metrics.test_fallback;
    let status = "active", cls = "grey";
    if (v.version === m.production) { status = "production"; cls = "green"; }
    else if (m.candidate && v.version === m.candidate.version) { status = "candidate"; cls = "amber"; }
    else if (rejected[v.version] !== undefined) { status = "rejected"; cls = "red"; }
    return h("tr", { "data-version": v.version },
      h("td", {}, "v" + v.version),
      h("td", {}, h("code", { title: v.digest }, short(v.digest))),
      h("td", {}, when(v.created_at)),
      h("td", {}, v.actor),
      h("td", { class: "num" }, mm ? mm.mse.toFixed(5) : "-"),
      h("td", { class: "num" }, fm ? fm.mse.toFixed(5) : "-"),
      h("td", {}, badge(cls, status), rejected[v.version] ? h("span", { class: "muted", title: rejected[v.version] }, " why?") : null),
      h("td", {}, h("button", { type: "button", class: "promote", "data-version": v.version, disabled: off || v.version === m.production || null,
        // Promoting a rejected version overrides the monitor: the confirmation says so, and why it was rejected.
        onclick: () => act(`Promote ${name} v${v.version} to production (now ${vname(m.production)}). Every scorer will serve it within a second.` +
          (rejected[v.version] !== undefined ? ` The monitor rejected v${v.version} (${rejected[v.version]}); promoting it overrides that.` : ""),
          `${name} v${v.version} is in production (was ${vname(m.production)}); every scorer serves it within a second.`,
          `/api/v1/models/${enc}/promote`, { version: v.version, expect_revision: m.revision, force: rejected[v.version] !== undefined }) }, "Promote")));
  });

  const kept = state.canaryForm[name] || {};
  const keep = () => { state.canaryForm[name] = { version: canaryVersion.value, traffic: canaryTraffic.value, mode: canaryMode.value }; };
  // Where a rollback goes, as the control plane picks it: the latest earlier
  // production version that is not the current one and was not rejected.
  const rollbackTo = (m.previous || []).slice().reverse().find((v) => v !== m.production && rejected[v] === undefined);
  // A version the monitor rejected cannot be a canary again: it is not offered.
  const canaryVersion = h("select", { id: "canary-version", disabled: off, onchange: keep }, m.versions.filter((v) => v.version !== m.production && !rejected[v.version]).reverse()
    .map((v) => h("option", { value: v.version, selected: String(v.version) === kept.version }, "v" + v.version)));
  const canaryTraffic = h("input", { id: "canary-traffic", type: "number", min: 1, max: 100, value: kept.traffic || 10, disabled: off, oninput: keep });
  const canaryMode = h("select", { id: "canary-mode", disabled: off, onchange: keep }, h("option", { value: "ab" }, "A/B"),
    h("option", { value: "shadow", selected: kept.mode === "shadow" }, "shadow"));
  const controls = h("div", { class: "controls" },
    h("label", {}, "Canary version", canaryVersion),
    h("label", {}, "Traffic %", canaryTraffic),
    h("label", {}, "Mode", canaryMode),
    h("button", { type: "button", id: "set-canary", disabled: off || canaryVersion.options.length === 0 || null, onclick: () => {
      const v = Number(canaryVersion.value), t = Number(canaryTraffic.value), mode = canaryMode.value;
      act(`Send ${t}% of ${name}'s traffic to v${v} in ${mode} mode` + (m.candidate ? ` (replacing the canary v${m.candidate.version})` : "") + ".",
        `${t}% of ${name}'s traffic goes to v${v} in ${mode} mode.`,
        `/api/v1/models/${enc}/canary`, { version: v, traffic: t, mode, expect_revision: m.revision });
    } }, "Set canary"),
    h("button", { type: "button", id: "clear-canary", disabled: off || !m.candidate || null,
      onclick: () => act(`Clear ${name}'s canary v${m.candidate.version}; all traffic goes to ${vname(m.production)}.`,
        `${name}'s canary v${m.candidate.version} is cleared; all traffic goes to ${vname(m.production)}.`,
        `/api/v1/models/${enc}/canary?expect_revision=${m.revision}`, undefined, "DELETE") }, "Clear canary"),
    h("button", { type: "button", id: "rollback", class: "danger", disabled: off || !rollbackTo || null,
      onclick: () => act(`Roll ${name} back from ${vname(m.production)} to v${rollbackTo}, the previous good production version.`,
        `${name} is rolled back from ${vname(m.production)} to v${rollbackTo}.`,
        `/api/v1/models/${enc}/rollback`, { expect_revision: m.revision }) }, "Roll back"),
    admin ? null : h("span", { class: "muted", id: "viewer-note" }, "Only admins can act; you are signed in as " + (state.who ? state.who.role : "nobody") + "."));

  const arms = health.arms || [];
  const outcomes = h("table", { id: "outcomes" },
    h("thead", {}, h("tr", {}, ["Version", "Arm", "Requests", "Outcomes", "MSE", "MAE"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, arms.length ? arms.map((a) => h("tr", {}, h("td", {}, a.version ? "v" + a.version : "rules, no model"), h("td", {}, a.arm), h("td", { class: "num" }, a.requests),
      h("td", { class: "num" }, a.outcomes), h("td", { class: "num" }, a.outcomes ? a.outcome_mse.toFixed(5) : "-"),
      h("td", { class: "num" }, a.outcomes ? a.outcome_mae.toFixed(5) : "-"))) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No traffic in the window."))));

  const ser = series.series || {};
  const features = (cards[cards.length - 1] || {}).features || [];
  const timeline = h("ol", { class: "timeline", id: "timeline", reversed: true }, events.events.slice().reverse().map((e) =>
    h("li", { "data-kind": e.kind },
      h("span", { class: "kind" }, e.kind.replace(/_/g, " ")), " ",
      e.from || e.to ? `${vname(e.from)} → ${vname(e.to)} ` : "",
      h("span", { class: "muted" }, "by ", h("strong", { class: "actor" }, e.actor), " at ", when(e.time), " · rev " + e.revision),
      e.reason ? h("div", { class: "muted" }, e.reason) : null)));

  setMain(name,
    h("section", {}, h("p", {}, "Production ", h("strong", { id: "production" }, vname(m.production)),
      " · canary ", h("strong", { id: "candidate" }, m.candidate ? `v${m.candidate.version} (${m.candidate.mode}, ${m.candidate.traffic}%)` : "none"),
      " · blend " + (m.blend === undefined || m.blend === null ? 1 : m.blend) + " · revision " + m.revision), controls),
    h("h2", {}, "Versions"), h("section", {}, h("table", { id: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "sha256", "Created", "Pushed by", "Test MSE", "Rules MSE", "Status", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, versionRows)),
      recent.length < m.versions.length ? h("p", { class: "muted", id: "versions-more" },
        `The latest ${SHOWN_VERSIONS} of ${m.versions.length} versions, and those production and the canary hold; \`modelctl show ${name}\` lists them all.`) : null),
    h("h2", {}, "Last 15 minutes"), h("section", { class: "charts" },
      chart("Requests per second", ser, "request_rate", 1),
      chart("Error rate %", ser, "error_rate", 100),
      chart("Fallback rate %", ser, "fallback_rate", 100),
      chart("p50 latency ms", ser, "p50_ms", 1),
      chart("p99 latency ms", ser, "p99_ms", 1)),
    h("h2", {}, "Drift (PSI per feature)"), h("section", {}, heatmap(ser, features, m.production)),
    h("h2", {}, "Champion and challenger on outcomes"), h("section", {}, outcomes),
    h("h2", {}, "History"), h("section", {}, timeline,
      events.events.length === TIMELINE_EVENTS ? h("p", { class: "muted", id: "timeline-more" },
        `The latest ${TIMELINE_EVENTS} events; \`modelctl history ${name}\` lists them all.`) : null));
}

async function fleet() {
  const { nodes } = await api("/api/v1/fleet");
  if (nodes.length === 0) {
    setMain("Fleet", h("section", { class: "empty" }, "No scorer has reported yet. Start one: ",
      h("code", {}, "scorer --control-plane http://127.0.0.1:8080")));
    return;
  }
  setMain("Fleet", h("section", {}, h("table", { id: "nodes" },
    h("thead", {}, h("tr", {}, ["Node", "Address", "Ready", "Serves", "Last report"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, nodes.map((n) => h("tr", {},
      h("td", {}, n.node), h("td", {}, n.address),
      h("td", {}, n.silent ? badge("red", "silent") : badge(n.ready ? "green" : "red", n.ready ? "ready" : "not ready")),
      h("td", {}, (n.served || []).map((x) => `${x.model} v${x.version} (${x.arm})`).join(", ") || "-",
        // What the node was asked to serve and cannot, and why.
        Object.entries(n.load_errors || {}).map(([m, err]) => h("div", { class: "load-error" }, badge("red", "cannot load"), ` ${m}: ${err}`))),
      h("td", {}, when(n.last_report))))))));
}

// ---- routing and live updates ----

async function route() {
  const hash = location.hash || "#/";
  for (const [id, match] of [["nav-overview", hash === "#/"], ["nav-fleet", hash === "#/fleet"]]) {
    const a = document.getElementById(id);
    if (match) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!state.who) { signInPrompt(); return; }
  try {
    if (hash.startsWith("#/model/")) await modelPage(decodeURIComponent(hash.slice(8)));
    else if (hash === "#/fleet") await fleet();
    else await overview();
    if (loadFailed) alertBox("");
  } catch (e) {
    if (loadFailed) alertBox("");
    if (e.status === 401) { state.who = null; renderWho(); signInPrompt(); return; }
    alertBox("Could not load the page: " + e.message);
    loadFailed = true;
  }
}

// busy: a confirmation is open, or a form field has the focus (a refresh would
// replace it under the typing).
const busy = () => !!document.querySelector("dialog[open]") || !!document.activeElement?.closest("#main input, #main select");

let refreshPending = false;
function refreshSoon() {
  if (refreshPending) return;
  refreshPending = true;
  setTimeout(() => { refreshPending = false; if (!busy()) route(); }, 250);
}

function startLive() {
  stopLive();
  const live = document.getElementById("live");
  const src = new EventSource("/api/v1/watch?since=" + state.since);
  const mark = (text, st) => { live.textContent = text; live.dataset.state = st; };
  src.onopen = () => mark("live", "live");
  src.onerror = () => mark("reconnecting…", "reconnecting");
  src.onmessage = src.onmessage || null;
  for (const kind of ["pushed", "promoted", "rolled_back", "canary_set", "canary_cleared", "auto_rollback", "drift_alert", "policy_set", "blend_set"]) {
    src.addEventListener(kind, (ev) => {
      state.since = Math.max(state.since, Number(ev.lastEventId) || 0);
      refreshSoon();
    });
  }
  state.source = src;
  state.timer = setInterval(() => { if (!busy()) route(); }, 5000);
}

function stopLive() {
  if (state.source) state.source.close();
  if (state.timer) clearInterval(state.timer);
  state.source = null;
  state.timer = null;
  const live = document.getElementById("live");
  live.textContent = "offline";
  delete live.dataset.state;
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("signin").addEventListener("submit", signIn);
  // A banner belongs to the page it was raised on; the periodic refresh keeps it.
  window.addEventListener("hashchange", () => { alertBox(""); route(); });
  await loadSession();
  if (state.who) {
    // Start the stream from the current revision, so old history does not replay.
    try {
      const { events } = await api("/api/v1/events?last=1");
      if (events.length) state.since = events[events.length - 1].revision;
    } catch (e) { /* the page will say so */ }
    startLive();
  }
  route();
});
