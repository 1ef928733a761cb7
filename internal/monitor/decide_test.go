package monitor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.InitORT()
	os.Exit(m.Run())
}

// setup opens a registry with two pushed versions of calling-score whose cards
// carry a reference (uniform deciles on every feature), v1 promoted.
func setup(t *testing.T) (*registry.Registry, *monitor.Monitor, *time.Time) {
	t.Helper()
	reg, _ := testutil.MustRegistry(t)
	now := time.Unix(1_000_000, 0)
	reg.Now = func() time.Time { return now }
	ref := &artifact.Reference{Features: map[string]artifact.Histogram{}, Prediction: artifact.Histogram{Edges: []float64{.5}, Proportions: []float64{.5, .5}}}
	var names []string
	for i := 0; i < 39; i++ {
		n := "f" + string(rune('A'+i))
		names = append(names, n)
		ref.Features[n] = artifact.Histogram{Edges: []float64{.1, .2, .3, .4, .5, .6, .7, .8, .9}, Proportions: []float64{.1, .1, .1, .1, .1, .1, .1, .1, .1, .1}}
	}
	for seed := uint64(1); seed <= 2; seed++ {
		m := testutil.MustModel(t, seed)
		var card artifact.Card
		json.Unmarshal(m.Card, &card)
		card.Features, card.Reference = names, ref
		raw, _ := json.Marshal(card)
		data, _ := os.ReadFile(m.Path)
		if _, err := reg.Push(context.Background(), registry.PushRequest{Model: "calling-score", Digest: m.Digest, Artifact: bytes.NewReader(data), Card: raw}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Promote(context.Background(), registry.AliasRequest{Model: "calling-score", Version: 1}); err != nil {
		t.Fatal(err)
	}
	mon := monitor.New(reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mon.Now = func() time.Time { return now }
	return reg, mon, &now
}

// window is one second of traffic on (version, arm): uniform features, or the
// first feature pushed up by shift; predictions uniform over [lo, lo+0.5).
func window(rng *rand.Rand, version int, arm string, rows int, shift float64, lo float64, fallbacks int64) report.Window {
	w := report.Window{Version: version, Arm: arm, Requests: int64(rows), Rows: int64(rows),
		Latency: make([]int64, len(report.LatencyBucketsMs)+1), Prediction: make([]int64, report.PredictionBins), RefPrediction: make([]int64, 2)}
	w.Latency[3] = int64(rows)
	if fallbacks > 0 {
		w.Fallbacks = map[string]int64{"invalid_output": fallbacks}
	}
	w.Features = make([][]int64, 39)
	for f := range w.Features {
		w.Features[f] = make([]int64, 10)
	}
	for r := 0; r < rows; r++ {
		for f := 0; f < 39; f++ {
			v := rng.Float64()
			if f == 0 {
				v = min(0.999, v+shift)
			}
			w.Features[f][int(v*10)]++
		}
		p := lo + rng.Float64()*0.5
		w.Prediction[int(p*report.PredictionBins)]++
		if p > .5 {
			w.RefPrediction[1]++
		} else {
			w.RefPrediction[0]++
		}
	}
	return w
}

// badSeconds runs n seconds of v2 traffic on arm with a fifth of it answered by
// the rules (past the default policy's 5%), each followed by an evaluation.
func badSeconds(mon *monitor.Monitor, now *time.Time, rng *rand.Rand, n int, arm string) {
	for range n {
		*now = now.Add(time.Second)
		ingest(mon, window(rng, 2, arm, 300, 0, 0.2, 60))
		mon.Evaluate(context.Background())
	}
}

func ingest(mon *monitor.Monitor, w report.Window) {
	mon.Ingest(report.Report{Node: "n1", Ready: true, Models: []report.ModelReport{{Model: "calling-score", Windows: []report.Window{w}}}})
}

func kinds(t *testing.T, reg *registry.Registry) map[string]int {
	evs, err := reg.Events(context.Background(), registry.EventQuery{Model: "calling-score"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs {
		out[e.Kind]++
	}
	return out
}

func TestGoodPromotionsSurviveTwentyTrials(t *testing.T) {
	for trial := 0; trial < 20; trial++ {
		reg, mon, now := setup(t)
		rng := rand.New(rand.NewPCG(uint64(trial), 5))
		ctx := context.Background()
		for s := 0; s < 10; s++ { // v1 settled traffic before the promotion
			*now = now.Add(time.Second)
			ingest(mon, window(rng, 1, "champion", 300, 0, 0.2, 0))
		}
		*now = now.Add(time.Second)
		if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
			t.Fatal(err)
		}
		for s := 0; s < 20; s++ {
			*now = now.Add(time.Second)
			ingest(mon, window(rng, 2, "champion", 300, 0, 0.2, 0)) // same predictions, a handful of fallbacks never
			mon.Evaluate(ctx)
		}
		if k := kinds(t, reg); k[registry.EventAutoRollback] != 0 {
			t.Fatalf("trial %d: a good promotion was rolled back", trial)
		}
	}
}

func TestFallbackStormIsRolledBackWithTheNumbers(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(1, 1))
	ctx := context.Background()
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	badSeconds(mon, now, rng, 5, "champion")
	m, _ := reg.Model(ctx, "calling-score")
	if m.Production != 1 || m.Rejected[2] == "" {
		t.Fatalf("production v%d, rejected %v: want v1 back and v2 rejected", m.Production, m.Rejected)
	}
	if k := kinds(t, reg); k[registry.EventAutoRollback] != 1 {
		t.Fatalf("events %v", k)
	}
}

func TestInputDriftOnASettledVersionAlertsOnce(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(2, 2))
	ctx := context.Background()
	*now = now.Add(time.Hour) // long past the bake time
	for s := 0; s < 10; s++ {
		*now = now.Add(time.Second)
		ingest(mon, window(rng, 1, "champion", 500, 0.3, 0.2, 0))
		mon.Evaluate(ctx)
	}
	k := kinds(t, reg)
	if k[registry.EventDriftAlert] != 1 || k[registry.EventAutoRollback] != 0 {
		t.Fatalf("events %v: want exactly one drift alert and no rollback", k)
	}
	h, err := mon.Health(ctx, "calling-score")
	if err != nil || len(h.Arms) != 1 || h.Arms[0].Drift != "red" || h.Arms[0].MaxPSIFeat != "fA" {
		t.Fatalf("health %+v %v", h, err)
	}
}

// A handful of rows gives wild PSIs (a dozen identical requests fill one bin of
// each feature): health reports them, but grades the drift only once the
// histograms hold enough rows, so a first look at a new model shows no false red.
func TestDriftIsGradedOnlyOverEnoughRows(t *testing.T) {
	_, mon, now := setup(t)
	ctx := context.Background()
	health := func() monitor.ArmHealth {
		t.Helper()
		h, err := mon.Health(ctx, "calling-score")
		if err != nil || len(h.Arms) != 1 {
			t.Fatalf("health %+v %v", h, err)
		}
		return h.Arms[0]
	}
	// 12 identical rows, every feature in its top bin: PSI far above the act level.
	few := window(rand.New(rand.NewPCG(3, 3)), 1, "champion", 12, 0, 0, 0)
	for f := range few.Features {
		clear(few.Features[f])
		few.Features[f][9] = 12
	}
	ingest(mon, few)
	a := health()
	if a.Drift != monitor.DriftTooFewRows || a.MaxPSI < monitor.PSIAct || a.DriftRows != 12 || a.DriftMinRows <= 12 || len(a.Drifted) != 0 {
		t.Fatalf("12 rows: drift %q (PSI %.3f, %d of %d rows, drifted %v): want %q with the PSI still reported", a.Drift, a.MaxPSI, a.DriftRows, a.DriftMinRows, a.Drifted, monitor.DriftTooFewRows)
	}
	// The same skew over enough rows is graded red.
	*now = now.Add(time.Second)
	many := few
	many.Features = make([][]int64, 39)
	for f := range many.Features {
		many.Features[f] = make([]int64, 10)
		many.Features[f][9] = a.DriftMinRows
	}
	many.Requests, many.Rows = a.DriftMinRows, a.DriftMinRows
	ingest(mon, many)
	if a := health(); a.Drift != "red" || a.DriftRows != 12+a.DriftMinRows {
		t.Fatalf("%d rows: drift %q over %d rows, want red", 12+a.DriftMinRows, a.Drift, a.DriftRows)
	}
	// Reference-like traffic over enough rows is green.
	*now = now.Add(time.Hour)
	ingest(mon, window(rand.New(rand.NewPCG(4, 4)), 1, "champion", 2000, 0, 0.25, 0))
	if a := health(); a.Drift != "green" {
		t.Fatalf("2000 reference-like rows: drift %q (PSI %.3f, pred %.3f)", a.Drift, a.MaxPSI, a.PredPSI)
	}
}

// A shadow run counts no features, only the challenger's scores: its drift is
// the prediction's against the challenger's reference, graded once there are
// enough of them.
func TestShadowDriftIsThePredictionsOwn(t *testing.T) {
	_, mon, now := setup(t)
	ctx := context.Background()
	shadow := func(low, high int64) monitor.ArmHealth {
		t.Helper()
		*now = now.Add(time.Hour) // a fresh window
		w := report.Window{Version: 2, Arm: "shadow", Rows: low + high, Latency: make([]int64, len(report.LatencyBucketsMs)+1),
			Prediction: make([]int64, report.PredictionBins), RefPrediction: []int64{low, high}}
		ingest(mon, w)
		h, err := mon.Health(ctx, "calling-score")
		if err != nil || len(h.Arms) != 1 {
			t.Fatalf("health %+v %v", h, err)
		}
		return h.Arms[0]
	}
	if a := shadow(3, 2); a.Drift != monitor.DriftTooFewRows || a.DriftRows != 5 || a.DriftMinRows != 40 {
		t.Errorf("5 shadow scores: drift %q over %d of %d rows, want %q over 5 of 40", a.Drift, a.DriftRows, a.DriftMinRows, monitor.DriftTooFewRows)
	}
	if a := shadow(100, 100); a.Drift != "green" {
		t.Errorf("200 shadow scores as the reference has them: drift %q (PSI %.3f)", a.Drift, a.PredPSI)
	}
	if a := shadow(190, 10); a.Drift != "red" {
		t.Errorf("200 shadow scores nearly all low, the reference half and half: drift %q (PSI %.3f)", a.Drift, a.PredPSI)
	}
}

// A node silent for longer than the charts keep leaves the fleet: a replaced
// pod under a new name is not listed for ever.
func TestSilentNodesLeaveTheFleet(t *testing.T) {
	_, mon, now := setup(t)
	names := func() string {
		var out []string
		for _, n := range mon.Fleet() {
			out = append(out, n.Node)
		}
		return strings.Join(out, ",")
	}
	mon.Ingest(report.Report{Node: "pod-a", Ready: true})
	*now = now.Add(10 * time.Minute)
	mon.Ingest(report.Report{Node: "pod-b", Ready: true})
	if got := names(); got != "pod-a,pod-b" {
		t.Fatalf("fleet %q, want both pods", got)
	}
	*now = now.Add(6 * time.Minute) // pod-a silent for 16 minutes, past the 15 kept
	if got := names(); got != "pod-b" {
		t.Fatalf("fleet %q, want pod-a gone after %s of silence", got, mon.Retain)
	}
}

// A node that misses five reports in a row is marked silent: its last "ready"
// may no longer hold. Its interval is its own.
func TestNodesThatStopReportingAreSilent(t *testing.T) {
	_, mon, now := setup(t)
	silent := func() map[string]bool {
		out := map[string]bool{}
		for _, n := range mon.Fleet() {
			out[n.Node] = n.Silent
		}
		return out
	}
	mon.Ingest(report.Report{Node: "every-second", Ready: true, Interval: 1})
	mon.Ingest(report.Report{Node: "every-ten", Ready: true, Interval: 10})
	*now = now.Add(4 * time.Second)
	if s := silent(); s["every-second"] || s["every-ten"] {
		t.Fatalf("after 4 s: %v, want neither silent", s)
	}
	*now = now.Add(2 * time.Second)
	if s := silent(); !s["every-second"] || s["every-ten"] {
		t.Fatalf("after 6 s: %v, want only the node that reports every second silent", s)
	}
	mon.Ingest(report.Report{Node: "every-second", Ready: true, Interval: 1})
	if s := silent(); s["every-second"] {
		t.Fatalf("after a new report: %v, want it heard again", s)
	}
}

// Answers the rules gave before any version was loaded (version 0) chart as
// that, not as a "v0".
func TestSeriesNameTheRulesBeforeAnyModel(t *testing.T) {
	_, mon, _ := setup(t)
	w := window(rand.New(rand.NewPCG(5, 5)), 0, "champion", 10, 0, 0, 10)
	ingest(mon, w)
	ingest(mon, window(rand.New(rand.NewPCG(6, 6)), 1, "champion", 10, 0, 0, 0))
	series := mon.Series(context.Background(), "calling-score", time.Minute, 10*time.Second)
	if _, ok := series["rules, no model"]; !ok || len(series) != 2 || series["v1/champion"] == nil {
		names := []string{}
		for k := range series {
			names = append(names, k)
		}
		t.Fatalf("series %v, want %q and v1/champion", names, "rules, no model")
	}
}

// /metrics exports a PSI only once its histogram holds enough rows to grade:
// a dozen rows would read PSI 8 and fire any alert on it. The rows counted are
// exported meanwhile.
func TestMetricsExportPSIOnlyOverEnoughRows(t *testing.T) {
	_, mon, _ := setup(t)
	gauges := func() map[string]float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(monitor.Collector{M: mon})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetGauge() != nil {
					out[mf.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	ingest(mon, window(rand.New(rand.NewPCG(7, 7)), 1, "champion", 12, 0, 0, 0))
	g := gauges()
	_, psi := g["modelops_monitor_feature_psi_max"]
	_, pred := g["modelops_monitor_prediction_psi"]
	if psi || pred || g["modelops_monitor_drift_rows"] != 12 {
		t.Fatalf("after 12 rows /metrics has %v, want drift_rows 12 and no PSI", g)
	}
	ingest(mon, window(rand.New(rand.NewPCG(8, 8)), 1, "champion", 400, 0, 0.25, 0))
	g = gauges()
	_, psi = g["modelops_monitor_feature_psi_max"]
	_, pred = g["modelops_monitor_prediction_psi"]
	if !psi || !pred || g["modelops_monitor_drift_rows"] != 412 {
		t.Fatalf("after 412 rows /metrics has %v, want both PSIs and drift_rows 412", g)
	}
	// One gauge a feature, whose largest is the _max one.
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.Collector{M: mon})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	features, largest := map[string]bool{}, 0.0
	for _, mf := range mfs {
		if mf.GetName() != "modelops_monitor_feature_psi" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "feature" {
					features[l.GetValue()] = true
				}
			}
			largest = max(largest, m.GetGauge().GetValue())
		}
	}
	if len(features) != 39 || largest != g["modelops_monitor_feature_psi_max"] {
		t.Errorf("per-feature PSI gauges for %d features, largest %v; want 39, largest the _max gauge's %v", len(features), largest, g["modelops_monitor_feature_psi_max"])
	}
}

// "N consecutive failing evaluations" means consecutive: failures counted while
// v2 was production do not carry over to its next promotion, after a rollback
// by hand, where one more would have rolled it back at once.
func TestFailuresDoNotCarryOverToTheNextPromotion(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(3, 3))
	ctx := context.Background()
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	badSeconds(mon, now, rng, 2, "champion") // two of the three failing evaluations allowed
	if _, err := reg.Rollback(ctx, registry.AliasRequest{Model: "calling-score", Reason: "by hand"}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Second)
	ingest(mon, window(rng, 1, "champion", 300, 0, 0.2, 0))
	mon.Evaluate(ctx)
	*now = now.Add(time.Minute)
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	badSeconds(mon, now, rng, 1, "champion")
	if m, _ := reg.Model(ctx, "calling-score"); m.Production != 2 || kinds(t, reg)[registry.EventAutoRollback] != 0 {
		t.Fatalf("one failing evaluation after the new promotion: production v%d, events %v; want v2 kept", m.Production, kinds(t, reg))
	}
	badSeconds(mon, now, rng, 2, "champion") // two more make three in a row
	if m, _ := reg.Model(ctx, "calling-score"); m.Production != 1 || kinds(t, reg)[registry.EventAutoRollback] != 1 {
		t.Fatalf("after three failing evaluations in a row: production v%d, events %v; want v1 back", m.Production, kinds(t, reg))
	}
}

