package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/registry"
)

type seriesKey struct {
	model   string
	version int
	arm     string
}

type point struct {
	t time.Time
	w Window
}

// NodeState is the last word of a scorer node.
type NodeState struct {
	Node       string    `json:"node"`
	Address    string    `json:"address"`
	Ready      bool      `json:"ready"`
	LastReport time.Time `json:"last_report"`
	Served     []struct {
		Model string `json:"model"`
		Served
	} `json:"served"`
	// LoadErrors are the node's reasons for not serving a model's deployment, by
	// model.
	LoadErrors map[string]string `json:"load_errors,omitempty"`
	// Interval is how often the node reports, in seconds.
	Interval float64 `json:"interval_s"`
	// Silent is set when the node has missed several reports in a row: what it
	// said last, ready included, may no longer hold.
	Silent bool `json:"silent"`
}

// silentAfter is how many report intervals a node may miss before it is silent.
const silentAfter = 5

// Monitor keeps sliding windows of reports and makes the rollback decisions.
type Monitor struct {
	Registry *registry.Registry
	Logger   *slog.Logger
	Now      func() time.Time
	// Window is how far back health and decisions look (default 30 s).
	Window time.Duration
	// Retain is how long points are kept for charts (default 15 min).
	Retain time.Duration

	mu      sync.Mutex
	series  map[seriesKey][]point
	nodes   map[string]*NodeState
	fails   map[seriesKey]int
	alerted map[seriesKey]bool
	cards   map[seriesKey]*artifact.Card // by model and version (arm empty)
	decided int64
}

// New returns a monitor over a registry.
func New(reg *registry.Registry, log *slog.Logger) *Monitor {
	return &Monitor{Registry: reg, Logger: log, Now: time.Now, Window: 30 * time.Second, Retain: 15 * time.Minute,
		series: map[seriesKey][]point{}, nodes: map[string]*NodeState{}, fails: map[seriesKey]int{},
		alerted: map[seriesKey]bool{}, cards: map[seriesKey]*artifact.Card{}}
}

// Ingest stores a report.
func (m *Monitor) Ingest(r Report) {
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	ns := &NodeState{Node: r.Node, Address: r.Address, Ready: r.Ready, LastReport: now, Interval: r.Interval}
	for _, mr := range r.Models {
		if mr.LoadError != "" {
			if ns.LoadErrors == nil {
				ns.LoadErrors = map[string]string{}
			}
			ns.LoadErrors[mr.Model] = mr.LoadError
		}
		for _, s := range mr.Served {
			ns.Served = append(ns.Served, struct {
				Model string `json:"model"`
				Served
			}{mr.Model, s})
		}
		for _, w := range mr.Windows {
			k := seriesKey{mr.Model, w.Version, w.Arm}
			m.series[k] = append(m.series[k], point{now, w})
		}
	}
	m.nodes[r.Node] = ns
	cutoff := now.Add(-m.Retain)
	m.forgetNodesLocked(cutoff)
	for k, ps := range m.series {
		i := sort.Search(len(ps), func(i int) bool { return ps[i].t.After(cutoff) })
		if i == len(ps) {
			delete(m.series, k)
		} else if i > 0 {
			m.series[k] = append(ps[:0:0], ps[i:]...)
		}
	}
}

// forgetNodesLocked drops the nodes silent since before cutoff (m.mu held): a
// scorer gone for good (a replaced pod under a new name) leaves the fleet once
// its charts have aged out too, rather than being listed for ever.
func (m *Monitor) forgetNodesLocked(cutoff time.Time) {
	for name, n := range m.nodes {
		if n.LastReport.Before(cutoff) {
			delete(m.nodes, name)
		}
	}
}

// window merges the points of a series between from and to.
func (m *Monitor) window(k seriesKey, from, to time.Time) Window {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := Window{Version: k.version, Arm: k.arm}
	for _, p := range m.series[k] {
		if p.t.After(from) && !p.t.After(to) {
			w.Add(p.w)
		}
	}
	return w
}

