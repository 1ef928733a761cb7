package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/testutil"
)

func loadingScorer(t *testing.T, cpURL string, timeout time.Duration) *app.Scorer {
	t.Helper()
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.ControlPlane, cfg.Listen, cfg.CacheDir = cpURL, "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
	cfg.Token, cfg.ReportInterval, cfg.LoadTimeout = scorerToken, 100*time.Millisecond, timeout
	s := app.NewScorer(cfg, quietLogger(t))
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// A promoted version whose warm-up never ends (a Loop of 10^15 trips, pushed
// without a card, so push ran nothing) does not wedge the scorer: the load
// runs out of its deadline and is a load error in status, metrics and reports,
// and the next promotion loads.
func TestALoadThatNeverEndsIsALoadError(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	mustPush(t, cl, testutil.MustModel(t, 1))
	push(t, cl, "calling-score", testutil.LoopingModel(t))
	mustPush(t, cl, testutil.MustModel(t, 3))
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	s := loadingScorer(t, cp.URL(), time.Second)
	t.Cleanup(func() { s.Close(context.Background()) })
	waitFor(t, "v1", 10*time.Second, func() bool { v, _, _ := s.Slot.Current(); return v == 1 })
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the load of v2 to time out", 20*time.Second, func() bool {
		return strings.Contains(s.Follower.Status().LastError, "load timed out")
	})
	if v, _, _ := s.Slot.Current(); v != 1 {
		t.Fatalf("serving v%d after v2's load ran out, want v1", v)
	}
	if m := get(t, s.URL()+"/metrics"); !strings.Contains(m, `modelops_scorer_failed_loads_total{model="calling-score"} 1`) {
		t.Errorf("scorer /metrics does not count the failed load")
	}
	waitFor(t, "the fleet to show the load error", 10*time.Second, func() bool {
		fleet, err := cl.Fleet(ctx)
		return err == nil && len(fleet) == 1 && strings.Contains(fleet[0].LoadErrors["calling-score"], "load timed out")
	})
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v3 after the wedged v2", 20*time.Second, func() bool { v, _, _ := s.Slot.Current(); return v == 3 })
}

// A newer deployment supersedes a load in progress, and closing the scorer
// (what SIGTERM does) stops a load in progress within the drain timeout.
func TestANewerDeploymentSupersedesAPendingLoad(t *testing.T) {
	ctx := context.Background()
	cp, cl := fastMonitor(t)
	mustPush(t, cl, testutil.MustModel(t, 1))
	push(t, cl, "calling-score", testutil.LoopingModel(t))
	mustPush(t, cl, testutil.MustModel(t, 3))
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	s := loadingScorer(t, cp.URL(), 10*time.Minute)
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close(context.Background())
		}
	})
	waitFor(t, "v1", 10*time.Second, func() bool { v, _, _ := s.Slot.Current(); return v == 1 })
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // v2's warm-up is looping now
	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v3, superseding v2's endless load", 20*time.Second, func() bool { v, _, _ := s.Slot.Current(); return v == 3 })
	if st := s.Follower.Status(); st.FailedLoads != 0 {
		t.Fatalf("a superseded load counted as failed: %+v", st)
	}

	if _, err := cl.Promote(ctx, "calling-score", api.AliasBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // looping again
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	closed = true
	if err := s.Close(closeCtx); err != nil {
		t.Fatalf("closing mid-load: %v, want every load stopped within the drain timeout", err)
	}
}