// /metrics counts, per model, the reporting nodes that cannot load its
// deployment: 0 while all is well, so an alert has a series to watch.
func TestMetricsCountNodesThatCannotLoad(t *testing.T) {
	_, mon, _ := setup(t)
	unserved := func() (float64, bool) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(monitor.Collector{M: mon})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "modelops_monitor_nodes_not_serving_deployment" {
				for _, m := range mf.GetMetric() {
					if m.GetLabel()[0].GetValue() == "calling-score" {
						return m.GetGauge().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	if v, ok := unserved(); !ok || v != 0 {
		t.Fatalf("before any report: %v %v, want a series at 0", v, ok)
	}
	report := func(node, loadErr string) {
		mon.Ingest(report.Report{Node: node, Ready: true, Models: []report.ModelReport{{Model: "calling-score", LoadError: loadErr}}})
	}
	report("n1", "fetch v2: not found")
	report("n2", "")
	report("n3", "fetch v2: not found")
	if v, _ := unserved(); v != 2 {
		t.Fatalf("two of three nodes cannot load: gauge %v", v)
	}
	report("n1", "") // it serves its deployment again
	if v, _ := unserved(); v != 1 {
		t.Fatalf("one node left that cannot load: gauge %v", v)
	}
}

// A drift alert stands for one stretch as the settled production version: v1
// rolled back to, after v2, and still drifting once settled again is alerted
// anew (it was alerted once and then never again).
func TestDriftAlertsAgainAfterAnotherStretchInProduction(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(4, 4))
	ctx := context.Background()
	drifting := func(version int) {
		for s := 0; s < 5; s++ {
			*now = now.Add(time.Second)
			ingest(mon, window(rng, version, "champion", 500, 0.3, 0.2, 0))
			mon.Evaluate(ctx)
		}
	}
	*now = now.Add(time.Hour) // v1 long settled
	drifting(1)
	if k := kinds(t, reg); k[registry.EventDriftAlert] != 1 {
		t.Fatalf("events %v: want one drift alert on v1", k)
	}
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Second)
	mon.Evaluate(ctx)
	if _, err := reg.Rollback(ctx, registry.AliasRequest{Model: "calling-score", Reason: "by hand"}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Hour) // settled again
	drifting(1)
	if k := kinds(t, reg); k[registry.EventDriftAlert] != 2 {
		t.Fatalf("events %v: want a second drift alert on v1's second stretch", k)
	}
}

// A canary is judged on its traffic since it became the canary: cleared after
// two bad seconds and set again, it is not rejected on the old ones.
func TestCanaryIsJudgedFromWhenItWasSet(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(6, 6))
	ctx := context.Background()
	setCanary := func(traffic float64) {
		t.Helper()
		if _, err := reg.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Version: 2, Traffic: traffic, Mode: registry.ModeAB}); err != nil {
			t.Fatal(err)
		}
	}
	setCanary(50)
	badSeconds(mon, now, rng, 2, "challenger") // two of the three failing evaluations allowed
	if _, err := reg.SetCanary(ctx, registry.CanaryRequest{Model: "calling-score", Clear: true}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Second)
	mon.Evaluate(ctx)
	setCanary(50)
	setCanary(20)            // a ramp of the same version keeps when it was set
	for s := 0; s < 5; s++ { // no traffic since: nothing to judge
		*now = now.Add(time.Second)
		mon.Evaluate(ctx)
	}
	m, _ := reg.Model(ctx, "calling-score")
	if m.Candidate == nil || m.Candidate.Version != 2 || m.Rejected[2] != "" {
		t.Fatalf("canary %+v, rejected %v: v2 was rejected on the seconds before it was set again", m.Candidate, m.Rejected)
	}
	badSeconds(mon, now, rng, 3, "challenger") // its own three bad seconds do reject it
	if m, _ := reg.Model(ctx, "calling-score"); m.Candidate != nil || m.Rejected[2] == "" {
		t.Fatalf("after three bad seconds of its own: canary %+v, rejected %v; want it cleared and rejected", m.Candidate, m.Rejected)
	}
}
