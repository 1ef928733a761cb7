package monitor_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
)

func ingestFrom(mon *monitor.Monitor, node string, ws ...report.Window) {
	mon.Ingest(report.Report{Node: node, Ready: true, Models: []report.ModelReport{{Model: "calling-score", Windows: ws}}})
}

// A version served by two nodes is not rolled back on one node's word, however
// bad: its partner serves it well. Once the second node sees the breach too,
// it is, and the event names both.
func TestOneNodeCannotRollBackAVersionTwoServe(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(7, 7))
	ctx := context.Background()
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		*now = now.Add(time.Second)
		ingestFrom(mon, "good", window(rng, 2, "champion", 300, 0, 0.2, 0))
		ingestFrom(mon, "liar", window(rng, 2, "champion", 300, 0, 0.2, 300))
		mon.Evaluate(ctx)
	}
	if m, _ := reg.Model(ctx, "calling-score"); m.Production != 2 || len(m.Rejected) > 0 {
		t.Fatalf("one node's fallbacks moved production to v%d (rejected %v); the other node served v2 well", m.Production, m.Rejected)
	}
	for range 10 { // the good node's window fills with its bad seconds
		*now = now.Add(time.Second)
		ingestFrom(mon, "good", window(rng, 2, "champion", 300, 0, 0.2, 60))
		ingestFrom(mon, "liar", window(rng, 2, "champion", 300, 0, 0.2, 300))
		mon.Evaluate(ctx)
	}
	m, _ := reg.Model(ctx, "calling-score")
	if m.Production != 1 || !strings.Contains(m.Rejected[2], "seen by 2 of 2 nodes serving it (good, liar; 2 needed)") {
		t.Fatalf("with both nodes in breach: production v%d, rejected %q; want v1 back, the nodes named", m.Production, m.Rejected[2])
	}
}

// The number of corroborating nodes is the policy's: with 1, one node of two
// suffices, as it did before the setting existed.
func TestCorroboratingNodesIsAPolicySetting(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(8, 8))
	ctx := context.Background()
	pol := registry.DefaultPolicy()
	pol.CorroboratingNodes = 1
	if _, err := reg.SetPolicy(ctx, "calling-score", pol, 0, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		*now = now.Add(time.Second)
		ingestFrom(mon, "good", window(rng, 2, "champion", 300, 0, 0.2, 0))
		ingestFrom(mon, "bad", window(rng, 2, "champion", 300, 0, 0.2, 300))
		mon.Evaluate(ctx)
	}
	if m, _ := reg.Model(ctx, "calling-score"); m.Production != 1 || !strings.Contains(m.Rejected[2], "seen by 1 of 2 nodes serving it (bad; 1 needed)") {
		t.Fatalf("production v%d, rejected %q: want v2 rolled back on one node's breach", m.Production, m.Rejected[2])
	}
}

// A report counts only for the versions deployed: production and the canary,
// the rules (v0), the version production replaced for a grace after the
// change, and, from a node that cannot load its deployment, an earlier
// production version it still serves.
func TestAdmitTakesOnlyDeployedVersions(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(9, 9))
	ctx := context.Background()
	admit := func(v int, loadError string) error {
		w := window(rng, v, "champion", 10, 0, 0.2, 0)
		if v == 0 { // the rules count no features: there is no card
			w.Features, w.RefPrediction = nil, nil
		}
		return mon.Admit(ctx, report.Report{Node: "n1", Models: []report.ModelReport{{Model: "calling-score", LoadError: loadError,
			Windows: []report.Window{w}}}})
	}
	if err := admit(1, ""); err != nil {
		t.Fatalf("production v1: %v", err)
	}
	if err := admit(0, ""); err != nil {
		t.Fatalf("the rules' answers: %v", err)
	}
	if err := admit(2, ""); !errors.Is(err, registry.ErrForbidden) || !strings.Contains(err.Error(), "v2 is not deployed (production v1)") {
		t.Fatalf("v2, pushed but not deployed: %v", err)
	}
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Second)
	if err := admit(1, ""); err != nil {
		t.Fatalf("v1 a second after v2 replaced it (a swap in flight): %v", err)
	}
	*now = now.Add(monitor.DefaultGrace)
	if err := admit(1, ""); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("v1 past the grace: %v, want refused", err)
	}
	if err := admit(1, "fetch v2: digest mismatch"); err != nil {
		t.Fatalf("v1 from a node that cannot load v2: %v", err)
	}
	if err := admit(3, "fetch v2: digest mismatch"); !errors.Is(err, registry.ErrForbidden) {
		t.Fatalf("v3, never production, with a load error: %v", err)
	}
}

