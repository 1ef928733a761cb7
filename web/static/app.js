// modelops dashboard: plain JavaScript, no build step. The one third-party file
// is uPlot (static/vendor/uplot, loaded before this one) for the charts.
// Every value from the API goes into the page as text (never as HTML).
"use strict";

// canaryForm keeps, per model, what was chosen in the canary controls, so the
// page's refresh every few seconds does not undo it.
// settingsForm does the same for the blend and policy fields; window is the
// charts' time window; rendered is the route the page shows.
const state = { who: null, csrf: "", models: [], source: null, since: 0, timer: null, canaryForm: {}, settingsForm: {},
  window: "15m", rendered: null };

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
// after runs once the action is done, before the page is drawn again. What
// it did is said once the page shows it (and its new revision, which the next
// action expects).
async function act(ask, done, path, body, method, after) {
  if (!(await confirmAction(ask))) return;
  let said;
  try {
    await api(path, { method: method || "POST", body });
    said = () => alertBox("Done: " + done, true);
    if (after) after();
  } catch (e) {
    said = () => alertBox("Refused: " + e.message);
  }
  await route();
  said();
}

// ---- pages ----

function setMain(title, ...children) {
  destroyCharts();
  const main = document.getElementById("main");
  main.replaceChildren(h("h1", {}, title), ...children);
  document.title = title + " · modelops";
}

function signInPrompt() {
  setMain("Sign in", h("section", { class: "empty" }, "Sign in with a token to see models, versions and the fleet. ",
    "Make one with ", h("code", {}, "modelctl token create --name me --role viewer"), "."));
}

// ---- arms and their state ----

// The scorer names the two arms production and canary (champion and challenger
// before): both are read, and shown by the new names.
const ARM_NAMES = { champion: "production", challenger: "canary" };
const armName = (a) => ARM_NAMES[a] || a;
const isProductionArm = (a) => a === "production" || a === "champion";

// failing says why an arm fails its requests ("" when it does not): every
// request failed or went to the rules, or the error or fallback rate is over
// the policy's threshold. An arm without requests is idle, not failing.
function failing(a, policy) {
  if (!a || !a.requests) return "";
  const p = policy || {};
  if (a.version && (a.error_rate >= 1 || a.fallback_rate >= 1)) return `no request succeeded (${a.requests} in the window)`;
  if (p.max_error_rate !== undefined && a.error_rate > p.max_error_rate) return `errors ${pct(a.error_rate)} > ${pct(p.max_error_rate)}`;
  if (a.version && p.max_fallback_rate !== undefined && a.fallback_rate > p.max_fallback_rate) return `fallbacks ${pct(a.fallback_rate)} > ${pct(p.max_fallback_rate)}`;
  return "";
}

// modelState is a model's badge: failing (red, with which arm and why),
// serving (green) or idle (grey: no request in the monitor window).
function modelState(health) {
  const arms = (health && health.arms) || [];
  for (const a of arms) {
    const why = failing(a, health.policy);
    if (why) return h("span", {}, badge("red", "failing"), h("span", { class: "why" }, ` ${a.version ? "v" + a.version : "rules"} ${armName(a.arm)}: ${why}`));
  }
  return arms.some((a) => a.requests > 0) ? badge("green", "serving") : badge("grey", "idle");
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
    const arm = hl && hl.arms.find((a) => a.version === m.production && isProductionArm(a.arm));
    const drift = !arm ? badge("grey", "no traffic")
      : arm.drift === "too_few_rows" ? badge("grey", `too few rows (${arm.drift_rows} of ${arm.drift_min_rows})`)
      : arm.drift ? badge(arm.drift, arm.drift + " " + Math.max(arm.max_feature_psi, arm.prediction_psi).toFixed(3))
      : badge("grey", "no reference");
    const canary = m.candidate ? `v${m.candidate.version} ${m.candidate.mode} ${m.candidate.traffic}%` : "-";
    return h("tr", { "data-model": m.name },
      h("td", {}, h("a", { href: "#/model/" + encodeURIComponent(m.name) }, m.name)),
      h("td", { class: "state" }, modelState(hl)),
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
    h("caption", { class: "muted" }, "Production over the monitor window; drift is the largest PSI of features and prediction. " +
      "Failing: an arm's error or fallback rate is over its policy, or none of its requests succeeded; idle: no request."),
    h("thead", {}, h("tr", {}, ["Model", "State", "Production", "Canary", "Req/s", "Errors", "Fallbacks", "p99", "Drift"].map((t, i) =>
      h("th", { scope: "col", class: i >= 4 && i <= 7 ? "num" : null }, t)))),
    h("tbody", {}, rows))));
}

// ---- charts (uPlot) ----

// The windows offered; those longer than the monitor keeps are disabled.
const WINDOWS = [["15m", "15 minutes"], ["1h", "1 hour"], ["6h", "6 hours"], ["24h", "24 hours"]];
const POINTS = 90; // per chart: the step is the window over this

// seconds reads a Go duration ("15m0s", "24h0m0s", "1h") as seconds.
function seconds(d) {
  let total = 0;
  for (const [, n, unit] of String(d || "").matchAll(/([0-9.]+)(h|ms|m|s)/g)) total += Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit];
  return total;
}

