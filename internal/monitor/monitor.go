package monitor

import (
	"context"
	"errors"
	"fmt"
	"github.com/modelops/modelops/internal/monitor/report"
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
	t    time.Time
	w    report.Window
	size int64
	// thinned is set on a point that merges a minute of older points (see
	// thinLocked); thinned points come first in a series.
	thinned bool
}

// FineFor is how long a series keeps a point a second; older points are
// thinned to one a minute, kept up to Retain: 900 + 1,380 points a series over
// the default 24 hours, where a point a second would be 86,400.
const FineFor = 15 * time.Minute

// nodeSlot is one node's counts of one judged series over one slot of time,
// enough to say whether that node alone sees a breach (see corroborate).
type nodeSlot struct {
	t                                        time.Time
	requests, errors, fallbacks, timed, fast int64
	prediction                               [report.PredictionBins]int64
}

// nodeSlotBytes is what one nodeSlot costs, for the budget.
const nodeSlotBytes = 216

// nodeSlots is how many slots of a node's counts are kept per judged series:
// the decision window in that many steps of at least a second. At 15 slots of
// 216 bytes, 1,000 nodes each serving 50 judged versions hold 162 MB at
// worst; one version on each, 3 MB.
const nodeSlots = 15

// NodeState is the last word of a scorer node.
type NodeState struct {
	Node       string    `json:"node"`
	Address    string    `json:"address"`
	Ready      bool      `json:"ready"`
	LastReport time.Time `json:"last_report"`
	Served     []struct {
		Model string `json:"model"`
		report.Served
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
// What it keeps is bounded whatever is reported (see Monitor.MaxNodes, MaxSeries,
// MaxBytes): the points of a series are merged per second across nodes, and
// each node's own counts are kept only for the judged arms over the decision
// window, to corroborate a breach.
type Monitor struct {
	Registry *registry.Registry
	Logger   *slog.Logger
	Now      func() time.Time
	// Window is how far back health and decisions look (default 30 s).
	Window time.Duration
	// Retain is how long points are kept for charts (default 24 h): a point a
	// second for the last FineFor, a point a minute before that.
	Retain time.Duration
	// MaxBytes bounds the counts kept (default DefaultMaxBytes); past it the
	// oldest chart points are dropped first.
	MaxBytes int64
	// Grace is how long a version that left a deployment is still taken in
	// reports (default DefaultGrace).
	Grace time.Duration
	// MaxNodes bounds the scorer nodes followed at once (default
	// DefaultMaxNodes).
	MaxNodes int

	mu        sync.Mutex
	series    map[seriesKey][]point
	perNode   map[seriesKey]map[string][]nodeSlot
	nodes     map[string]*NodeState
	fails     map[seriesKey]int
	alerted   map[seriesKey]bool
	cards     map[seriesKey]*artifact.Card // by model and version (arm empty)
	deployed  map[string]map[int]time.Time // by model: when each version was last seen deployed
	limits    map[string]float64           // by model: the p99 limit of its policy, last read
	baselines map[string]*baseline         // by model, while production bakes
	retained  int64                        // bytes of series points and node slots
	decided   map[decisionKey]int64
	analyses  map[string]Analysis // by model: the latest rollout analysis
}

// New returns a monitor over a registry.
func New(reg *registry.Registry, log *slog.Logger) *Monitor {
	return &Monitor{Registry: reg, Logger: log, Now: time.Now, Window: 30 * time.Second, Retain: 24 * time.Hour,
		MaxBytes: DefaultMaxBytes, Grace: DefaultGrace,
		series: map[seriesKey][]point{}, perNode: map[seriesKey]map[string][]nodeSlot{}, nodes: map[string]*NodeState{},
		fails: map[seriesKey]int{}, alerted: map[seriesKey]bool{}, cards: map[seriesKey]*artifact.Card{},
		deployed: map[string]map[int]time.Time{}, limits: map[string]float64{}, baselines: map[string]*baseline{}}
}

func (m *Monitor) maxNodes() int {
	if m.MaxNodes > 0 {
		return m.MaxNodes
	}
	return DefaultMaxNodes
}

// Usage is what the monitor holds: nodes, series, chart points, node slots,
// and the bytes of their counts (an estimate that the budget is held to).
type Usage struct {
	Nodes     int   `json:"nodes"`
	Series    int   `json:"series"`
	Points    int   `json:"points"`
	NodeSlots int   `json:"node_slots"`
	Bytes     int64 `json:"bytes"`
}

// Usage reports what the monitor holds now.
func (m *Monitor) Usage() Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := Usage{Nodes: len(m.nodes), Series: len(m.series), Bytes: m.retained}
	for _, ps := range m.series {
		u.Points += len(ps)
	}
	for _, byNode := range m.perNode {
		for _, sl := range byNode {
			u.NodeSlots += len(sl)
		}
	}
	return u
}

// windowBytes estimates what a window's counts cost in memory.
func windowBytes(w report.Window) int64 {
	n := int64(200) // the struct, its slice headers and the point around it
	n += 8 * int64(len(w.Latency)+len(w.Prediction)+len(w.RefPrediction)+len(w.ShadowDiff))
	for _, f := range w.Features {
		n += 24 + 8*int64(len(f))
	}
	for k := range w.Fallbacks {
		n += 64 + int64(len(k))
	}
	return n
}

// clone copies a window's counts, so that merging into it leaves the
// reported one alone.
func clone(w report.Window) report.Window {
	c := report.Window{Version: w.Version, Arm: w.Arm}
	c.Add(w)
	return c
}

// Ingest stores a report as it is; Admit it first (the API does).
func (m *Monitor) Ingest(r report.Report) {
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
				report.Served
			}{mr.Model, s})
		}
		for _, w := range mr.Windows {
			k := seriesKey{mr.Model, w.Version, w.Arm}
			m.addPointLocked(k, now, w)
			if w.Version > 0 && (w.Arm == "champion" || w.Arm == "challenger") {
				m.addNodeSlotLocked(k, r.Node, now, w)
			}
		}
	}
	if _, known := m.nodes[r.Node]; !known && len(m.nodes) >= m.maxNodes() {
		m.forgetNodesLocked(now.Add(-m.nodeMemory()))
		m.dropStalestNodeLocked()
	}
	m.nodes[r.Node] = ns
	m.forgetNodesLocked(now.Add(-m.nodeMemory()))
	cutoff := now.Add(-m.Retain)
	for k, ps := range m.series {
		i := sort.Search(len(ps), func(i int) bool { return ps[i].t.After(cutoff) })
		for _, p := range ps[:i] {
			m.retained -= p.size
		}
		if i == len(ps) {
			delete(m.series, k)
			continue
		} else if i > 0 {
			ps = append(ps[:0:0], ps[i:]...)
		}
		m.series[k] = m.thinLocked(ps, now.Add(-FineFor))
	}
	nodeCutoff := now.Add(-m.Window - m.slotStep())
	for k, byNode := range m.perNode {
		for node, sl := range byNode {
			i := sort.Search(len(sl), func(i int) bool { return sl[i].t.After(nodeCutoff) })
			m.retained -= int64(i) * nodeSlotBytes
			if i == len(sl) {
				delete(byNode, node)
			} else if i > 0 {
				byNode[node] = append(sl[:0:0], sl[i:]...)
			}
		}
		if len(byNode) == 0 {
			delete(m.perNode, k)
		}
	}
	m.holdBudgetLocked()
}