// A flood of reports from many nodes, over more seconds than the monitor
// keeps, holds its counts within MaxBytes and a point a second per series.
func TestMonitorHoldsItsBudget(t *testing.T) {
	_, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(10, 10))
	const budget = 2 << 20
	mon.MaxBytes = budget
	w := window(rng, 1, "champion", 300, 0, 0.2, 10)
	for s := range 1200 {
		*now = now.Add(time.Second)
		for n := range 50 {
			ingestFrom(mon, "n"+string(rune('A'+n)), w)
		}
		if u := mon.Usage(); u.Bytes > budget {
			t.Fatalf("after %d s: %+v, past the budget of %d bytes", s, u, budget)
		}
	}
	u := mon.Usage()
	if u.Series != 1 || u.Points >= 900 || u.Nodes != 50 || u.NodeSlots > 50*31 {
		t.Fatalf("after 20 minutes of 50 nodes: %+v; want one series of fewer than 900 points, 50 nodes, at most 31 slots each", u)
	}
	// The reported window is the caller's: merging left it alone.
	if w.Requests != 300 || w.Latency[3] != 300 {
		t.Fatalf("ingesting changed the reported window: %+v", w)
	}
}

// Prediction drift is judged per node against its own predictions before the
// promotion: a node that skews its reports, before the promotion and after,
// moves nothing; two nodes whose predictions moved do.
func TestOneNodeCannotSkewThePredictions(t *testing.T) {
	reg, mon, now := setup(t)
	rng := rand.New(rand.NewPCG(11, 11))
	ctx := context.Background()
	second := func(v int, honest, liar float64) {
		*now = now.Add(time.Second)
		ingestFrom(mon, "a", window(rng, v, "champion", 300, 0, honest, 0))
		ingestFrom(mon, "b", window(rng, v, "champion", 300, 0, honest, 0))
		ingestFrom(mon, "liar", window(rng, v, "champion", 3000, 0, liar, 0))
		mon.Evaluate(ctx)
	}
	for range 10 {
		second(1, 0.2, 0.5)
	}
	if _, err := reg.Promote(ctx, registry.AliasRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		second(2, 0.2, 0)
	}
	if m, _ := reg.Model(ctx, "calling-score"); m.Production != 2 || len(m.Rejected) > 0 {
		t.Fatalf("one node's skewed predictions moved production to v%d (rejected %v)", m.Production, m.Rejected)
	}
	for range 10 {
		second(2, 0.5, 0)
	}
	m, _ := reg.Model(ctx, "calling-score")
	if m.Production != 1 || !strings.Contains(m.Rejected[2], "prediction PSI") || !strings.Contains(m.Rejected[2], "seen by 3 of 3 nodes serving it (a, b, liar; 2 needed)") {
		t.Fatalf("with both honest nodes' predictions moved: production v%d, rejected %q", m.Production, m.Rejected[2])
	}
}

// The monitor follows at most MaxNodes nodes: a new node past it is refused
// with 503 naming the flag, a node already followed is still taken, and a new
// one is taken again once a silent node is forgotten.
func TestMaxNodesBoundsTheNodesFollowed(t *testing.T) {
	_, mon, now := setup(t)
	mon.MaxNodes = 2
	rng := rand.New(rand.NewPCG(11, 11))
	ctx := context.Background()
	send := func(node string) error {
		r := report.Report{Node: node, Ready: true, Models: []report.ModelReport{{Model: "calling-score",
			Windows: []report.Window{window(rng, 1, "champion", 10, 0, 0.2, 0)}}}}
		if err := mon.Admit(ctx, r); err != nil {
			return err
		}
		mon.Ingest(r)
		return nil
	}
	for _, n := range []string{"n1", "n2"} {
		if err := send(n); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	err := send("n3")
	if !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "at most 2 nodes (serve --max-nodes)") {
		t.Fatalf("a third node past MaxNodes 2: %v, want unavailable naming --max-nodes", err)
	}
	if err := send("n1"); err != nil {
		t.Fatalf("a node already followed: %v", err)
	}
	if got := mon.Usage().Nodes; got != 2 {
		t.Fatalf("nodes followed: %d, want 2", got)
	}
	*now = now.Add(time.Hour) // n1 and n2 fall silent and are forgotten
	if err := send("n3"); err != nil {
		t.Fatalf("a new node once the silent ones are forgotten: %v", err)
	}
}
