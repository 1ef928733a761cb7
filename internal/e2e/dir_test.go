package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/testutil"
)

func TestDirectoryModeSwapsOnRenameAndRefusesPartialFiles(t *testing.T) {
	dir := t.TempDir()
	m1, m2 := testutil.MustModel(t, 1), testutil.MustModel(t, 2)
	put := func(m testutil.Model) {
		t.Helper()
		data, _ := os.ReadFile(m.Path)
		// Write under a temp name, then rename in: the documented way.
		os.WriteFile(filepath.Join(dir, ".card.tmp"), m.Card, 0o644)
		os.Rename(filepath.Join(dir, ".card.tmp"), filepath.Join(dir, "calling-score.card.json"))
		os.WriteFile(filepath.Join(dir, ".model.tmp"), data, 0o644)
		os.Rename(filepath.Join(dir, ".model.tmp"), filepath.Join(dir, "calling-score.onnx"))
	}
	put(m1)
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.ModelDir, cfg.Listen, cfg.CacheDir = dir, "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
	cfg.GRPCListen = "127.0.0.1:0"
	sc := app.NewScorer(cfg, quietLogger(t))
	if err := sc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close(context.Background()) })
	hc := &http.Client{Timeout: 10 * time.Second}
	row := testutil.Row(0.25)
	if r := score(hc, sc.URL(), row); r.resp.Source != scorerapi.SourceModel || r.resp.Version != 1 {
		t.Fatalf("at start: %+v, want the directory's model", r.resp)
	}

	// A half-written file (cut short, written in place) never serves.
	data2, _ := os.ReadFile(m2.Path)
	if err := os.WriteFile(filepath.Join(dir, "calling-score.onnx"), data2[:len(data2)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the partial file to be refused", 10*time.Second, func() bool { return sc.Dir.Status().FailedLoads > 0 })
	if r := score(hc, sc.URL(), row); r.resp.Source != scorerapi.SourceModel || r.resp.Version != 1 {
		t.Fatalf("after a partial file: %+v, want v1 still serving", r.resp)
	}

	put(m2)
	waitFor(t, "the renamed-in model", 10*time.Second, func() bool { return score(hc, sc.URL(), row).resp.Version == 2 })
	r := score(hc, sc.URL(), row)
	if want := m2.MLP.Forward(row)[0]; abs32(*r.resp.Score-want) > 1e-5 {
		t.Fatalf("directory model scored %v, want %v", *r.resp.Score, want)
	}
}