// Fleet returns every node that reported, by name.
func (m *Monitor) Fleet() []NodeState {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetNodesLocked(m.Now().Add(-m.Retain))
	out := make([]NodeState, 0, len(m.nodes))
	now := m.Now()
	for _, n := range m.nodes {
		ns := *n
		every := time.Duration(max(ns.Interval, 1) * float64(time.Second))
		ns.Silent = now.Sub(ns.LastReport) > silentAfter*every
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func (m *Monitor) card(ctx context.Context, model string, version int) *artifact.Card {
	k := seriesKey{model: model, version: version}
	m.mu.Lock()
	c, ok := m.cards[k]
	m.mu.Unlock()
	if ok {
		return c
	}
	v, err := m.Registry.Version(ctx, model, version)
	if err != nil {
		return nil
	}
	c, err = artifact.ParseCard(v.Card)
	if err != nil {
		c = nil
	}
	m.mu.Lock()
	m.cards[k] = c
	m.mu.Unlock()
	return c
}

// ArmHealth is the measured state of one (version, arm) over the window.
type ArmHealth struct {
	Version      int                `json:"version"`
	Arm          string             `json:"arm"`
	Requests     int64              `json:"requests"`
	Rows         int64              `json:"rows"`
	RequestRate  float64            `json:"request_rate"`
	ErrorRate    float64            `json:"error_rate"`
	FallbackRate float64            `json:"fallback_rate"`
	Fallbacks    map[string]int64   `json:"fallbacks,omitempty"`
	P50Ms        float64            `json:"p50_ms"`
	P99Ms        float64            `json:"p99_ms"`
	FeaturePSI   map[string]float64 `json:"feature_psi,omitempty"`
	MaxPSI       float64            `json:"max_feature_psi"`
	MaxPSIFeat   string             `json:"max_feature_psi_name,omitempty"`
	// Drifted lists the features whose drift is established (see Drifted).
	Drifted []string `json:"drifted,omitempty"`
	PredPSI float64  `json:"prediction_psi"`
	// Drift grades the larger PSI whose histogram holds enough rows: green, amber
	// or red (red too when a feature has drifted); too_few_rows while neither
	// does; "" without a reference in the card.
	Drift string `json:"drift"`
	// DriftRows are the rows whose features were counted in the window (large
	// requests count a sample of theirs), or for a shadow run its scores;
	// DriftMinRows how many a grade needs.
	DriftRows    int64 `json:"drift_rows"`
	DriftMinRows int64 `json:"drift_min_rows,omitempty"`
	// featureGraded and predGraded: MaxPSI and PredPSI were taken over enough
	// rows to mean something (what /metrics exports).
	featureGraded, predGraded bool
	// Outcomes joined by feedback, with the model's MSE and MAE against them.
	Outcomes   int64   `json:"outcomes"`
	OutcomeMSE float64 `json:"outcome_mse,omitempty"`
	OutcomeMAE float64 `json:"outcome_mae,omitempty"`
	// ShadowRows and ShadowMeanAbsDiff describe shadow runs of this version.
	ShadowRows       int64   `json:"shadow_rows,omitempty"`
	ShadowP50AbsDiff float64 `json:"shadow_p50_abs_diff,omitempty"`
}

// ModelHealth is GET /api/v1/models/{m}/health.
type ModelHealth struct {
	Model      string          `json:"model"`
	Window     string          `json:"window"`
	Production int             `json:"production"`
	Candidate  int             `json:"candidate,omitempty"`
	Policy     registry.Policy `json:"policy"`
	Arms       []ArmHealth     `json:"arms"`
}

func (m *Monitor) armHealth(ctx context.Context, k seriesKey, w Window, span time.Duration) ArmHealth {
	// Drift stays "" (unknown) unless the version's card has a reference.
	h := ArmHealth{Version: k.version, Arm: k.arm, Requests: w.Requests, Rows: w.Rows, Fallbacks: w.Fallbacks,
		P50Ms: w.QuantileMs(.5), P99Ms: w.QuantileMs(.99)}
	if span > 0 {
		h.RequestRate = float64(w.Requests) / span.Seconds()
	}
	if len(w.ShadowDiff) > 0 {
		var n, seen int64
		for _, c := range w.ShadowDiff {
			n += c
		}
		h.ShadowRows = n
		for i, c := range w.ShadowDiff {
			seen += c
			if seen*2 >= n {
				h.ShadowP50AbsDiff = 1
				if i < len(ShadowDiffEdges) {
					h.ShadowP50AbsDiff = ShadowDiffEdges[i]
				}
				break
			}
		}
	}
	if w.Outcomes > 0 {
		h.Outcomes = w.Outcomes
		h.OutcomeMSE = w.OutcomeSE / float64(w.Outcomes)
		h.OutcomeMAE = w.OutcomeAE / float64(w.Outcomes)
	}
	if w.Requests > 0 {
		h.ErrorRate = float64(w.Errors) / float64(w.Requests)
		h.FallbackRate = float64(w.FallbackCount()) / float64(w.Requests)
	}
	card := m.card(ctx, k.model, k.version)
	if card == nil || card.Reference == nil {
		return h
	}
	// A PSI over few rows is mostly noise (see minPSIRows): it is reported, but
	// graded only once its histogram holds enough rows.
	var graded []float64
	if len(w.Features) > 0 && len(w.Features) == len(card.Features) {
		h.FeaturePSI = map[string]float64{}
		minRows := int64(20 * 11)
		h.DriftRows, h.DriftMinRows = total(w.Features[0]), minRows
		for i, name := range card.Features {
			drifted, psi := Drifted(card.Reference.Features[name].Proportions, w.Features[i], len(card.Features), minRows)
			if drifted {
				h.Drifted = append(h.Drifted, name)
			}
			h.FeaturePSI[name] = round4(psi)
			if psi > h.MaxPSI {
				h.MaxPSI, h.MaxPSIFeat = psi, name
			}
		}
		h.MaxPSI = round4(h.MaxPSI)
		if h.DriftRows >= minRows {
			graded = append(graded, h.MaxPSI)
			h.featureGraded = true
		}
	}
	if ref := card.Reference.Prediction.Proportions; len(ref) > 0 && len(w.RefPrediction) == len(ref) {
		h.PredPSI = round4(PSI(ref, w.RefPrediction))
		rows, minRows := total(w.RefPrediction), int64(20*len(ref))
		if rows >= minRows {
			graded = append(graded, h.PredPSI)
			h.predGraded = true
		}
		if h.DriftMinRows == 0 { // no features counted (a shadow run): the scores
			h.DriftRows, h.DriftMinRows = rows, minRows
		}
	}
	switch {
	case len(h.Drifted) > 0:
		h.Drift = "red"
	case len(graded) > 0:
		h.Drift = Status(slices.Max(graded))
	case h.FeaturePSI != nil || w.RefPrediction != nil:
		h.Drift = DriftTooFewRows
	}
	return h
}

// NoModel names version 0 where people read it: the answers the rules gave
// before any version was loaded.
const NoModel = "rules, no model"

// DriftTooFewRows is the drift grade of a window whose histograms hold too few
// rows for their PSI to mean anything.
const DriftTooFewRows = "too_few_rows"

func total(counts []int64) int64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
}

func round4(v float64) float64 { return float64(int64(v*1e4+0.5)) / 1e4 }

// Health measures every (version, arm) of a model that reported in the window.
func (m *Monitor) Health(ctx context.Context, model string) (*ModelHealth, error) {
	md, err := m.Registry.Model(ctx, model)
	if err != nil {
		return nil, err
	}
	now := m.Now()
	out := &ModelHealth{Model: model, Window: m.Window.String(), Production: md.Production, Policy: md.EffectivePolicy(), Arms: []ArmHealth{}}
	if md.Candidate != nil {
		out.Candidate = md.Candidate.Version
	}
	m.mu.Lock()
	var keys []seriesKey
	for k := range m.series {
		if k.model == model {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].version != keys[j].version {
			return keys[i].version > keys[j].version
		}
		return keys[i].arm < keys[j].arm
	})
	for _, k := range keys {
		w := m.window(k, now.Add(-m.Window), now)
		if w.Requests == 0 && w.Outcomes == 0 && w.Rows == 0 {
			continue
		}
		out.Arms = append(out.Arms, m.armHealth(ctx, k, w, m.Window))
	}
	return out, nil
}

