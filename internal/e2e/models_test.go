package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func scoreModel(hc *http.Client, url, model string, row []float32) scored {
	return scoreBody(hc, url, map[string]any{"model": model, "features": row, "budget_ms": 10000})
}

func repositoryIndex(t *testing.T, url string) []wire.RepositoryModel {
	t.Helper()
	resp, err := http.Post(url+"/v2/repository/index", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []wire.RepositoryModel
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// One scorer serves every model of the registry with --model '*': models
// pushed later are followed without a restart, each is loaded and swapped on
// its own, and a swap of one disturbs no other.
func TestOneScorerServesEveryModel(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	a, b := testutil.MustModel(t, 1), testutil.MustModel(t, 2)
	push(t, cl, "alpha", a.Path)
	push(t, cl, "beta", b.Path)
	for _, m := range []string{"alpha", "beta"} {
		if _, err := cl.Promote(ctx, m, wire.AliasBody{Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.ControlPlane, cfg.Listen, cfg.CacheDir = cp.URL(), "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
	cfg.Token, cfg.Models, cfg.ReportInterval = scorerToken, []string{app.AllModels}, 100*time.Millisecond
	s := app.NewScorer(cfg, quietLogger(t))
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	hc := &http.Client{Timeout: 10 * time.Second}
	row := testutil.Row(0.3)
	for name, m := range map[string]testutil.Model{"alpha": a, "beta": b} {
		waitFor(t, name+" v1", 10*time.Second, func() bool { return scoreModel(hc, s.URL(), name, row).resp.Version == 1 })
		if r := scoreModel(hc, s.URL(), name, row); r.resp.Model != name || abs32(*r.resp.Score-m.MLP.Forward(row)[0]) > 1e-5 {
			t.Fatalf("%s answered %+v, want its own model's score", name, r.resp)
		}
	}

	// A model pushed after the start is followed without a restart.
	c := testutil.MustModel(t, 3)
	push(t, cl, "gamma", c.Path)
	if _, err := cl.Promote(ctx, "gamma", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gamma served", 10*time.Second, func() bool { return scoreModel(hc, s.URL(), "gamma", row).resp.Version == 1 })

	// A swap of beta (to a version that fails on traffic) leaves alpha and
	// gamma alone.
	push(t, cl, "beta", failingArtifact(t))
	if _, err := cl.Promote(ctx, "beta", wire.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "beta v2", 10*time.Second, func() bool {
		v, _, _ := func() (int, string, bool) { m, _ := s.API.Model("beta"); return m.Production.Current() }()
		return v == 2
	})
	for _, name := range []string{"alpha", "gamma"} {
		if r := scoreModel(hc, s.URL(), name, row); r.status != 200 || r.resp.Version != 1 || r.resp.Source != scorerapi.SourceModel {
			t.Fatalf("%s after beta's swap: %+v", name, r)
		}
	}

	idx := repositoryIndex(t, s.URL())
	got := map[string]wire.RepositoryModel{}
	for _, m := range idx {
		got[m.Name] = m
	}
	if len(idx) != 3 || got["alpha"].Version != "1" || got["beta"].Version != "2" || got["gamma"].State != "READY" {
		t.Fatalf("repository index %+v: want alpha v1, beta v2, gamma, all ready", idx)
	}
	var status struct {
		Models []wire.ModelStatus `json:"models"`
	}
	resp, err := hc.Get(s.URL() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if len(status.Models) != 3 {
		t.Fatalf("/v1/status lists %d models, want 3", len(status.Models))
	}
	// Every model's counts reach the control plane. Each is scored on every
	// poll, so that its traffic stays within the monitor's 3 s window however
	// slowly the test ran to here (under the race detector it took longer).
	waitFor(t, "reports of all three models", 10*time.Second, func() bool {
		for _, name := range []string{"alpha", "beta", "gamma"} {
			scoreModel(hc, s.URL(), name, row)
			h, err := cl.Health(ctx, name)
			if err != nil || len(h.Arms) == 0 {
				return false
			}
		}
		return true
	})
}

// Directory mode serves every NAME.onnx in the directory, and one dropped in
// later.
func TestDirectoryModeServesEveryModel(t *testing.T) {
	dir := t.TempDir()
	put := func(name string, m testutil.Model) {
		data, _ := os.ReadFile(m.Path)
		os.WriteFile(filepath.Join(dir, ".tmp"), data, 0o644)
		os.Rename(filepath.Join(dir, ".tmp"), filepath.Join(dir, name+".onnx"))
	}
	put("calling-score", testutil.MustModel(t, 1))
	put("churn", testutil.MustModel(t, 2))
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.ModelDir, cfg.Listen, cfg.CacheDir = dir, "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
	s := app.NewScorer(cfg, quietLogger(t))
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	hc := &http.Client{Timeout: 10 * time.Second}
	row := testutil.Row(0.6)
	for _, name := range []string{"calling-score", "churn"} {
		if r := scoreModel(hc, s.URL(), name, row); r.resp.Source != scorerapi.SourceModel || r.resp.Version != 1 {
			t.Fatalf("%s: %+v", name, r)
		}
	}
	put("fraud", testutil.MustModel(t, 3))
	waitFor(t, "fraud served", 10*time.Second, func() bool { return scoreModel(hc, s.URL(), "fraud", row).resp.Source == scorerapi.SourceModel })
}