// thinLocked merges the points of ps older than horizon into one point per
// minute (the minute of the wall clock), each the sum of the counts it merges
// and stamped with the time of its newest: sums and counts over any span of
// whole minutes are what they were. Points already thinned are left alone, so
// a report costs the points that aged past horizon since the last one.
func (m *Monitor) thinLocked(ps []point, horizon time.Time) []point {
	j := sort.Search(len(ps), func(i int) bool { return !ps[i].thinned })
	out := j // ps[:out] are thinned points
	for ; j < len(ps) && ps[j].t.Before(horizon); j++ {
		if out > 0 && ps[out-1].t.Truncate(time.Minute).Equal(ps[j].t.Truncate(time.Minute)) {
			p := &ps[out-1]
			p.w.Add(ps[j].w)
			p.t = ps[j].t
			size := windowBytes(p.w)
			m.retained += size - p.size - ps[j].size
			p.size = size
			continue
		}
		ps[out] = ps[j]
		ps[out].thinned = true
		out++
	}
	if out == j {
		return ps
	}
	n := copy(ps[out:], ps[j:])
	clear(ps[out+n:]) // the merged counts are freed, not kept by the array
	return ps[:out+n]
}

// slotStep is the time one node slot covers: the window in nodeSlots steps,
// a second at least.
func (m *Monitor) slotStep() time.Duration {
	return max(time.Second, m.Window/nodeSlots)
}