// seriesOf fetches the model's per-step health over the chosen window.
async function seriesOf(enc) {
  const win = seconds(state.window);
  const step = Math.max(1, Math.ceil(win / POINTS));
  try {
    return await api(`/api/v1/models/${enc}/series?window=${state.window}&step=${step}s`);
  } catch (e) {
    return { series: {}, step: step + "s", error: e.message };
  }
}

function windowControl(retain) {
  const keep = seconds(retain) || Infinity;
  const sel = h("select", { id: "window", onchange: () => { state.window = sel.value; route(); } }, WINDOWS.map(([v, label]) =>
    h("option", { value: v, selected: v === state.window, disabled: seconds(v) > keep || null,
      title: seconds(v) > keep ? `the monitor keeps the last ${retain}` : null }, label)));
  return h("label", { class: "window" }, "Window ", sel,
    retain ? h("span", { class: "muted", id: "retain" }, ` the monitor keeps the last ${retain.replace(/0s$/, "").replace(/([hm])0m$/, "$1")}`) : null);
}

// Marked on the charts' time line: promotions, rollbacks and canary changes.
const MARKED = { promoted: "#1a7f37", rolled_back: "#cf222e", auto_rollback: "#cf222e", canary_set: "#9a6700", canary_cleared: "#9a6700" };
const markLabel = (e) => e.kind.replace(/_/g, " ") + (e.to ? " v" + e.to : e.from ? " v" + e.from : "");

