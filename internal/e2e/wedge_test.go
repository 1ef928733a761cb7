package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/scorerapi"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/testutil"
)

// A version whose warm-up never ends (a Loop of 10^15 trips) does not wedge the
// scorer: the load runs out of its deadline and is a load error in status and
// metrics, the old version keeps serving, and the next version loads; closing
// the scorer (what SIGTERM does) stops a load in progress within the drain
// timeout. (Push now warms a version up under a deadline of its own and
// refuses such a graph, so it reaches a scorer through directory mode here;
// a follower of the control plane loads under the same deadline.)
func TestALoadThatNeverEndsIsALoadError(t *testing.T) {
	dir := t.TempDir()
	put := func(path string) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, ".tmp"), data, 0o644)
		if err := os.Rename(filepath.Join(dir, ".tmp"), filepath.Join(dir, "calling-score.onnx")); err != nil {
			t.Fatal(err)
		}
	}
	put(testutil.MustModel(t, 1).Path)
	open := func(timeout time.Duration) *app.Scorer {
		cfg := app.DefaultScorerConfig()
		cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
		cfg.ModelDir, cfg.Listen, cfg.CacheDir = dir, "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
		cfg.LoadTimeout = timeout
		s := app.NewScorer(cfg, quietLogger(t))
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(time.Second)
	t.Cleanup(func() { s.Close(context.Background()) })
	if v, _, _ := s.Slot.Current(); v != 1 {
		t.Fatalf("serving v%d at start, want v1", v)
	}
	put(testutil.LoopingModel(t))
	waitFor(t, "the looping load to time out", 20*time.Second, func() bool {
		return strings.Contains(s.Dir.Status().LastError, "load timed out")
	})
	if v, _, _ := s.Slot.Current(); v != 1 {
		t.Fatalf("serving v%d after the looping load ran out, want v1", v)
	}
	if m := get(t, s.URL()+"/metrics"); !strings.Contains(m, `modelops_scorer_failed_loads_total{model="calling-score"} 1`) {
		t.Errorf("scorer /metrics does not count the failed load")
	}
	for _, m := range repositoryIndex(t, s.URL()) {
		if m.Name == "calling-score" && !strings.Contains(m.Reason, "load timed out") {
			t.Errorf("repository index %+v: want the load error as the reason", m)
		}
	}
	put(testutil.MustModel(t, 2).Path)
	waitFor(t, "the next version after the wedged one", 20*time.Second, func() bool { v, _, _ := s.Slot.Current(); return v == 2 })

	// Closing mid-load, with a deadline far away: the load is stopped.
	s2 := open(10 * time.Minute)
	put(testutil.LoopingModel(t))
	waitFor(t, "the looping load to start", 10*time.Second, func() bool {
		r := score(&http.Client{Timeout: 10 * time.Second}, s2.URL(), testutil.Row(0.1))
		return r.status == 200 && r.resp.Source == scorerapi.SourceModel
	})
	time.Sleep(time.Second) // the settle time has passed: the loop is running
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s2.Close(ctx); err != nil {
		t.Fatalf("closing mid-load: %v, want every load stopped within the drain timeout", err)
	}
}
