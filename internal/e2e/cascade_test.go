package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/trainer"
	"github.com/modelops/modelops/internal/wire"
)

// sameScores writes m's network again under another graph name: another
// artifact (another digest) that scores exactly as m does.
func sameScores(t *testing.T, m testutil.Model, name string) string {
	t.Helper()
	data, err := trainer.ExportONNX(m.MLP, trainer.ExportMeta{GraphName: name})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func push(t *testing.T, cl *client.Client, model, path string) {
	t.Helper()
	if _, err := cl.Push(context.Background(), client.PushOptions{Model: model, ArtifactPath: path}); err != nil {
		t.Fatalf("push %s: %v", path, err)
	}
}

// The cascade of issue 19: good v2, NaN v3 promoted under load. The monitor
// rolls v3 back to v2, and v2, swapped in again with a breaker of its own, is
// judged on what it does: it is neither rolled back nor rejected.
func TestRollbackTargetIsNotJudgedOnTheBadVersion(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	v1 := testutil.MustModel(t, 1)
	mustPush(t, cl, v1)
	push(t, cl, "calling-score", sameScores(t, v1, "again"))
	push(t, cl, "calling-score", testutil.NaNModel(t).Path)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPolicy(ctx, "calling-score", wire.PolicyBody{MinSamples: ptr(int64(20)), FailureLimit: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	s := fastScorer(t, cp.URL())
	stop := make(chan struct{})
	wg := traffic(t, []string{s.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	on := func(v int) func() bool {
		return func() bool { cur, _, _ := s.Slot.Current(); return cur == v }
	}
	waitFor(t, "the scorer on v1", 10*time.Second, on(1))
	time.Sleep(2 * time.Second)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the scorer on v2", 10*time.Second, on(2))
	time.Sleep(2 * time.Second)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the automatic rollback of v3 to v2", 20*time.Second, func() bool {
		m, err := cl.Model(ctx, "calling-score")
		return err == nil && m.Production == 2 && on(2)()
	})
	// Long enough for the monitor to have judged v2 several times over on
	// traffic since the rollback (its window is 3 s, it decides every 100 ms).
	time.Sleep(5 * time.Second)
	m, err := cl.Model(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	if m.Production != 2 || m.Rejected[2] != "" {
		t.Fatalf("after the rollback: production v%d, rejected %v; want v2, not rejected", m.Production, m.Rejected)
	}
	evs, err := cl.Events(ctx, "calling-score", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	rollbacks := 0
	for _, ev := range evs {
		if ev.Kind == registry.EventAutoRollback {
			rollbacks++
			if ev.From != 3 || ev.To != 2 {
				t.Errorf("automatic rollback %+v: only v3→v2 was due", ev)
			}
		}
	}
	if rollbacks != 1 {
		t.Fatalf("%d automatic rollbacks, want 1 (v3→v2)", rollbacks)
	}
}

// A model without fallback rules whose new version fails every request is
// seen by the monitor as errors and rolled back like any other.
func TestFailingVersionWithoutRulesIsRolledBack(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	push(t, cl, "churn", testutil.MustModel(t, 1).Path)
	push(t, cl, "churn", testutil.NaNModel(t).Path)
	if _, err := cl.Promote(ctx, "churn", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPolicy(ctx, "churn", wire.PolicyBody{MinSamples: ptr(int64(20)), FailureLimit: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.ControlPlane, cfg.Listen, cfg.CacheDir = cp.URL(), "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
	cfg.Token, cfg.Models, cfg.ReportInterval = scorerToken, []string{"churn"}, 100*time.Millisecond
	s := app.NewScorer(cfg, quietLogger(t))
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	stop := make(chan struct{})
	wg := traffic(t, []string{s.URL()}, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "the scorer on v1", 10*time.Second, func() bool { v, _, _ := s.Slot.Current(); return v == 1 })
	time.Sleep(2 * time.Second)
	if _, err := cl.Promote(ctx, "churn", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the automatic rollback to v1", 20*time.Second, func() bool {
		m, err := cl.Model(ctx, "churn")
		v, _, _ := s.Slot.Current()
		return err == nil && m.Production == 1 && v == 1
	})
	evs, err := cl.Events(ctx, "churn", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Kind != registry.EventAutoRollback || last.From != 2 || !strings.Contains(last.Reason, "error rate") {
		t.Fatalf("last event %+v: want auto_rollback of v2 on its error rate", last)
	}
	// The scorer's own /metrics counted the failures against v2.
	metrics := get(t, s.URL()+"/metrics")
	for _, want := range []string{`modelops_scorer_model_errors_total{arm="champion",model="churn",version="2"}`, `code="503",model="churn",reason="unavailable/invalid_output",version="2"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("scorer /metrics lacks %s", want)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