// addPointLocked merges w into its series: into the last point when that is
// of the same second (so that a series holds a point a second, however many
// nodes report), else as a new point.
func (m *Monitor) addPointLocked(k seriesKey, now time.Time, w report.Window) {
	ps, ok := m.series[k]
	if n := len(ps); n > 0 && ps[n-1].t.Unix() == now.Unix() {
		p := &ps[n-1]
		p.w.Add(w)
		p.t = now
		size := windowBytes(p.w)
		m.retained += size - p.size
		p.size = size
		return
	}
	if !ok && len(m.series) >= MaxSeries {
		m.dropStalestSeriesLocked()
	}
	p := point{t: now, w: clone(w)}
	p.size = windowBytes(p.w)
	m.retained += p.size
	m.series[k] = append(ps, p)
}

// addNodeSlotLocked adds w to the node's own counts of a judged series.
func (m *Monitor) addNodeSlotLocked(k seriesKey, node string, now time.Time, w report.Window) {
	byNode := m.perNode[k]
	if byNode == nil {
		byNode = map[string][]nodeSlot{}
		m.perNode[k] = byNode
	}
	var timed, fast int64
	for _, c := range w.Latency {
		timed += c
	}
	fast = fastCount(w.Latency, m.p99Limit(k.model))
	sl := byNode[node]
	step := m.slotStep()
	var s *nodeSlot
	if n := len(sl); n > 0 && now.Truncate(step).Equal(sl[n-1].t.Truncate(step)) {
		s = &sl[n-1]
	} else {
		byNode[node] = append(sl, nodeSlot{})
		s = &byNode[node][len(sl)]
		m.retained += nodeSlotBytes
	}
	s.t = now
	s.requests += w.Requests
	s.errors += w.Errors
	s.fallbacks += w.FallbackCount()
	s.timed += timed
	s.fast += fast
	if len(w.Prediction) == report.PredictionBins {
		for i, c := range w.Prediction {
			s.prediction[i] += c
		}
	}
}

// p99Limit is the model's p99 limit as the monitor last read its policy (the
// default policy's until then): a node's counts keep how many of its
// requests were answered within it.
func (m *Monitor) p99Limit(model string) float64 {
	if l, ok := m.limits[model]; ok {
		return l
	}
	return registry.DefaultPolicy().MaxP99Ms
}

// fastCount is how many requests of a latency histogram were answered within
// limitMs: those in buckets whose upper edge is at most limitMs.
func fastCount(latency []int64, limitMs float64) int64 {
	var n int64
	for i, c := range latency {
		if i < len(report.LatencyBucketsMs) && report.LatencyBucketsMs[i] <= limitMs {
			n += c
		}
	}
	return n
}