const COLORS = ["#0b5cad", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#1b7c83", "#bc4c00"];
const hhmm = (t, long) => new Date(t * 1000).toLocaleTimeString([], long ? { hour: "2-digit", minute: "2-digit" } : { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// Live uPlot instances, destroyed whenever the page is drawn again.
let charts = [];
function destroyCharts() {
  for (const c of charts) c.destroy();
  charts = [];
}

// chartData lines the series up on one time grid (seconds). A step in which a
// (version, arm) served no request has no value: null, drawn as a gap.
function chartData(ser, stepS) {
  const names = Object.keys(ser).sort();
  let xs = names.length ? ser[names[0]].map((p) => Date.parse(p.time) / 1000) : [];
  if (xs.length === 0) {
    const now = Math.floor(Date.now() / 1000), win = seconds(state.window);
    for (let t = now - win + stepS; t <= now; t += stepS) xs.push(t);
  }
  return { names, xs };
}

// chart is an empty placeholder; mountCharts draws it once it has a width.
function chart(title, field, scale, unit) {
  return h("div", { class: "chart", "data-field": field, "data-scale": scale, "data-unit": unit }, h("h3", {}, title), h("div", { class: "plot" }), h("p", { class: "legend peak" }));
}

function mountCharts(ser, stepS, events) {
  const { names, xs } = chartData(ser, stepS);
  const from = xs.length ? xs[0] - stepS : 0, to = xs.length ? xs[xs.length - 1] : 0;
  const marks = events.filter((e) => MARKED[e.kind]).map((e) => ({ t: Date.parse(e.time) / 1000, e })).filter((m) => m.t >= from && m.t <= to);
  for (const el of document.querySelectorAll("#charts .chart")) {
    const field = el.dataset.field, scale = Number(el.dataset.scale), unit = el.dataset.unit;
    let peak = 0;
    const data = [xs, ...names.map((n) => ser[n].map((p) => {
      if (!p.requests) return null;
      const v = p[field] * scale;
      peak = Math.max(peak, v);
      return v;
    }))];
    const fmt = (u, v) => (v === null || v === undefined ? "-" : (Math.round(v * 1000) / 1000) + unit);
    const long = to - from > 3600;
    const u = new uPlot({
      width: Math.max(240, el.clientWidth - 2), height: 170,
      scales: { x: { time: true, range: () => [from, to] }, y: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1] } },
      series: [{ label: "time", value: (u, t) => (t === null ? "-" : hhmm(t)) },
        ...names.map((n, i) => ({ label: n.replace(/\/(\w+)$/, (m, a) => " " + armName(a)), stroke: COLORS[i % COLORS.length], width: 1.5, value: fmt, spanGaps: false,
          // A point alone between gaps draws no line: its dot still shows.
          points: { show: true, size: 4, fill: COLORS[i % COLORS.length] } }))],
      axes: [{ values: (u, splits) => {
        const labels = splits.map((t) => hhmm(t, true));
        el.dataset.ticks = labels.join(" ");
        return labels;
      } }, { size: 52, values: (u, splits) => splits.map((v) => String(Math.round(v * 1000) / 1000)) }],
      hooks: { draw: [(u) => {
        // A dashed line and a label at each event on the time line.
        const c = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
        c.save();
        c.setLineDash([4, 3]);
        c.lineWidth = 1.5 * devicePixelRatio;
        c.font = `${10 * devicePixelRatio}px system-ui, sans-serif`;
        marks.forEach((m, i) => {
          const x = Math.round(u.valToPos(m.t, "x", true));
          c.strokeStyle = c.fillStyle = MARKED[m.e.kind];
          c.beginPath(); c.moveTo(x, top); c.lineTo(x, bottom); c.stroke();
          // Labels step down so that events close in time stay readable; one
          // near the right edge is written to the left of its line.
          const label = markLabel(m.e), w = c.measureText(label).width, pad = 3 * devicePixelRatio;
          const lx = x + pad + w > u.bbox.left + u.bbox.width ? x - pad - w : x + pad;
          c.fillText(label, lx, top + (10 + 12 * (i % 3)) * devicePixelRatio);
        });
        c.restore();
        el.dataset.markers = String(marks.length);
      }] },
      legend: { live: true },
    }, data, el.querySelector(".plot"));
    // Tests and people read the peak; an all-zero chart says 0, not the scale's 1.
    el.querySelector(".peak").textContent = names.length ? "max " + Math.round(peak * 1000) / 1000 + unit : "no requests in the window";
    charts.push(u);
  }
  const list = document.getElementById("markers");
  if (list) {
    list.replaceChildren(...marks.map((m) => {
      const sw = h("span", { class: "sw" });
      sw.style.background = MARKED[m.e.kind];
      return h("li", { "data-kind": m.e.kind }, sw, markLabel(m.e), h("span", { class: "muted" }, ` at ${hhmm(m.t)} by ${m.e.actor}`));
    }));
    if (marks.length === 0) list.append(h("li", { class: "muted" }, "No promotion, rollback or canary change in the window."));
  }
}

// heatmap charts the production version's production-arm series (any version's
// when production has none yet; never the rules' answers before a model).
function heatmap(series, features, production) {
  const prodKey = (k) => /^v\d+\/(production|champion)$/.test(k);
  const name = [`v${production}/production`, `v${production}/champion`].find((k) => series[k]) || Object.keys(series).find(prodKey);
  if (!name || !features || features.length === 0) return h("p", { class: "muted" }, "No drift data yet.");
  const pts = series[name];
  const shown = name.replace(/\/(\w+)$/, (m, a) => " " + armName(a));
  const grid = h("div", { class: "heat", role: "img", "aria-label": "PSI per feature over time for " + shown });
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
  return h("div", {}, h("p", { class: "legend" }, shown + ": green < 0.1 ≤ amber < 0.25 ≤ red; grey: too few rows to grade"), grid);
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

// promoteButton asks, then promotes; promoting a rejected version overrides the
// monitor, and the confirmation says so and why it was rejected.
function promoteButton(name, m, version, attrs, label) {
  const enc = encodeURIComponent(name);
  const rejected = m.rejected || {};
  return h("button", Object.assign({ type: "button", class: "promote", "data-version": version,
    disabled: !canAct() || version === m.production || null,
    onclick: () => act(`Promote ${name} v${version} to production (now ${vname(m.production)}). Every scorer will serve it within a second.` +
      (rejected[version] !== undefined ? ` The monitor rejected v${version} (${rejected[version]}); promoting it overrides that.` : ""),
      `${name} v${version} is in production (was ${vname(m.production)}); every scorer serves it within a second.`,
      `/api/v1/models/${enc}/promote`, { version, expect_revision: m.revision, force: rejected[version] !== undefined }) }, attrs || {}), label || "Promote");
}

const versionHref = (name, v) => `#/model/${encodeURIComponent(name)}/version/${v}`;
const compareHref = (name, a, b) => `#/model/${encodeURIComponent(name)}/compare/${a}/${b}`;

// ---- blend and policy ----

// The policy's settings as the form shows them: [field, label, kind].
const POLICY_FIELDS = [["max_error_rate", "Max error rate (0-1)", "number"], ["max_fallback_rate", "Max fallback rate (0-1)", "number"],
  ["max_p99_ms", "Max p99 ms", "number"], ["max_prediction_psi", "Max prediction PSI", "number"], ["min_samples", "Min samples", "int"],
  ["bake_time", "Bake time", "duration"], ["failure_limit", "Failure limit", "int"], ["corroborating_nodes", "Corroborating nodes", "int"]];

function settings(name, m, policy) {
  const enc = encodeURIComponent(name);
  const off = canAct() ? null : true;
  const blendNow = m.blend === undefined || m.blend === null ? 1 : m.blend;
  const kept = state.settingsForm[name] || (state.settingsForm[name] = {});
  const blend = h("input", { id: "blend", type: "number", min: 0, max: 1, step: 0.05, value: kept.blend ?? blendNow, disabled: off,
    oninput: () => { kept.blend = blend.value; } });
  const inputs = {};
  for (const [f, , kind] of POLICY_FIELDS) {
    inputs[f] = h("input", { id: "policy-" + f, name: f, type: kind === "duration" ? "text" : "number", step: kind === "int" ? 1 : "any", min: 0,
      value: kept[f] ?? policy[f], disabled: off, oninput: () => { kept[f] = inputs[f].value; } });
  }
  const setBlend = () => {
    const w = Number(blend.value);
    if (blend.value === "" || !(w >= 0 && w <= 1)) { alertBox(`Blend ${blend.value}: want a number from 0 to 1.`); return; }
    act(`Set ${name}'s blend from ${blendNow} to ${w}: scores become ${Math.round(w * 100)}% the model's and ${Math.round((1 - w) * 100)}% the rules'.`,
      `${name}'s blend is ${w} (was ${blendNow}).`, `/api/v1/models/${enc}/blend`, { weight: w, expect_revision: m.revision }, "POST",
      () => { delete kept.blend; });
  };
  const savePolicy = () => {
    const body = { expect_revision: m.revision }, changes = [];
    for (const [f, label, kind] of POLICY_FIELDS) {
      const raw = inputs[f].value.trim();
      if (raw === String(policy[f])) continue;
      let v = raw;
      if (kind !== "duration") {
        v = Number(raw);
        if (raw === "" || !Number.isFinite(v) || (kind === "int" && !Number.isInteger(v))) { alertBox(`${label}: ${raw || "empty"} is not a ${kind === "int" ? "whole number" : "number"}.`); return; }
      }
      body[f] = v;
      changes.push(`${label.replace(/ \(.*\)$/, "").toLowerCase()} ${policy[f]} → ${v}`);
    }
    if (changes.length === 0) { alertBox("The policy form holds the current policy: nothing to change."); return; }
    act(`Change ${name}'s rollback policy: ${changes.join(", ")}.`, `${name}'s policy: ${changes.join(", ")}.`,
      `/api/v1/models/${enc}/policy`, body, "PUT", () => { for (const [f] of POLICY_FIELDS) delete kept[f]; });
  };
  return h("section", { id: "settings" },
    h("div", { class: "controls" }, h("label", {}, "Blend (model's weight, 0-1)", blend),
      h("button", { type: "button", id: "set-blend", disabled: off, onclick: setBlend }, "Set blend"),
      h("span", { class: "muted" }, `now ${blendNow}`)),
    h("h3", {}, "Rollback policy"),
    h("div", { class: "controls" }, POLICY_FIELDS.map(([f, label]) => h("label", {}, label, inputs[f])),
      h("button", { type: "button", id: "save-policy", disabled: off, onclick: savePolicy }, "Save policy")));
}

// ---- the model page ----

async function modelPage(name) {
  const enc = encodeURIComponent(name);
  const m = await api("/api/v1/models/" + enc);
  const [health, series, events, policy, rollout] = await Promise.all([
    api("/api/v1/models/" + enc + "/health").catch(() => ({ arms: [] })),
    seriesOf(enc),
    api("/api/v1/events?model=" + enc + "&last=" + TIMELINE_EVENTS),
    api("/api/v1/models/" + enc + "/policy").catch(() => ({})),
    api("/api/v1/models/" + enc + "/rollout").catch(() => ({})),
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
    else if (m.candidate && v.version === m.candidate.version) { status = "canary"; cls = "amber"; }
    else if (rejected[v.version] !== undefined) { status = "rejected"; cls = "red"; }
    return h("tr", { "data-version": v.version },
      h("td", {}, h("a", { class: "version-link", href: versionHref(name, v.version) }, "v" + v.version)),
      h("td", {}, h("code", { title: v.digest }, short(v.digest))),
      h("td", {}, when(v.created_at)),
      h("td", {}, v.actor),
      h("td", { class: "num" }, mm ? mm.mse.toFixed(5) : "-"),
      h("td", { class: "num" }, fm ? fm.mse.toFixed(5) : "-"),
      h("td", {}, badge(cls, status), rejected[v.version] ? h("span", { class: "muted", title: rejected[v.version] }, " why?") : null),
      h("td", {}, promoteButton(name, m, v.version), " ",
        m.production && v.version !== m.production ? h("a", { class: "compare-link", href: compareHref(name, m.production, v.version) }, "compare") : null));
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
  const armRows = arms.map((a) => {
    const why = failing(a, health.policy);
    return h("tr", { "data-arm": (a.version || 0) + "/" + armName(a.arm) },
      h("td", {}, a.version ? h("a", { href: versionHref(name, a.version) }, "v" + a.version) : "rules, no model"), h("td", {}, armName(a.arm)),
      h("td", {}, why ? badge("red", "failing: " + why) : a.requests ? badge("green", "serving") : badge("grey", "idle")),
      h("td", { class: "num" }, a.requests), h("td", { class: "num" }, pct(a.error_rate)), h("td", { class: "num" }, pct(a.fallback_rate)),
      h("td", { class: "num" }, a.outcomes), h("td", { class: "num" }, a.outcomes ? a.outcome_mse.toFixed(5) : "-"),
      h("td", { class: "num" }, a.outcomes ? a.outcome_mae.toFixed(5) : "-"),
      h("td", { class: "num" }, a.shadow_rows ? `${a.shadow_rows} rows, p50 |diff| ≤ ${a.shadow_p50_abs_diff}` : "-"));
  });
  const outcomes = h("table", { id: "outcomes" },
    h("thead", {}, h("tr", {}, ["Version", "Arm", "State", "Requests", "Errors", "Fallbacks", "Outcomes", "MSE", "MAE", "Shadow"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, arms.length ? armRows : h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No traffic in the window."))));

  const ser = series.series || {};
  const stepS = seconds(series.step) || 10;
  const features = (cards[cards.length - 1] || {}).features || [];
  const evs = events.events;
  const timeline = h("ol", { class: "timeline", id: "timeline", reversed: true }, evs.slice().reverse().map((e) =>
    h("li", { "data-kind": e.kind },
      h("span", { class: "kind" }, e.kind.replace(/_/g, " ")), " ",
      e.from || e.to ? `${vname(e.from)} → ${vname(e.to)} ` : "",
      h("span", { class: "muted" }, "by ", h("strong", { class: "actor" }, e.actor), " at ", when(e.time), " · rev " + e.revision),
      e.reason ? h("div", { class: "muted" }, e.reason) : null)));
  const winLabel = (WINDOWS.find(([v]) => v === state.window) || [, state.window])[1];

  setMain(name,
    h("section", {}, h("p", {}, "Production ", h("strong", { id: "production" }, vname(m.production)),
      " · canary ", h("strong", { id: "candidate" }, m.candidate ? `v${m.candidate.version} (${m.candidate.mode}, ${m.candidate.traffic}%)` : "none"),
      " · blend " + (m.blend === undefined || m.blend === null ? 1 : m.blend) + " · revision " + m.revision + " · ",
      h("span", { id: "model-state" }, modelState(health))), controls),
    h("h2", {}, "Rollout"), rolloutSection(name, rollout, off),
    h("h2", {}, "Versions"), h("section", {}, h("table", { id: "versions" },
      h("thead", {}, h("tr", {}, ["Version", "sha256", "Created", "Pushed by", "Test MSE", "Rules MSE", "Status", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, versionRows)),
      recent.length < m.versions.length ? h("p", { class: "muted", id: "versions-more" },
        `The latest ${SHOWN_VERSIONS} of ${m.versions.length} versions, and those production and the canary hold; \`modelctl show ${name}\` lists them all.`) : null),
    h("h2", {}, "Last " + winLabel), h("section", {},
      h("div", { class: "controls" }, windowControl(series.retain),
        series.error ? h("span", { class: "muted", id: "series-error" }, "No charts: " + series.error) : null),
      h("div", { class: "charts", id: "charts" },
        chart("Requests per second", "request_rate", 1, ""),
        chart("Error rate %", "error_rate", 100, "%"),
        chart("Fallback rate %", "fallback_rate", 100, "%"),
        chart("p50 latency ms", "p50_ms", 1, " ms"),
        chart("p99 latency ms", "p99_ms", 1, " ms")),
      h("ul", { class: "markers legend", id: "markers", "aria-label": "Marked on the charts" })),
    h("h2", {}, "Drift (PSI per feature)"), h("section", {}, heatmap(ser, features, m.production)),
    h("h2", {}, "Arms over the monitor window"), h("section", {}, outcomes),
    h("h2", {}, "Blend and policy"), settings(name, m, policy),
    h("h2", {}, "History"), h("section", {}, timeline,
      evs.length === TIMELINE_EVENTS ? h("p", { class: "muted", id: "timeline-more" },
        `The latest ${TIMELINE_EVENTS} events; \`modelctl history ${name}\` lists them all.`) : null));
  mountCharts(ser, stepS, evs);
}

// unknownModel is the page of a model the control plane does not hold: what
// was asked for, and nothing to act on.
function unknownModel(name) {
  setMain(name, h("section", { class: "empty", id: "unknown" },
    h("p", {}, "There is no model named ", h("code", {}, name), "."), h("p", {}, h("a", { href: "#/" }, "All models"))));
}

// ---- one version ----

// kv is a two-column table of an object's fields; nested objects are shown as
// compact JSON text.
function kv(obj, id) {
  const rows = Object.entries(obj || {}).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k.replace(/_/g, " ")),
    h("td", { class: "wrap" }, v !== null && typeof v === "object" ? JSON.stringify(v) : String(v))));
  return rows.length ? h("table", { id, class: "kv" }, h("tbody", {}, rows)) : h("p", { class: "muted", id }, "Not in the card.");
}

const fix = (v, n) => (typeof v === "number" ? v.toFixed(n === undefined ? 4 : n) : "-");

// aggregate sums a version's per-step series over the window (every arm).
function aggregate(ser, version) {
  const a = { requests: 0, rows: 0, errors: 0, fallbacks: 0, p50: [], p99: 0, outcomes: 0, se: 0, ae: 0, shadowRows: 0, shadowDiff: 0, arms: new Set() };
  for (const [k, pts] of Object.entries(ser)) {
    const m = /^v(\d+)\/(\w+)$/.exec(k);
    if (!m || Number(m[1]) !== version) continue;
    for (const p of pts) {
      // A shadow run scores rows without answering requests.
      if (!p.requests && !p.rows) continue;
      a.arms.add(armName(m[2]));
      a.rows += p.rows;
      if (p.shadow_rows) { a.shadowRows += p.shadow_rows; a.shadowDiff += p.shadow_p50_abs_diff * p.shadow_rows; }
      if (!p.requests) continue;
      a.requests += p.requests;
      a.errors += p.error_rate * p.requests;
      a.fallbacks += p.fallback_rate * p.requests;
      a.p50.push(p.p50_ms);
      a.p99 = Math.max(a.p99, p.p99_ms);
      if (p.outcomes) { a.outcomes += p.outcomes; a.se += p.outcome_mse * p.outcomes; a.ae += p.outcome_mae * p.outcomes; }
    }
  }
  a.p50.sort((x, y) => x - y);
  return a;
}

// productionRows are the comparison's production figures, one column per version.
function productionRows(aggs, healths) {
  const rate = (a, n) => (a.requests ? pct(n / a.requests) : "-");
  const rows = [
    ["Arms", (a) => [...a.arms].join(", ") || "no traffic"],
    ["Requests answered", (a) => a.requests],
    ["Rows scored", (a) => a.rows],
    ["Error rate", (a) => rate(a, a.errors)],
    ["Fallback rate", (a) => rate(a, a.fallbacks)],
    ["p50 latency (median step)", (a) => (a.p50.length ? ms(a.p50[Math.floor(a.p50.length / 2)]) : "-")],
    ["p99 latency (worst step)", (a) => (a.requests ? ms(a.p99) : "-")],
    ["Outcomes", (a) => a.outcomes],
    ["Outcome MSE", (a) => (a.outcomes ? fix(a.se / a.outcomes, 5) : "-")],
    ["Outcome MAE", (a) => (a.outcomes ? fix(a.ae / a.outcomes, 5) : "-")],
    ["Shadow rows", (a) => a.shadowRows || "-"],
    ["Shadow p50 |canary − production|", (a) => (a.shadowRows ? "≤ " + fix(a.shadowDiff / a.shadowRows, 3) : "-")],
  ];
  const out = rows.map(([label, f]) => h("tr", {}, h("th", { scope: "row" }, label), aggs.map((a) => h("td", { class: "num" }, String(f(a))))));
  out.push(h("tr", {}, h("th", { scope: "row" }, "Drift now (monitor window)"), healths.map((hl) => h("td", { class: "num" }, !hl ? "no traffic"
    : hl.drift === "too_few_rows" ? `too few rows (${hl.drift_rows} of ${hl.drift_min_rows})`
    : hl.drift ? `${hl.drift} ${Math.max(hl.max_feature_psi, hl.prediction_psi).toFixed(3)}` + (hl.drifted && hl.drifted.length ? ` (drifted: ${hl.drifted.join(", ")})` : "")
    : "no reference"))));
  return out;
}

// cardMetricRows are the card's test metrics, each row labelled as such.
function cardMetricRows(cards) {
  const keys = [];
  for (const c of cards) for (const [set, ms_] of Object.entries((c && c.metrics) || {})) for (const k of Object.keys(ms_ || {})) if (!keys.includes(set + "." + k)) keys.push(set + "." + k);
  // The model's figures before the rules' (the baseline it must beat).
  keys.sort((x, y) => (y.startsWith("test_model.") - x.startsWith("test_model.")));
  return keys.map((key) => {
    const [set, k] = key.split(".");
    const of = { test_model: "the model", test_fallback: "the rules" }[set] || set.replace(/_/g, " ");
    return h("tr", {}, h("th", { scope: "row" }, `${k.toUpperCase()} of ${of}, card's test set`),
      cards.map((c) => h("td", { class: "num" }, fix(((c && c.metrics) || {})[set]?.[k], 5))));
  });
}

async function versionPage(name, n) {
  const enc = encodeURIComponent(name);
  const m = await api("/api/v1/models/" + enc);
  const [v, health, events, series] = await Promise.all([
    api(`/api/v1/models/${enc}/versions/${n}`),
    api(`/api/v1/models/${enc}/health`).catch(() => ({ arms: [] })),
    api(`/api/v1/events?model=${enc}&last=10000`),
    seriesOf(enc),
  ]);
  const card = v.card || {};
  const rejected = m.rejected || {};
  const status = n === m.production ? badge("green", "production") : m.candidate && m.candidate.version === n ? badge("amber", "canary")
    : rejected[n] !== undefined ? badge("red", "rejected: " + rejected[n]) : badge("grey", "not serving");
  const mine = events.events.filter((e) => e.to === n || e.from === n);
  const pushed = mine.find((e) => e.kind === "pushed");
  const data = card.data || {};
  const featureStats = Object.entries(data.features || {});
  const golden = card.golden || [];
  const arms = (health.arms || []).filter((a) => a.version === n);
  const ser = series.series || {};
  const agg = aggregate(ser, n);
  const others = m.versions.filter((x) => x.version !== n).map((x) => x.version).reverse();
  const compareWith = h("select", { id: "compare-with" }, others.map((x) => h("option", { value: x, selected: x === m.production || null }, "v" + x + (x === m.production ? " (production)" : ""))));
  setMain(`${name} v${n}`,
    h("section", { id: "version-summary" },
      h("p", {}, h("a", { href: "#/model/" + enc }, name), " · v" + n + " · ", status),
      h("p", { id: "pushed-by" }, "Pushed by ", h("strong", {}, v.actor), " at ", when(v.created_at),
        v.reason || (pushed && pushed.reason) ? ` · why: ${v.reason || pushed.reason}` : "", " · ", h("code", { title: v.digest }, short(v.digest)), ` · ${v.size} bytes`),
      card.training && card.training.source ? h("p", { id: "trained-on" }, "Trained on ", card.training.source) : null,
      h("div", { class: "controls" }, promoteButton(name, m, n, { id: "version-promote" }, "Promote v" + n),
        others.length ? h("label", {}, "Compare with", compareWith) : null,
        others.length ? h("button", { type: "button", id: "compare", onclick: () => { location.hash = compareHref(name, Number(compareWith.value), n); } }, "Compare") : null)),
    h("h2", {}, "Metrics"), h("section", {},
      h("table", { id: "version-metrics" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "v" + n))),
        h("tbody", {}, cardMetricRows([card]), productionRows([agg], [arms.find((a) => isProductionArm(a.arm)) || arms[0]]))),
      h("p", { class: "muted" }, `Card metrics are the trainer's, on its test set; the rest is production traffic over the last ${state.window}.`)),
    h("h2", {}, "Card"), h("section", {}, kv({ format: card.format, model: card.model, features: (card.features || []).length + " features" }, "card-head"),
      h("h3", {}, "Export"), kv(card.export, "card-export"), h("h3", {}, "Training"), kv(card.training, "card-training")),
    h("h2", {}, "Data summary"), h("section", {}, h("p", { id: "data-rows" }, data.rows !== undefined ? `${data.rows} training rows` : "The card has no data summary."),
      featureStats.length ? h("table", { id: "data-summary" },
        h("thead", {}, h("tr", {}, ["Feature", "Mean", "Std", "Min", "Max"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null }, t)))),
        h("tbody", {}, featureStats.map(([f, st]) => h("tr", {}, h("td", {}, f), ["mean", "std", "min", "max"].map((k) => h("td", { class: "num" }, fix(st[k]))))))) : null),
    h("h2", {}, "Golden inputs"), h("section", {}, golden.length ? h("table", { id: "golden" },
      h("caption", { class: "muted" }, `${golden.length} golden input${golden.length > 1 ? "s" : ""}: every scorer checks the version gives these outputs before it serves it.`),
      h("thead", {}, h("tr", {}, ["#", "Input", "Output"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, golden.slice(0, 10).map((g, i) => h("tr", {}, h("td", {}, i + 1),
        h("td", { class: "wrap" }, (g.input || []).slice(0, 8).map((x) => x.toFixed(3)).join(", ") + ((g.input || []).length > 8 ? ` … (${g.input.length} values)` : "")),
        h("td", {}, (g.output || []).map((x) => x.toFixed(5)).join(", ")))))) : h("p", { class: "muted", id: "golden" }, "The card has no golden inputs.")),
    h("h2", {}, "History of v" + n), h("section", {}, h("ol", { class: "timeline", id: "version-history", reversed: true }, mine.slice().reverse().map((e) =>
      h("li", { "data-kind": e.kind }, h("span", { class: "kind" }, e.kind.replace(/_/g, " ")), " ",
        e.from || e.to ? `${vname(e.from)} → ${vname(e.to)} ` : "",
        h("span", { class: "muted" }, "by ", h("strong", { class: "actor" }, e.actor), " at ", when(e.time), " · rev " + e.revision),
        e.reason ? h("div", { class: "muted" }, e.reason) : null)))));
}

// ---- two versions ----

async function comparePage(name, a, b) {
  const enc = encodeURIComponent(name);
  const m = await api("/api/v1/models/" + enc);
  const [va, vb, health, series] = await Promise.all([
    api(`/api/v1/models/${enc}/versions/${a}`), api(`/api/v1/models/${enc}/versions/${b}`),
    api(`/api/v1/models/${enc}/health`).catch(() => ({ arms: [] })),
    seriesOf(enc),
  ]);
  const ser = series.series || {};
  const vs = [a, b];
  const aggs = vs.map((n) => aggregate(ser, n));
  const healths = vs.map((n) => {
    const arms = (health.arms || []).filter((x) => x.version === n);
    return arms.find((x) => isProductionArm(x.arm)) || arms[0];
  });
  const head = h("thead", {}, h("tr", {}, h("th", {}, ""), vs.map((n) => h("th", { scope: "col", class: "num" },
    h("a", { href: versionHref(name, n) }, "v" + n), n === m.production ? " (production)" : m.candidate && m.candidate.version === n ? " (canary)" : ""))));
  const shadow = m.candidate && m.candidate.mode === "shadow" && vs.includes(m.candidate.version);
  const evalSection = sameDataSection(name, m.evaluation, vs, head);
  setMain(`${name}: v${a} and v${b}`,
    h("section", {}, h("p", {}, h("a", { href: "#/model/" + enc }, name), ` · production ${vname(m.production)} · canary `,
      m.candidate ? `v${m.candidate.version} (${m.candidate.mode}, ${m.candidate.traffic}%)` : "none"),
      h("div", { class: "controls" }, vs.map((n) => promoteButton(name, m, n, { id: "compare-promote-" + n, class: "promote primary" }, "Promote v" + n)))),
    h("h2", {}, `In production, over the last ${state.window}`), h("section", {},
      h("div", { class: "controls" }, windowControl(series.retain)),
      h("table", { id: "compare-production" }, head.cloneNode(true), h("tbody", {}, productionRows(aggs, healths))),
      h("p", { class: "muted", id: "shadow-note" }, shadow
        ? `v${m.candidate.version} runs in shadow: it scores a share of production's requests without answering them, and "shadow" rows compare its scores with production's on the same requests.`
        : "Neither runs as a shadow canary, so there are no shadow differences: the figures come from each version's own requests.")),
    h("h2", {}, "On the same rows (the latest evaluation)"), evalSection);
}

// sameDataSection shows the model's latest evaluation (modelctl eval --record)
// when it measured both versions on the same rows; the cards' test metrics are
// never compared, as each comes from its own test set.
function sameDataSection(name, ev, vs, head) {
  const fig = (n) => ev && (ev.figures || []).find((f) => f.name === "v" + n);
  if (!ev || !vs.every(fig)) {
    return h("section", {}, h("p", { id: "compare-eval" }, `No evaluation on the same rows covers v${vs[0]} and v${vs[1]}: `,
      h("code", {}, `modelctl eval ${name} --versions ${vs.join(",")} --data FILE --record`), " records one. The cards' test metrics are not compared: each comes from its own test set."));
  }
  const r4 = (x) => (Math.round(x * 1e5) / 1e5).toString();
  const rows = [["MSE", "mse"], ["MAE", "mae"], ["R²", "r2"], ["Calibration error", "calibration_error"]].map(([label, k]) =>
    h("tr", {}, h("th", { scope: "row" }, label), vs.map((n) => h("td", { class: "num" }, r4(fig(n)[k])))));
  const pct = Math.round((ev.confidence || 0.95) * 100);
  for (const [x, y] of [[vs[1], vs[0]], [vs[0], vs[1]]]) {
    const d = (ev.differences || []).find((d) => d.name === "v" + x && d.baseline === "v" + y);
    if (d) {
      rows.push(h("tr", { id: "compare-eval-difference" }, h("th", { scope: "row" }, `MSE v${x} − v${y}, ${pct}% interval`),
        vs.map((n) => h("td", { class: "num" }, n === x ? `${d.mse_difference > 0 ? "+" : ""}${r4(d.mse_difference)} [${r4(d.low)}, ${r4(d.high)}] ${d.verdict}` : "baseline"))));
    }
  }
  return h("section", {}, h("table", { id: "compare-eval" }, head.cloneNode(true), h("tbody", {}, rows)),
    h("p", { class: "muted", id: "compare-eval-source" }, `${ev.rows} rows of ${ev.data}, evaluated by ${ev.actor} at `, when(ev.time), "."));
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
      h("td", {}, (n.served || []).map((x) => `${x.model} v${x.version} (${armName(x.arm)})`).join(", ") || "-",
        // What the node was asked to serve and cannot, and why.
        Object.entries(n.load_errors || {}).map(([m, err]) => h("div", { class: "load-error" }, badge("red", "cannot load"), ` ${m}: ${err}`))),
      h("td", {}, when(n.last_report))))))));
}

