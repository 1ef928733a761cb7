package monitor_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/monitor/report"
	"github.com/modelops/modelops/internal/registry"
)

// rolloutPolicy is short for tests: 10 s a step, a minute's timeout, and a
// margin wide enough to decide on a few hundred outcomes.
func rolloutPolicy(t *testing.T, reg *registry.Registry) {
	t.Helper()
	rp := registry.DefaultRolloutPolicy()
	rp.Steps, rp.Interval, rp.Timeout, rp.LossMargin = []float64{10, 50, 100}, registry.Duration(10*time.Second), registry.Duration(time.Minute), 0.5
	if _, err := reg.SetRolloutPolicy(context.Background(), "calling-score", rp, 0, "test"); err != nil {
		t.Fatal(err)
	}
}

// traffic is one second of both arms: production (v1) and the canary (v2,
// on arm) with rows each, outcomes on a third of them at the given MSEs.
func traffic(mon *monitor.Monitor, now *time.Time, rng *rand.Rand, arm string, prodRows, canaryRows int, prodMSE, canaryMSE float64) {
	*now = now.Add(time.Second)
	p := window(rng, 1, "champion", prodRows, 0, 0.2, 0)
	c := window(rng, 2, arm, canaryRows, 0, 0.2, 0)
	if arm == "shadow" {
		c.Requests, c.Latency = 0, nil
		c.ShadowDiff = make([]int64, len(report.ShadowDiffEdges)+1)
		c.ShadowDiff[1] = int64(canaryRows)
	} else {
		outcomes(rng, &c, canaryRows/3, canaryMSE)
	}
	outcomes(rng, &p, prodRows/3, prodMSE)
	mon.Ingest(report.Report{Node: "n1", Ready: true, Models: []report.ModelReport{{Model: "calling-score", Windows: []report.Window{p, c}}}})
	mon.Evaluate(context.Background())
}

