package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// rolloutSetup starts a control plane with a fast monitor and short rollout
// settings, v1 promoted and v2 pushed, and a real scorer.
func rolloutSetup(t *testing.T, timeout time.Duration) (*client.Client, string) {
	t.Helper()
	cp, cl := fastMonitor(t)
	mustPush(t, cl, testutil.MustModel(t, 1))
	mustPush(t, cl, testutil.MustModel(t, 2))
	ctx := context.Background()
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	lenientPolicy(t, cl) // two unrelated test models score far apart
	iv, to := registry.Duration(300*time.Millisecond), registry.Duration(timeout)
	if _, err := cl.SetRolloutPolicy(ctx, "calling-score", wire.RolloutPolicyBody{Steps: []float64{20, 50, 100}, Interval: &iv, Timeout: &to,
		MinRequests: ptr(int64(20)), MinScores: ptr(int64(20)), MinOutcomes: ptr(int64(40)), LossMargin: ptr(0.5)}); err != nil {
		t.Fatal(err)
	}
	sc := fastScorer(t, cp.URL())
	waitFor(t, "v1 served", 10*time.Second, func() bool { _, _, ok := sc.Served.Production.Current(); return ok })
	return cl, sc.URL()
}

// sendTraffic scores random rows and sends each model answer's outcome:
// the answer give or take 0.05, or, for the canary when canaryOff, off by 0.5.
func sendTraffic(t *testing.T, url string, canaryOff bool, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hc := &http.Client{Timeout: 5 * time.Second}
		rng := rand.New(rand.NewPCG(11, 12))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := scoreBody(hc, url, map[string]any{"features": testutil.Row(rng.Float32()), "key": fmt.Sprint("u", i), "budget_ms": 10000})
			if r.err != nil || r.status != 200 || r.resp.RequestID == "" || r.resp.Score == nil {
				continue
			}
			s := float64(*r.resp.Score)
			outcome := min(1, max(0, s+(rng.Float64()-0.5)*0.1))
			if canaryOff && r.resp.Arm == scorerapi.ArmCanary {
				if outcome = s + 0.5; outcome > 1 {
					outcome = s - 0.5
				}
			}
			resp, err := hc.Post(url+"/v1/feedback", "application/json", strings.NewReader(fmt.Sprintf(`{"request_id":%q,"outcome":%g}`, r.resp.RequestID, outcome)))
			if err == nil {
				resp.Body.Close()
			}
		}
	}()
	return &wg
}

func rolloutState(t *testing.T, cl *client.Client) *registry.Rollout {
	st, err := cl.Rollout(context.Background(), "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	return st.Rollout
}

func TestRolloutPromotesThroughItsSteps(t *testing.T) {
	ctx := context.Background()
	cl, url := rolloutSetup(t, time.Minute)
	if _, err := cl.StartRollout(ctx, "calling-score", wire.RolloutBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := sendTraffic(t, url, false, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "the rollout to end", 60*time.Second, func() bool { return !rolloutState(t, cl).Active() })
	ro := rolloutState(t, cl)
	m, err := cl.Model(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	if ro.State != registry.RolloutPromoted || m.Production != 2 || m.Candidate != nil {
		t.Fatalf("rollout %+v, production v%d; want v2 promoted", ro, m.Production)
	}
	evs, err := cl.Events(ctx, "calling-score", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, e := range evs {
		if e.Kind == registry.EventRolloutStep {
			steps++
		}
		if e.Kind == registry.EventRolloutPromoted && !strings.Contains(e.Reason, "outcome MSE") {
			t.Errorf("promotion event without the loss test's numbers: %s", e.Reason)
		}
	}
	if steps != 2 {
		t.Fatalf("%d step events; want 2 (20%% → 50%% → 100%%)", steps)
	}
}

func TestRolloutOfAWorseVersionFailsAndRejectsIt(t *testing.T) {
	ctx := context.Background()
	cl, url := rolloutSetup(t, time.Minute)
	if _, err := cl.StartRollout(ctx, "calling-score", wire.RolloutBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := sendTraffic(t, url, true, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, "the rollout to end", 60*time.Second, func() bool { return !rolloutState(t, cl).Active() })
	ro := rolloutState(t, cl)
	m, err := cl.Model(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	if ro.State != registry.RolloutFailed || ro.Step != 0 || m.Production != 1 || m.Candidate != nil {
		t.Fatalf("rollout %+v, production v%d; want failed at the first step, v1 kept", ro, m.Production)
	}
	if why := m.Rejected[2]; !strings.Contains(why, "outcome MSE") {
		t.Fatalf("v2 rejected for %q; want the loss test's numbers", why)
	}
}

func TestRolloutWithoutTrafficTimesOutAndPauseResumeAbort(t *testing.T) {
	ctx := context.Background()
	cl, _ := rolloutSetup(t, 2*time.Second)
	if _, err := cl.StartRollout(ctx, "calling-score", wire.RolloutBody{Version: 2}); err != nil {
		t.Fatal(err)
	}
	// No traffic: every step is inconclusive, and past the timeout the
	// rollout ends without a promotion.
	waitFor(t, "the rollout to time out", 30*time.Second, func() bool { return !rolloutState(t, cl).Active() })
	m, err := cl.Model(ctx, "calling-score")
	if err != nil {
		t.Fatal(err)
	}
	if ro := rolloutState(t, cl); ro.State != registry.RolloutTimedOut || m.Production != 1 || m.Candidate != nil {
		t.Fatalf("rollout %+v, production v%d, canary %+v; want timed out, v1 kept", ro, m.Production, m.Candidate)
	}
	if _, bad := m.Rejected[2]; bad {
		t.Fatal("a version that timed out was rejected")
	}

	// Paused, a rollout outlives its timeout; resumed, it runs; aborted, its
	// canary goes.
	if _, err := cl.StartRollout(ctx, "calling-score", wire.RolloutBody{Version: 2, Steps: []float64{30}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RolloutAction(ctx, "calling-score", "pause", ""); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	waitFor(t, "twice the timeout", 10*time.Second, func() bool { return time.Since(paused) > 4*time.Second })
	if ro := rolloutState(t, cl); ro.State != registry.RolloutPaused {
		t.Fatalf("paused rollout is %s", ro.State)
	}
	if _, err := cl.RolloutAction(ctx, "calling-score", "resume", ""); err != nil {
		t.Fatal(err)
	}
	if ro := rolloutState(t, cl); ro.State != registry.RolloutRunning || ro.Steps[0] != 30 {
		t.Fatalf("resumed rollout %+v", ro)
	}
	if _, err := cl.RolloutAction(ctx, "calling-score", "abort", "changed my mind"); err != nil {
		t.Fatal(err)
	}
	m, _ = cl.Model(ctx, "calling-score")
	if ro := rolloutState(t, cl); ro.State != registry.RolloutAborted || m.Candidate != nil || !strings.Contains(ro.Reason, "changed my mind") {
		t.Fatalf("aborted rollout %+v, canary %+v", ro, m.Candidate)
	}
	if _, err := cl.RolloutAction(ctx, "calling-score", "resume", ""); client.StatusOf(err) != http.StatusConflict {
		t.Fatalf("resuming a finished rollout: %v; want 409", err)
	}
}
