"use strict";
// The model page's progressive rollout: its steps, the monitor's latest
// analysis and the pause, resume and abort buttons. Kept apart from app.js,
// whose helpers (h, badge, act, when) it uses; app.js calls rolloutSection.

const ROLLOUT_BADGE = { running: "amber", paused: "grey", promoted: "green", failed: "red", timed_out: "red", aborted: "grey" };

function rolloutFix(v) {
  if (v === undefined || v === null) return "-";
  return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(2) : String(Math.round(v * 10000) / 10000);
}

// rolloutSection renders status (GET …/rollout) for model name; off disables
// the buttons (a viewer).
function rolloutSection(name, status, off) {
  const ro = status && status.rollout;
  if (!ro) {
    return h("section", { id: "rollout" }, h("p", { class: "muted" },
      `No rollout yet: \`modelctl rollout ${name} VERSION\` moves a canary step by step while the analysis passes.`));
  }
  const enc = encodeURIComponent(name);
  const steps = [];
  if (ro.shadow) steps.push(["shadow", -1]);
  ro.steps.forEach((s, i) => steps.push([s + "%", i]));
  const stepList = h("ol", { class: "rollout-steps", id: "rollout-steps" }, steps.map(([label, i]) => {
    let cls = "grey";
    if (i < ro.step || (ro.state === "promoted")) cls = "green";
    else if (i === ro.step) cls = ro.state === "failed" || ro.state === "timed_out" ? "red" : "amber";
    return h("li", { "data-step": i, class: i === ro.step ? "current" : null }, badge(cls, label));
  }));
  const active = ro.state === "running" || ro.state === "paused";
  const button = (id, label, action, ask, cls) => h("button", { type: "button", id, class: cls, disabled: off || null,
    onclick: () => act(ask, `${name}'s rollout: ${action}.`, `/api/v1/models/${enc}/rollout/${action}`, {}) }, label);
  const buttons = active ? h("div", { class: "controls" },
    ro.state === "running"
      ? button("rollout-pause", "Pause rollout", "pause", `Pause ${name}'s rollout of v${ro.version}: the canary keeps its share, no step passes or times out.`)
      : button("rollout-resume", "Resume rollout", "resume", `Resume ${name}'s rollout of v${ro.version}; its step starts afresh.`),
    button("rollout-abort", "Abort rollout", "abort", `Abort ${name}'s rollout of v${ro.version}: its canary is cleared (the version is not rejected).`, "danger")) : null;

  const a = status.analysis;
  let analysis;
  if (a) {
    const rows = (a.checks || []).map((c) => h("tr", { "data-check": c.name },
      h("td", {}, c.name.replace(/_/g, " ")), h("td", { class: "num" }, rolloutFix(c.canary)), h("td", { class: "num" }, rolloutFix(c.production)),
      h("td", { class: "num" }, rolloutFix(c.limit)), h("td", {}, badge(c.verdict === "pass" ? "green" : c.verdict === "fail" ? "red" : "grey", c.verdict)),
      h("td", { class: "muted" }, c.note || "")));
    const l = a.loss;
    if (l) {
      const bound = l.lower === undefined ? "(−∞, ∞)" : `[${rolloutFix(l.lower)}, ${rolloutFix(l.upper)}]`;
      rows.push(h("tr", { "data-check": "outcome_mse" },
        h("td", {}, "outcome MSE"), h("td", { class: "num" }, `${rolloutFix(l.canary_mse)} (${l.canary_outcomes})`),
        h("td", { class: "num" }, `${rolloutFix(l.production_mse)} (${l.production_outcomes})`), h("td", { class: "num" }, "×" + (1 + l.margin)),
        h("td", {}, badge(l.verdict === "pass" ? "green" : l.verdict === "fail" ? "red" : "grey", l.verdict)),
        h("td", { class: "muted" }, `D ${rolloutFix(l.diff)} in ${bound} at α ${l.alpha}`)));
    }
    analysis = h("table", { id: "rollout-analysis" },
      h("caption", {}, `${a.phase} phase: `, badge(a.verdict === "pass" ? "green" : a.verdict === "fail" ? "red" : "grey", a.verdict), ` · ${a.canary_requests} canary requests`),
      h("thead", {}, h("tr", {}, ["Check", "Canary", "Production", "Limit", "Verdict", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows));
  } else if (ro.analysis) {
    analysis = h("p", { class: "muted", id: "rollout-last" }, "Last analysis: " + ro.analysis);
  }
  return h("section", { id: "rollout", "data-state": ro.state },
    h("p", {}, `v${ro.version} `, badge(ROLLOUT_BADGE[ro.state] || "grey", ro.state.replace(/_/g, " ")),
      ` · every ${ro.interval}, timeout ${ro.timeout} · started ${when(ro.started_at)} · this step since ${when(ro.step_since)}`,
      ro.reason ? h("span", { class: "muted" }, " · " + ro.reason) : null),
    stepList, analysis, buttons);
}