// SeriesPoint is one step of a chart.
type SeriesPoint struct {
	Time time.Time `json:"time"`
	ArmHealth
}

// Series returns per-step health of each (version, arm) of a model over the last
// span, for the dashboard's charts and drift heatmap.
func (m *Monitor) Series(ctx context.Context, model string, span, step time.Duration) map[string][]SeriesPoint {
	now := m.Now()
	out := map[string][]SeriesPoint{}
	m.mu.Lock()
	var keys []seriesKey
	for k := range m.series {
		if k.model == model {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	for _, k := range keys {
		name := fmt.Sprintf("v%d/%s", k.version, k.arm)
		if k.version == 0 {
			// The rules answer before any model as the champion: the arm says
			// nothing more, and "rules, no model/champion" reads badly.
			name = NoModel
			if k.arm != "champion" {
				name += " (" + k.arm + ")"
			}
		}
		for t := now.Add(-span); t.Before(now); t = t.Add(step) {
			w := m.window(k, t, t.Add(step))
			out[name] = append(out[name], SeriesPoint{Time: t.Add(step), ArmHealth: m.armHealth(ctx, k, w, step)})
		}
	}
	return out
}

// Run evaluates every model each interval until ctx is done.
func (m *Monitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Evaluate(ctx)
		}
	}
}

