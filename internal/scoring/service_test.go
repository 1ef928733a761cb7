package scoring_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scoring"
	"github.com/modelops/modelops/internal/testutil"
)

// mustLoad opens model's artifact as version v with card (nil for none).
func mustLoad(t *testing.T, path string, v int, card *artifact.Card) *loader.Loaded {
	t.Helper()
	s, err := loader.Open(path, loader.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return loader.NewLoaded(s, v, fmt.Sprintf("digest-%d", v), card)
}

func newService(t *testing.T, models ...*scoring.Model) *scoring.Service {
	t.Helper()
	s := scoring.New(nil, models...)
	t.Cleanup(func() {
		for _, m := range models {
			m.Close()
		}
	})
	return s
}

func row(n int, v float32) []float32 {
	out := make([]float32, 0, 39*n)
	for range n {
		out = append(out, testutil.Row(v)...)
	}
	return out
}

// A NaN canary at 60% opens its own breaker: production's answers stay the
// model's, and the canary's fallbacks count against the canary's version.
func TestNaNCanaryLeavesProductionToTheModel(t *testing.T) {
	m := scoring.NewModel("calling-score", fallback.CallingScore{})
	m.Production.Swap(mustLoad(t, testutil.MustModel(t, 1).Path, 1, nil))
	m.Canary.Swap(mustLoad(t, testutil.NaNModel(t).Path, 2, nil))
	m.SetRouting(scoring.Routing{Traffic: 60, Mode: "ab", Blend: 1})
	rec := report.NewRecorder()
	s := newService(t, m)
	s.Recorder = rec

	type tally struct{ model, fallback int }
	var mu sync.Mutex
	arms := map[string]*tally{scoring.ArmProduction: {}, scoring.ArmCanary: {}}
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				out, err := s.Score(context.Background(), scoring.Request{Flat: row(1, 0.3), Rows: 1, Key: fmt.Sprintf("k%d-%d", c, i)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if out.Source == scoring.SourceModel {
					arms[out.Arm].model++
				} else {
					arms[out.Arm].fallback++
					if out.Arm == scoring.ArmCanary && out.Attempted != 2 {
						t.Errorf("a canary fallback counted against v%d, want v2", out.Attempted)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	p, c := arms[scoring.ArmProduction], arms[scoring.ArmCanary]
	if total := p.model + p.fallback; total < 500 || float64(p.model) < 0.99*float64(total) {
		t.Fatalf("production: %d of %d answers from the model; want at least 99%%", p.model, total)
	}
	if c.model != 0 || c.fallback < 900 {
		t.Fatalf("canary: %d model answers, %d fallbacks; want none and about 1200", c.model, c.fallback)
	}
	for _, w := range rec.Flush() {
		if w.Version == 1 && w.FallbackCount() > w.Requests/100 {
			t.Fatalf("v1's window counts %d fallbacks of %d requests: %v", w.FallbackCount(), w.Requests, w.Fallbacks)
		}
	}
	if st := m.BreakerState(m.Canary); st == fallback.BreakerClosed {
		t.Fatalf("canary breaker %s after a thousand NaNs", st)
	}
	if st := m.BreakerState(m.Production); st != fallback.BreakerClosed {
		t.Fatalf("production breaker %s, want closed", st)
	}
}

// A version swapped in starts with a closed breaker of its own: the version an
// automatic rollback brings back is not judged on its predecessor's failures.
func TestSwappedInVersionStartsWithAClosedBreaker(t *testing.T) {
	m := scoring.NewModel("calling-score", fallback.CallingScore{})
	m.Production.Swap(mustLoad(t, testutil.NaNModel(t).Path, 3, nil))
	s := newService(t, m)
	req := scoring.Request{Flat: row(1, 0.4), Rows: 1}
	for range scoring.BreakerThreshold {
		if out, err := s.Score(context.Background(), req); err != nil || out.Reason != fallback.ReasonInvalidOutput {
			t.Fatalf("NaN version: %+v %v, want invalid_output", out, err)
		}
	}
	if out, _ := s.Score(context.Background(), req); out.Reason != fallback.ReasonCircuitOpen || out.Attempted != 3 {
		t.Fatalf("after %d NaNs: %+v, want circuit_open against v3", scoring.BreakerThreshold, out)
	}
	m.Production.Swap(mustLoad(t, testutil.MustModel(t, 2).Path, 2, nil))
	out, err := s.Score(context.Background(), req)
	if err != nil || out.Source != scoring.SourceModel || out.Version != 2 {
		t.Fatalf("first request on the version swapped in: %+v %v, want v2's model answer", out, err)
	}
}

// A model without rules whose version fails is counted: a request, an error
// and an "unavailable" refusal against that version, so the monitor sees it.
func TestFailureWithoutRulesIsCountedAgainstTheVersion(t *testing.T) {
	m := scoring.NewModel("churn", nil)
	m.Production.Swap(mustLoad(t, testutil.NaNModel(t).Path, 4, nil))
	rec := report.NewRecorder()
	m.Recorder = rec
	s := newService(t, m)
	_, err := s.Score(context.Background(), scoring.Request{Model: "churn", Flat: row(2, 0.1), Rows: 2})
	var e *scoring.Error
	if !errors.As(err, &e) || !errors.Is(err, scoring.ErrUnavailable) || scoring.Status(err) != 503 || e.RetryAfter == 0 {
		t.Fatalf("NaN version without rules: %v, want ErrUnavailable (503, Retry-After)", err)
	}
	ws := rec.Flush()
	if len(ws) != 1 || ws[0].Version != 4 || ws[0].Requests != 1 || ws[0].Errors != 1 || ws[0].Refusals["unavailable"] != 1 {
		t.Fatalf("windows %+v: want v4 with one request, one error, one unavailable refusal", ws)
	}
}

// A client may refuse an answer from the rules.
func TestNoFallbackRefusesTheRules(t *testing.T) {
	m := scoring.NewModel("calling-score", fallback.CallingScore{})
	s := newService(t, m)
	out, err := s.Score(context.Background(), scoring.Request{Flat: row(1, 0.5), Rows: 1})
	if err != nil || out.Source != scoring.SourceFallback || out.Reason != fallback.ReasonNoModel {
		t.Fatalf("no model loaded: %+v %v, want the rules", out, err)
	}
	_, err = s.Score(context.Background(), scoring.Request{Flat: row(1, 0.5), Rows: 1, NoFallback: true})
	if !errors.Is(err, scoring.ErrUnavailable) {
		t.Fatalf("refusing the rules: %v, want ErrUnavailable", err)
	}
}

func TestTypedErrors(t *testing.T) {
	m := scoring.NewModel("calling-score", fallback.CallingScore{})
	m.Production.Swap(mustLoad(t, testutil.MustModel(t, 1).Path, 1, nil))
	s := newService(t, m)
	s.MaxRows = 8
	tests := []struct {
		name   string
		req    scoring.Request
		kind   error
		status int
	}{
		{"unknown model", scoring.Request{Model: "churn", Flat: row(1, 0), Rows: 1}, scoring.ErrUnknownModel, 404},
		{"unknown version", scoring.Request{Version: 7, Flat: row(1, 0), Rows: 1}, scoring.ErrUnknownVersion, 404},
		{"short row", scoring.Request{Flat: make([]float32, 38), Rows: 1}, scoring.ErrInvalidInput, 400},
		{"no rows", scoring.Request{Rows: 0}, scoring.ErrInvalidInput, 400},
		{"too many rows", scoring.Request{Flat: row(9, 0), Rows: 9}, scoring.ErrInvalidInput, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Score(context.Background(), tt.req)
			if !errors.Is(err, tt.kind) || scoring.Status(err) != tt.status {
				t.Fatalf("%v (status %d), want %v (%d)", err, scoring.Status(err), tt.kind, tt.status)
			}
		})
	}
	out, err := s.Score(context.Background(), scoring.Request{Version: 1, Flat: row(1, 0.2), Rows: 1})
	if err != nil || out.Version != 1 || out.Arm != scoring.ArmProduction {
		t.Fatalf("pinned to v1: %+v %v", out, err)
	}
}

// invalid_output is judged against the version's output contract: a
// regression's outputs around 100 are answers, a score's are not.
func TestOutputContract(t *testing.T) {
	path := testutil.RegressionModel(t)
	for _, tt := range []struct {
		card   *artifact.Card
		source string
	}{
		{nil, scoring.SourceFallback},
		{&artifact.Card{Output: artifact.ContractScore}, scoring.SourceFallback},
		{&artifact.Card{Output: artifact.ContractRegression}, scoring.SourceModel},
	} {
		m := scoring.NewModel("calling-score", fallback.CallingScore{})
		m.Production.Swap(mustLoad(t, path, 1, tt.card))
		s := newService(t, m)
		out, err := s.Score(context.Background(), scoring.Request{Flat: row(1, 0.5), Rows: 1})
		if err != nil || out.Source != tt.source {
			t.Fatalf("contract %q: %+v %v, want source %s", tt.card.Contract(), out, err, tt.source)
		}
		if tt.source == scoring.SourceModel && !(out.Scores[0] > 50) {
			t.Fatalf("regression answered %v, want about 100", out.Scores[0])
		}
	}
}

func TestModelsComeAndGo(t *testing.T) {
	a := scoring.NewModel("a", fallback.CallingScore{})
	s := newService(t, a)
	b := scoring.NewModel("b", nil)
	s.Add(b)
	if ok, name := s.Ready(); ok || name != "b" {
		t.Fatalf("ready %v %q: want b, with neither a version nor rules, not ready", ok, name)
	}
	b.Production.Swap(mustLoad(t, testutil.MustModel(t, 1).Path, 1, nil))
	t.Cleanup(b.Close)
	if ok, _ := s.Ready(); !ok {
		t.Fatal("not ready once b has a version")
	}
	if out, err := s.Score(context.Background(), scoring.Request{Model: "b", Flat: row(1, 0.5), Rows: 1}); err != nil || out.Model != "b" || out.Source != scoring.SourceModel {
		t.Fatalf("b: %+v %v", out, err)
	}
	if got := s.Remove("b"); got != b {
		t.Fatal("Remove did not return b")
	}
	if _, err := s.Score(context.Background(), scoring.Request{Model: "b", Flat: row(1, 0.5), Rows: 1}); !errors.Is(err, scoring.ErrUnknownModel) {
		t.Fatalf("b removed: %v", err)
	}
	if out, err := s.Score(context.Background(), scoring.Request{Flat: row(1, 0.5), Rows: 1}); err != nil || out.Model != "a" {
		t.Fatalf("default a: %+v %v", out, err)
	}
}