func rolloutOf(t *testing.T, reg *registry.Registry) *registry.Model {
	t.Helper()
	md, err := reg.Model(context.Background(), "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// runUntil drives traffic until the rollout leaves the running state, for at
// most seconds; it returns the model then.
func runUntil(t *testing.T, reg *registry.Registry, mon *monitor.Monitor, now *time.Time, rng *rand.Rand, seconds int, arm func(*registry.Model) string, prodRows, canaryRows int, prodMSE, canaryMSE float64) *registry.Model {
	t.Helper()
	for range seconds {
		md := rolloutOf(t, reg)
		if !md.Rollout.Active() {
			return md
		}
		traffic(mon, now, rng, arm(md), prodRows, canaryRows, prodMSE, canaryMSE)
	}
	return rolloutOf(t, reg)
}

func abArm(*registry.Model) string { return "challenger" }

func TestRolloutPromotesAGoodVersion(t *testing.T) {
	reg, mon, now := setup(t)
	rolloutPolicy(t, reg)
	ctx := context.Background()
	if _, err := reg.StartRollout(ctx, registry.RolloutRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	if md := rolloutOf(t, reg); md.Candidate == nil || md.Candidate.Traffic != 10 || md.Rollout.Step != 0 {
		t.Fatalf("after start: candidate %+v, rollout %+v; want v2 at 10%%", md.Candidate, md.Rollout)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	md := runUntil(t, reg, mon, now, rng, 300, abArm, 300, 300, 0.01, 0.01)
	if md.Rollout.State != registry.RolloutPromoted || md.Production != 2 || md.Candidate != nil {
		t.Fatalf("rollout %+v, production v%d, candidate %+v; want v2 promoted", md.Rollout, md.Production, md.Candidate)
	}
	k := kinds(t, reg)
	if k[registry.EventRolloutStep] != 2 || k[registry.EventRolloutPromoted] != 1 {
		t.Fatalf("events %v; want two steps and a promotion", k)
	}
	evs, _ := reg.Events(ctx, registry.EventQuery{Model: "calling-score"})
	last := evs[len(evs)-1]
	if last.Kind != registry.EventRolloutPromoted || !strings.Contains(last.Reason, "outcome MSE") {
		t.Fatalf("last event %+v; want the promotion with its analysis", last)
	}
}

func TestRolloutRejectsAWorseVersion(t *testing.T) {
	reg, mon, now := setup(t)
	rolloutPolicy(t, reg)
	if _, err := reg.StartRollout(context.Background(), registry.RolloutRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	md := runUntil(t, reg, mon, now, rng, 300, abArm, 300, 300, 0.01, 0.05)
	if md.Rollout.State != registry.RolloutFailed || md.Rollout.Step != 0 || md.Candidate != nil || md.Production != 1 {
		t.Fatalf("rollout %+v, production v%d, candidate %+v; want failed at the first step, v1 kept", md.Rollout, md.Production, md.Candidate)
	}
	if why, ok := md.Rejected[2]; !ok || !strings.Contains(why, "outcome MSE") {
		t.Fatalf("rejected %v; want v2 rejected with the loss test's numbers", md.Rejected)
	}
	if _, err := reg.StartRollout(context.Background(), registry.RolloutRequest{Model: "calling-score", Version: 2}); err == nil {
		t.Fatal("a rejected version started a new rollout")
	}
}

func TestRolloutTimesOutOnTooLittleTraffic(t *testing.T) {
	reg, mon, now := setup(t)
	rolloutPolicy(t, reg)
	if _, err := reg.StartRollout(context.Background(), registry.RolloutRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	// One canary request a second: 60 in the minute's timeout, short of 100.
	md := runUntil(t, reg, mon, now, rng, 200, abArm, 300, 1, 0.01, 0.01)
	if md.Rollout.State != registry.RolloutTimedOut || md.Production != 1 || md.Candidate != nil {
		t.Fatalf("rollout %+v, production v%d; want timed out, v1 kept, canary cleared", md.Rollout, md.Production)
	}
	if _, bad := md.Rejected[2]; bad {
		t.Fatal("a timed-out version was rejected; it was never judged")
	}
	if k := kinds(t, reg); k[registry.EventRolloutStep] != 0 || k[registry.EventRolloutTimedOut] != 1 {
		t.Fatalf("events %v; want no step passed and one timeout", k)
	}
}

func TestRolloutPauseResumeAbort(t *testing.T) {
	reg, mon, now := setup(t)
	rolloutPolicy(t, reg)
	ctx := context.Background()
	if _, err := reg.StartRollout(ctx, registry.RolloutRequest{Model: "calling-score", Version: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PauseRollout(ctx, "calling-score", "test"); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 120 { // twice the timeout: a paused step neither passes nor times out
		traffic(mon, now, rng, "challenger", 300, 300, 0.01, 0.01)
	}
	if md := rolloutOf(t, reg); md.Rollout.State != registry.RolloutPaused || md.Rollout.Step != 0 || md.Candidate.Traffic != 10 {
		t.Fatalf("paused rollout moved: %+v", md.Rollout)
	}
	if _, err := reg.ResumeRollout(ctx, "calling-score", "test"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 120 && rolloutOf(t, reg).Rollout.Step == 0; i++ {
		traffic(mon, now, rng, "challenger", 300, 300, 0.01, 0.01)
	}
	md := rolloutOf(t, reg)
	if md.Rollout.Step != 1 || md.Candidate.Traffic != 50 {
		t.Fatalf("resumed rollout %+v, canary %+v; want the second step at 50%%", md.Rollout, md.Candidate)
	}
	st, err := mon.Rollout(ctx, "calling-score")
	if err != nil || st.Analysis == nil || st.Analysis.Loss == nil {
		t.Fatalf("status %+v, %v; want the latest analysis with its loss test", st, err)
	}
	if _, err := reg.AbortRollout(ctx, "calling-score", "test", "enough"); err != nil {
		t.Fatal(err)
	}
	md = rolloutOf(t, reg)
	if md.Rollout.State != registry.RolloutAborted || md.Candidate != nil || md.Production != 1 {
		t.Fatalf("aborted rollout %+v, candidate %+v", md.Rollout, md.Candidate)
	}
	if _, bad := md.Rejected[2]; bad {
		t.Fatal("an aborted version was rejected")
	}
	if _, err := reg.PauseRollout(ctx, "calling-score", "test"); err == nil {
		t.Fatal("paused a finished rollout")
	}
}

func TestRolloutShadowGate(t *testing.T) {
	reg, mon, now := setup(t)
	rolloutPolicy(t, reg)
	if _, err := reg.StartRollout(context.Background(), registry.RolloutRequest{Model: "calling-score", Version: 2, Shadow: 20 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if md := rolloutOf(t, reg); md.Candidate.Mode != registry.ModeShadow || md.Rollout.Step != -1 {
		t.Fatalf("after start: candidate %+v, rollout %+v; want a shadow phase", md.Candidate, md.Rollout)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	arm := func(md *registry.Model) string {
		if md.Rollout.Step < 0 {
			return "shadow"
		}
		return "challenger"
	}
	for i := 0; i < 120 && rolloutOf(t, reg).Rollout.Step < 0; i++ {
		traffic(mon, now, rng, arm(rolloutOf(t, reg)), 300, 300, 0.01, 0.01)
	}
	md := rolloutOf(t, reg)
	if md.Rollout.Step != 0 || md.Candidate.Mode != registry.ModeAB || md.Candidate.Traffic != 10 {
		t.Fatalf("after the shadow phase: rollout %+v, canary %+v; want the first A/B step", md.Rollout, md.Candidate)
	}
	evs, _ := reg.Events(context.Background(), registry.EventQuery{Model: "calling-score"})
	if last := evs[len(evs)-1]; !strings.Contains(last.Reason, "shadow phase passed") || !strings.Contains(last.Reason, "shadow_p50_abs_diff") {
		t.Fatalf("last event %+v; want the shadow phase's pass with its analysis", last)
	}
}