// dropStalestSeriesLocked forgets the series whose last point is the oldest.
func (m *Monitor) dropStalestSeriesLocked() {
	var stalest seriesKey
	var at time.Time
	found := false
	for k, ps := range m.series {
		if t := ps[len(ps)-1].t; !found || t.Before(at) {
			stalest, at, found = k, t, true
		}
	}
	if found {
		for _, p := range m.series[stalest] {
			m.retained -= p.size
		}
		delete(m.series, stalest)
	}
}

// dropStalestNodeLocked forgets the node heard from least recently, and its
// counts.
func (m *Monitor) dropStalestNodeLocked() {
	var stalest string
	var at time.Time
	for name, n := range m.nodes {
		if stalest == "" || n.LastReport.Before(at) {
			stalest, at = name, n.LastReport
		}
	}
	delete(m.nodes, stalest)
	for _, byNode := range m.perNode {
		m.retained -= int64(len(byNode[stalest])) * nodeSlotBytes
		delete(byNode, stalest)
	}
}

// holdBudgetLocked drops the oldest chart points while the counts kept pass
// MaxBytes: charts lose their far end before decisions lose their window.
func (m *Monitor) holdBudgetLocked() {
	for m.retained > m.MaxBytes {
		var oldest seriesKey
		var at time.Time
		found := false
		for k, ps := range m.series {
			if t := ps[0].t; !found || t.Before(at) {
				oldest, at, found = k, t, true
			}
		}
		if !found {
			return
		}
		ps := m.series[oldest]
		// Drop every point of that second and older in one go.
		i := sort.Search(len(ps), func(i int) bool { return ps[i].t.After(at) })
		i = max(i, 1)
		for _, p := range ps[:i] {
			m.retained -= p.size
		}
		clear(ps[:i]) // the dropped counts are freed, not kept by the array
		if i == len(ps) {
			delete(m.series, oldest)
		} else {
			m.series[oldest] = ps[i:]
		}
	}
}