// Decisions counts automatic decisions taken.
func (m *Monitor) Decisions() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.decided
}

// Evaluate checks every model once against its policy.
func (m *Monitor) Evaluate(ctx context.Context) {
	models, err := m.Registry.Models(ctx)
	if err != nil {
		m.Logger.Error("monitor: list models", "err", err)
		return
	}
	judged, watched := map[seriesKey]bool{}, map[seriesKey]bool{}
	for _, md := range models {
		m.evaluate(ctx, md, judged, watched)
	}
	// A count of failing evaluations is of consecutive ones: an arm that was not
	// judged this round (rolled back by hand, its bake over, its canary
	// cleared) starts again from none, should it be promoted again. Likewise a
	// drift alert stands for one stretch as the settled production version: back
	// in production later, a version still drifting is alerted anew.
	m.mu.Lock()
	for k := range m.fails {
		if !judged[k] {
			delete(m.fails, k)
		}
	}
	for k := range m.alerted {
		if !watched[k] {
			delete(m.alerted, k)
		}
	}
	m.mu.Unlock()
}

func (m *Monitor) evaluate(ctx context.Context, md registry.Model, judged, watched map[seriesKey]bool) {
	now := m.Now()
	pol := md.EffectivePolicy()
	if md.Production > 0 {
		k := seriesKey{md.Name, md.Production, "champion"}
		baking := now.Sub(md.PromotedAt) < time.Duration(pol.BakeTime)
		from := now.Add(-m.Window)
		if md.PromotedAt.After(from) {
			from = md.PromotedAt
		}
		w := m.window(k, from, now)
		if baking {
			reason := m.breach(ctx, md, k, w, pol, md.PromotedAt)
			judged[k] = true
			m.decide(ctx, k, reason, pol, registry.Decision{Model: md.Name, Version: md.Production})
		} else {
			watched[k] = true
			m.driftAlert(ctx, md, k, w, pol)
		}
	}
	if md.Candidate != nil && md.Candidate.Mode == registry.ModeAB {
		k := seriesKey{md.Name, md.Candidate.Version, "challenger"}
		// Its traffic since it became the canary, as production's since its promotion.
		from := now.Add(-m.Window)
		if md.Candidate.Since.After(from) {
			from = md.Candidate.Since
		}
		w := m.window(k, from, now)
		reason := m.breach(ctx, md, k, w, pol, time.Time{})
		judged[k] = true
		m.decide(ctx, k, reason, pol, registry.Decision{Model: md.Name, Version: md.Candidate.Version, Candidate: true})
	}
}