// ---- routing and live updates ----

// route draws the page the address names. Draws run one at a time: one asked
// for while another runs (a refresh, an action's) runs after it, so that the
// page shown is never older than the last change made from it.
let routing = null, routeAgain = false;
function route() {
  if (routing) { routeAgain = true; return routing; }
  routing = (async () => {
    try {
      do { routeAgain = false; await drawRoute(); } while (routeAgain);
    } finally {
      routing = null;
    }
  })();
  return routing;
}

async function drawRoute() {
  const hash = location.hash || "#/";
  for (const [id, match] of [["nav-overview", hash === "#/"], ["nav-fleet", hash === "#/fleet"]]) {
    const a = document.getElementById(id);
    if (match) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!state.who) { signInPrompt(); return; }
  // #/model/NAME, #/model/NAME/version/N, #/model/NAME/compare/A/B (NAME encoded).
  const parts = hash.startsWith("#/model/") ? hash.slice(8).split("/") : [];
  const name = parts.length ? decodeURIComponent(parts[0]) : "";
  const num = (s) => (/^[1-9][0-9]{0,9}$/.test(s || "") ? Number(s) : NaN);
  try {
    if (parts.length === 3 && parts[1] === "version" && num(parts[2])) await versionPage(name, num(parts[2]));
    else if (parts.length === 4 && parts[1] === "compare" && num(parts[2]) && num(parts[3])) await comparePage(name, num(parts[2]), num(parts[3]));
    else if (parts.length === 1) await modelPage(name);
    else if (parts.length) { setMain("Not found", h("section", { class: "empty", id: "unknown" }, "No such page: ", h("code", {}, hash))); }
    else if (hash === "#/fleet") await fleet();
    else await overview();
    state.rendered = hash;
    if (loadFailed) alertBox("");
  } catch (e) {
    if (loadFailed) alertBox("");
    if (e.status === 401) { state.who = null; renderWho(); signInPrompt(); return; }
    // An unknown model (or version) is a page of its own, with nothing to act on.
    if (e.status === 404 && name) {
      state.rendered = hash;
      if (parts.length === 1 || !(await api("/api/v1/models/" + parts[0]).then(() => true, () => false))) unknownModel(name);
      else setMain(name, h("section", { class: "empty", id: "unknown" }, h("p", {}, e.message), h("p", {}, h("a", { href: "#/model/" + parts[0] }, name))));
      return;
    }
    alertBox("Could not load the page: " + e.message);
    loadFailed = true;
    // What is on screen belongs to another page: it goes, with its buttons.
    if (state.rendered !== hash) {
      state.rendered = null;
      setMain("Could not load", h("section", { class: "empty", id: "load-failed" }, "This page could not load; it is tried again every few seconds."));
    }
  }
}

// busy: a confirmation is open, or a form field has the focus (a refresh would
// replace it under the typing).
// A pointer over a chart is reading its values: the refresh waits for it too.
const busy = () => !!document.querySelector("dialog[open]") || !!document.activeElement?.closest("#main input, #main select") ||
  !!document.querySelector(".chart .u-over:hover");

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