// nodeMemory is how long a silent node is still listed: as long as the
// charts keep a point a second, at most Retain.
func (m *Monitor) nodeMemory() time.Duration {
	return min(m.Retain, FineFor)
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
func (m *Monitor) window(k seriesKey, from, to time.Time) report.Window {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := report.Window{Version: k.version, Arm: k.arm}
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
	m.forgetNodesLocked(m.Now().Add(-m.nodeMemory()))
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

func (m *Monitor) armHealth(ctx context.Context, k seriesKey, w report.Window, span time.Duration) ArmHealth {
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
				if i < len(report.ShadowDiffEdges) {
					h.ShadowP50AbsDiff = report.ShadowDiffEdges[i]
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
	for _, k := range m.modelKeys(model) {
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

// MaxSeriesShown bounds the series of one model in a Series or Health answer:
// the newest versions first.
const MaxSeriesShown = 16

// modelKeys are the series of a model, newest version first, at most
// MaxSeriesShown of them.
func (m *Monitor) modelKeys(model string) []seriesKey {
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
	return keys[:min(len(keys), MaxSeriesShown)]
}

// Series returns per-step health of each (version, arm) of a model over the last
// span, for the dashboard's charts and drift heatmap: at most MaxSeriesShown
// series of span/step points each, whatever was reported.
func (m *Monitor) Series(ctx context.Context, model string, span, step time.Duration) map[string][]SeriesPoint {
	now := m.Now()
	out := map[string][]SeriesPoint{}
	for _, k := range m.modelKeys(model) {
		name := fmt.Sprintf("v%d/%s", k.version, k.arm)
		if k.version == 0 {
			// The rules answer before any model as the champion: the arm says
			// nothing more, and "rules, no model/champion" reads badly.
			name = NoModel
			if k.arm != "champion" {
				name += " (" + k.arm + ")"
			}
		}
		var times []time.Time
		for t := now.Add(-span); t.Before(now); t = t.Add(step) {
			times = append(times, t)
		}
		ws := make([]report.Window, len(times))
		m.mu.Lock()
		ps := m.series[k]
		for i, t := range times {
			ws[i] = report.Window{Version: k.version, Arm: k.arm}
			// Points are in time order: those in (t, t+step].
			j := sort.Search(len(ps), func(j int) bool { return ps[j].t.After(t) })
			for ; j < len(ps) && !ps[j].t.After(t.Add(step)); j++ {
				ws[i].Add(ps[j].w)
			}
		}
		m.mu.Unlock()
		for i, t := range times {
			out[name] = append(out[name], SeriesPoint{Time: t.Add(step), ArmHealth: m.armHealth(ctx, k, ws[i], step)})
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

// decisionKey is what an automatic decision is counted under: the model and
// the event's kind (auto_rollback, canary_cleared, drift_alert…).
type decisionKey struct{ model, kind string }

// Decisions counts automatic decisions taken, in all.
func (m *Monitor) Decisions() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, c := range m.decided {
		n += c
	}
	return n
}

// decisionCounts copies the counts of automatic decisions by model and kind.
func (m *Monitor) decisionCounts() map[decisionKey]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[decisionKey]int64, len(m.decided))
	for k, c := range m.decided {
		out[k] = c
	}
	return out
}

// count records one automatic decision; m.mu is held.
func (m *Monitor) count(model, kind string) {
	if m.decided == nil {
		m.decided = map[decisionKey]int64{}
	}
	m.decided[decisionKey{model, kind}]++
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
	defer m.stepRollout(ctx, md)
	now := m.Now()
	pol := md.EffectivePolicy()
	m.mu.Lock()
	m.limits[md.Name] = pol.MaxP99Ms
	m.mu.Unlock()
	if md.Production > 0 {
		k := seriesKey{md.Name, md.Production, "champion"}
		baking := now.Sub(md.PromotedAt) < time.Duration(pol.BakeTime)
		from := now.Add(-m.Window)
		if md.PromotedAt.After(from) {
			from = md.PromotedAt
		}
		w := m.window(k, from, now)
		if baking {
			m.takeBaseline(md)
			reason := m.breach(ctx, md, k, w, pol, from, md.PromotedAt)
			judged[k] = true
			m.decide(ctx, k, reason, pol, registry.Decision{Model: md.Name, Version: md.Production})
		} else {
			m.mu.Lock()
			delete(m.baselines, md.Name)
			m.mu.Unlock()
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
		reason := m.breach(ctx, md, k, w, pol, from, time.Time{})
		judged[k] = true
		m.decide(ctx, k, reason, pol, registry.Decision{Model: md.Name, Version: md.Candidate.Version, Candidate: true})
	}
}

// breach returns why w (the series k since from) breaks the policy, or "" when
// it does not (or has too few samples to say). A breach of the error, fallback
// or latency limit must be seen by enough nodes on their own traffic (see
// corroborate).
func (m *Monitor) breach(ctx context.Context, md registry.Model, k seriesKey, w report.Window, pol registry.Policy, from, promotedAt time.Time) string {
	if w.Requests < pol.MinSamples {
		return ""
	}
	if reason := m.corroborate(k, w, pol, from); reason != "" {
		return reason
	}
	// Prediction drift against the version it replaced, on the traffic it saw
	// just before the promotion: each node's against its own.
	if !promotedAt.IsZero() && len(md.Previous) > 0 {
		return m.corroboratePSI(md, k, pol, from, promotedAt)
	}
	return ""
}

// baseline holds, per node, the prediction counts of the version production
// replaced over the window before the promotion: each node's predictions of
// the new version are compared with its own of the old, on the same traffic.
// (A node can skew only its own.)
type baseline struct {
	promotedAt time.Time
	version    int
	byNode     map[string][report.PredictionBins]int64
}

// takeBaseline notes, once per promotion, the baseline of md's production
// from the node counts of the version before it.
func (m *Monitor) takeBaseline(md registry.Model) {
	if len(md.Previous) == 0 {
		return
	}
	prev := md.Previous[len(md.Previous)-1]
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.baselines[md.Name]; b != nil && b.promotedAt.Equal(md.PromotedAt) && b.version == prev {
		return
	}
	b := &baseline{promotedAt: md.PromotedAt, version: prev, byNode: map[string][report.PredictionBins]int64{}}
	from := md.PromotedAt.Add(-m.Window)
	for node, sl := range m.perNode[seriesKey{md.Name, prev, "champion"}] {
		var counts [report.PredictionBins]int64
		for _, s := range sl {
			if s.t.After(from) && !s.t.After(md.PromotedAt) {
				for i, c := range s.prediction {
					counts[i] += c
				}
			}
		}
		b.byNode[node] = counts
	}
	m.baselines[md.Name] = b
}

// corroboratePSI returns why production's predictions since from are too far
// from the version it replaced, or "": as corroborate, enough nodes serving
// it must each see it, comparing their own predictions before and after.
func (m *Monitor) corroboratePSI(md registry.Model, k seriesKey, pol registry.Policy, from, promotedAt time.Time) string {
	prev := md.Previous[len(md.Previous)-1]
	n := minPSIRows(report.PredictionBins, pol)
	tallies := m.tallies(k, from)
	m.mu.Lock()
	b := m.baselines[md.Name]
	var base map[string][report.PredictionBins]int64
	if b != nil && b.promotedAt.Equal(promotedAt) && b.version == prev {
		base = b.byNode
	}
	m.mu.Unlock()
	need := min(pol.CorroboratingNodes, len(tallies))
	// Each node's share of the rows a pooled PSI would need, but no fewer than
	// 10 a bin: below that a PSI is mostly noise.
	if len(tallies) > 0 {
		n = max(n/int64(len(tallies)), 10*report.PredictionBins)
	}
	var names []string
	var before, after [report.PredictionBins]int64
	for _, t := range tallies {
		own, old := t.prediction, base[t.node]
		if total(own[:]) < n || total(old[:]) < n || PSICounts(old[:], own[:]) <= pol.MaxPredPSI {
			continue
		}
		names = append(names, t.node)
		for i := range own {
			before[i] += old[i]
			after[i] += own[i]
		}
	}
	if len(names) == 0 || len(names) < need {
		return ""
	}
	return fmt.Sprintf("prediction PSI %.3f > %.3f against v%d on the same traffic (%d vs %d rows), seen by %d of %d nodes serving it (%s; %d needed)",
		PSICounts(before[:], after[:]), pol.MaxPredPSI, prev, total(after[:]), total(before[:]), len(names), len(tallies), nodeList(names), need)
}

// nodeList names the first few nodes of names, for an event's reason.
func nodeList(names []string) string {
	const shown = 5
	var b strings.Builder
	for i, n := range names {
		if i == shown {
			fmt.Fprintf(&b, " and %d more", len(names)-shown)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(truncate(n, 64))
	}
	return b.String()
}

// nodeTally is one node's counts of a judged series over a decision window.
type nodeTally struct {
	node                                     string
	requests, errors, fallbacks, timed, fast int64
	prediction                               [report.PredictionBins]int64
}

// tallies are the nodes' own counts of the series k since from, by node name.
func (m *Monitor) tallies(k seriesKey, from time.Time) []nodeTally {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []nodeTally
	for node, sl := range m.perNode[k] {
		t := nodeTally{node: node}
		for _, s := range sl {
			if s.t.After(from) {
				t.requests += s.requests
				t.errors += s.errors
				t.fallbacks += s.fallbacks
				t.timed += s.timed
				t.fast += s.fast
				for i, c := range s.prediction {
					t.prediction[i] += c
				}
			}
		}
		if t.requests > 0 {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node < out[j].node })
	return out
}

// corroborate returns why the series breaks its error, fallback or latency
// limit, or "". A version served by two nodes or more is in breach only when
// at least pol.CorroboratingNodes of them (all of them, when fewer serve it)
// each see the breach on their own traffic: one node, or one stolen scorer
// token, cannot roll back what others serve well. The reason gives the
// numbers of the nodes in breach, and names them.
func (m *Monitor) corroborate(k seriesKey, w report.Window, pol registry.Policy, from time.Time) string {
	tallies := m.tallies(k, from)
	if len(tallies) == 0 {
		// Counts without a node's own (none reported since): the pooled ones.
		tallies = []nodeTally{{requests: w.Requests, errors: w.Errors, fallbacks: w.FallbackCount()}}
		for _, c := range w.Latency {
			tallies[0].timed += c
		}
		tallies[0].fast = fastCount(w.Latency, pol.MaxP99Ms)
	}
	need := min(pol.CorroboratingNodes, len(tallies))
	// A node's own window must hold a fair share of the samples for its rates
	// to mean anything.
	minOwn := max(1, pol.MinSamples/int64(2*len(tallies)))
	limits := []struct {
		breaks func(t nodeTally) bool
		say    func(t nodeTally) string
	}{
		{func(t nodeTally) bool { return float64(t.errors) > pol.MaxErrorRate*float64(t.requests) },
			func(t nodeTally) string {
				return fmt.Sprintf("error rate %.3f > %.3f over %d requests", float64(t.errors)/float64(t.requests), pol.MaxErrorRate, t.requests)
			}},
		{func(t nodeTally) bool { return float64(t.fallbacks) > pol.MaxFallbackRate*float64(t.requests) },
			func(t nodeTally) string {
				return fmt.Sprintf("fallback rate %.3f > %.3f over %d requests (%v)", float64(t.fallbacks)/float64(t.requests), pol.MaxFallbackRate, t.requests, w.Fallbacks)
			}},
		{func(t nodeTally) bool { return t.timed > 0 && t.fast < max(1, int64(0.99*float64(t.timed)+0.5)) },
			func(t nodeTally) string {
				return fmt.Sprintf("p99 latency > %.1f ms (%d of %d requests slower) over %d requests", pol.MaxP99Ms, t.timed-t.fast, t.timed, t.requests)
			}},
	}
	for _, l := range limits {
		var in nodeTally
		var names []string
		for _, t := range tallies {
			if t.requests >= minOwn && l.breaks(t) {
				in.requests += t.requests
				in.errors += t.errors
				in.fallbacks += t.fallbacks
				in.timed += t.timed
				in.fast += t.fast
				names = append(names, t.node)
			}
		}
		if len(names) == 0 || len(names) < need {
			continue
		}
		reason := l.say(in)
		if len(tallies) > 1 || tallies[0].node != "" {
			reason += fmt.Sprintf(", seen by %d of %d nodes serving it (%s; %d needed)", len(names), len(tallies), nodeList(names), need)
		}
		return reason
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
	m.count(d.Model, string(ev.Kind))
	m.mu.Unlock()
	m.Logger.Warn("monitor: automatic decision", "model", d.Model, "kind", ev.Kind, "from", ev.From, "to", ev.To, "reason", d.Reason)
}

// driftAlert raises one drift_alert event when a settled version's input drifts
// past PSIAct, and re-arms once it falls below PSIWarn.
func (m *Monitor) driftAlert(ctx context.Context, md registry.Model, k seriesKey, w report.Window, pol registry.Policy) {
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
	m.count(md.Name, string(registry.EventDriftAlert))
	m.mu.Unlock()
}

// minPSIRows is the sample size below which a PSI over bins is mostly noise: its
// expected value on identical distributions is about (bins−1)/n per side, so 20
// rows a bin keep that under 0.1, the warning level.
func minPSIRows(bins int, pol registry.Policy) int64 {
	return max(pol.MinSamples, int64(20*bins))
}