// breach returns why w breaks the policy, or "" when it does not (or has too few
// samples to say).
func (m *Monitor) breach(ctx context.Context, md registry.Model, k seriesKey, w Window, pol registry.Policy, promotedAt time.Time) string {
	if w.Requests < pol.MinSamples {
		return ""
	}
	h := m.armHealth(ctx, k, w, 0)
	switch {
	case h.ErrorRate > pol.MaxErrorRate:
		return fmt.Sprintf("error rate %.3f > %.3f over %d requests", h.ErrorRate, pol.MaxErrorRate, w.Requests)
	case h.FallbackRate > pol.MaxFallbackRate:
		return fmt.Sprintf("fallback rate %.3f > %.3f over %d requests (%v)", h.FallbackRate, pol.MaxFallbackRate, w.Requests, w.Fallbacks)
	case h.P99Ms > pol.MaxP99Ms:
		return fmt.Sprintf("p99 latency %.1f ms > %.1f ms over %d requests", h.P99Ms, pol.MaxP99Ms, w.Requests)
	}
	// Prediction drift against the version it replaced, on the traffic it saw
	// just before the promotion.
	if !promotedAt.IsZero() && len(md.Previous) > 0 {
		prev := seriesKey{md.Name, md.Previous[len(md.Previous)-1], "champion"}
		before := m.window(prev, promotedAt.Add(-m.Window), promotedAt)
		if n := minPSIRows(len(w.Prediction), pol); before.Rows >= n && w.Rows >= n {
			psi := PSICounts(before.Prediction, w.Prediction)
			if psi > pol.MaxPredPSI {
				return fmt.Sprintf("prediction PSI %.3f > %.3f against v%d on the same traffic (%d vs %d requests)", psi, pol.MaxPredPSI, prev.version, w.Requests, before.Requests)
			}
		}
	}
	return ""
}

func (m *Monitor) decide(ctx context.Context, k seriesKey, reason string, pol registry.Policy, d registry.Decision) {
	m.mu.Lock()
	if reason == "" {
		delete(m.fails, k)
		m.mu.Unlock()
		return
	}
	m.fails[k]++
	n := m.fails[k]
	m.mu.Unlock()
	if n < pol.FailureLimit {
		return
	}
	d.Reason = fmt.Sprintf("%s; %d consecutive failing evaluations (limit %d)", reason, n, pol.FailureLimit)
	ev, err := m.Registry.AutoRollback(ctx, d)
	if err != nil {
		if !errors.Is(err, registry.ErrConflict) {
			m.Logger.Error("monitor: automatic rollback failed", "model", d.Model, "version", d.Version, "err", err)
		}
		return
	}
	m.mu.Lock()
	delete(m.fails, k)
	m.decided++
	m.mu.Unlock()
	m.Logger.Warn("monitor: automatic decision", "model", d.Model, "kind", ev.Kind, "from", ev.From, "to", ev.To, "reason", d.Reason)
}

// driftAlert raises one drift_alert event when a settled version's input drifts
// past PSIAct, and re-arms once it falls below PSIWarn.
func (m *Monitor) driftAlert(ctx context.Context, md registry.Model, k seriesKey, w Window, pol registry.Policy) {
	if w.Rows < minPSIRows(11, pol) {
		return
	}
	h := m.armHealth(ctx, k, w, 0)
	m.mu.Lock()
	already := m.alerted[k]
	if len(h.Drifted) == 0 && h.MaxPSI < PSIWarn {
		delete(m.alerted, k)
	}
	m.mu.Unlock()
	if already || len(h.Drifted) == 0 {
		return
	}
	reason := fmt.Sprintf("input drift on v%d over %d rows: %s (largest PSI %.3f on %s; warn %.2f, act %.2f; KS at %.4g with Bonferroni)",
		k.version, w.Rows, strings.Join(h.Drifted, ", "), h.MaxPSI, h.MaxPSIFeat, PSIWarn, PSIAct, DriftAlpha)
	if _, err := m.Registry.Alert(ctx, md.Name, k.version, registry.EventDriftAlert, reason); err != nil {
		m.Logger.Error("monitor: drift alert", "err", err)
		return
	}
	m.mu.Lock()
	m.alerted[k] = true
	m.mu.Unlock()
}

// minPSIRows is the sample size below which a PSI over bins is mostly noise: its
// expected value on identical distributions is about (bins−1)/n per side, so 20
// rows a bin keep that under 0.1, the warning level.
func minPSIRows(bins int, pol registry.Policy) int64 {
	return max(pol.MinSamples, int64(20*bins))
}
