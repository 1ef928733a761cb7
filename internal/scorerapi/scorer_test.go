package scorerapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/scoring"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// mustLoad opens a model file and wraps it for a slot.
func mustLoad(t *testing.T, m testutil.Model, version int) *loader.Loaded {
	t.Helper()
	s, err := loader.Open(m.Path, loader.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return loader.NewLoaded(s, version, m.Digest, nil)
}

func scoreJSON(t *testing.T, url, body string) wire.ScoreResponse {
	t.Helper()
	status, b := post(t, url+"/v1/score", body)
	if status != 200 {
		t.Fatalf("status %d: %s", status, b)
	}
	var r wire.ScoreResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func rowBody(key string, v float32) string {
	b, _ := json.Marshal(map[string]any{"features": testutil.Row(v), "key": key})
	return string(b)
}

// twoArms serves v1 as champion and v2 as challenger with the given routing.
func twoArms(t *testing.T, r scorerapi.Routing) (string, *scorerapi.Served, testutil.Model, testutil.Model) {
	t.Helper()
	m1, m2 := testutil.MustModel(t, 1), testutil.MustModel(t, 2)
	served := scorerapi.NewServed("calling-score", fallback.CallingScore{})
	served.Production.Swap(mustLoad(t, m1, 1))
	served.Canary.Swap(mustLoad(t, m2, 2))
	t.Cleanup(func() { served.Production.Close(); served.Canary.Close() })
	served.SetRouting(r)
	return MustServe(t, newScorer(served).Handler()), served, m1, m2
}

func TestABArmsAreStickyAndNamed(t *testing.T) {
	url, _, _, _ := twoArms(t, scorerapi.Routing{Traffic: 50, Mode: "ab", Blend: 1})
	arms := map[string]int{}
	for i := 0; i < 60; i++ {
		key := fmt.Sprintf("user-%d", i)
		first := scoreJSON(t, url, rowBody(key, 0.3))
		for j := 0; j < 3; j++ {
			if again := scoreJSON(t, url, rowBody(key, 0.3)); again.Arm != first.Arm || again.Version != first.Version {
				t.Fatalf("key %s: arm %s then %s", key, first.Arm, again.Arm)
			}
		}
		if (first.Arm == scorerapi.ArmCanary) != (first.Version == 2) {
			t.Fatalf("arm %s answered by v%d", first.Arm, first.Version)
		}
		arms[first.Arm]++
	}
	if arms[scorerapi.ArmProduction] == 0 || arms[scorerapi.ArmCanary] == 0 {
		t.Fatalf("arms over 60 keys at 50%%: %v", arms)
	}
}

func TestShadowNeverChangesTheAnswer(t *testing.T) {
	url, _, m1, _ := twoArms(t, scorerapi.Routing{Traffic: 100, Mode: "shadow", Blend: 1})
	for i := 0; i < 20; i++ {
		v := float32(i) / 20
		r := scoreJSON(t, url, rowBody("", v))
		want := m1.MLP.Forward(testutil.Row(v))[0]
		if r.Arm != scorerapi.ArmProduction || r.Version != 1 || math.Abs(float64(*r.Score-want)) > 1e-5 {
			t.Fatalf("shadow mode answered %+v (score %v), want the champion's %v", r, *r.Score, want)
		}
	}
	waitMetric(t, url, "modelops_scorer_shadow_abs_diff_count")
}

func waitMetric(t *testing.T, url, name string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name) && !strings.HasSuffix(line, " 0") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("metric %s never moved", name)
}

func TestBlendMixesModelAndRules(t *testing.T) {
	url, served, m1, _ := twoArms(t, scorerapi.Routing{Blend: 0.25})
	row := testutil.Row(0.8)
	r := scoreJSON(t, url, rowBody("", 0.8))
	want := 0.25*m1.MLP.Forward(row)[0] + 0.75*served.Rules.Score(row)
	if math.Abs(float64(*r.Score-want)) > 1e-5 || r.Source != scorerapi.SourceModel {
		t.Fatalf("blended score %v (%s), want %v", *r.Score, r.Source, want)
	}
}

func TestNaNOutputFallsBackAndOpensTheBreaker(t *testing.T) {
	served := scorerapi.NewServed("calling-score", fallback.CallingScore{})
	served.Production.Swap(mustLoad(t, testutil.NaNModel(t), 1))
	t.Cleanup(served.Production.Close)
	url := MustServe(t, newScorer(served).Handler())
	row := testutil.Row(0.5)
	for i := 0; i < scoring.BreakerThreshold; i++ {
		r := scoreJSON(t, url, rowBody("", 0.5))
		if r.Source != scorerapi.SourceFallback || r.Reason != fallback.ReasonInvalidOutput || *r.Score != served.Rules.Score(row) {
			t.Fatalf("NaN output answered %+v, want the rules with reason invalid_output", r)
		}
	}
	r := scoreJSON(t, url, rowBody("", 0.5))
	if r.Reason != fallback.ReasonCircuitOpen {
		t.Fatalf("after %d bad outputs: reason %q, want circuit_open", scoring.BreakerThreshold, r.Reason)
	}
}

func TestTimeoutFallsBack(t *testing.T) {
	url, _ := MustScorerAPI(t)
	r := scoreJSON(t, url, `{"rows":[`+strings.TrimSuffix(strings.Repeat("["+nums(39, "0.5")+"],", 4000), ",")+`],"budget_ms":0.001}`)
	if r.Source != scorerapi.SourceFallback || r.Reason != fallback.ReasonTimeout || len(r.Scores) != 4000 {
		t.Fatalf("a 1 µs budget: source %s reason %s, %d scores; want fallback timeout", r.Source, r.Reason, len(r.Scores))
	}
}

func TestMetricsCountRequestsAndFallbacks(t *testing.T) {
	h := newScorer(scorerapi.NewServed("calling-score", fallback.CallingScore{}))
	url := MustServe(t, h.Handler())
	scoreJSON(t, url, rowBody("", 0.1))
	post(t, url+"/v1/score", `{"features":[1]}`)
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`modelops_scorer_requests_total{arm="champion",model="calling-score",source="fallback",version=""} 1`,
		`modelops_scorer_fallbacks_total{arm="champion",model="calling-score",reason="no_model",version=""} 1`,
		`modelops_scorer_refused_total{arm="champion",code="400",model="calling-score",reason="invalid_input",version=""} 1`,
		`modelops_scorer_loaded_version{arm="champion",model="calling-score"} 0`,
		`modelops_scorer_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestBatchedRequestsEachGetTheirOwnRows(t *testing.T) {
	m1, m2 := testutil.MustModel(t, 1), testutil.MustModel(t, 2)
	served := scorerapi.NewServed("calling-score", fallback.CallingScore{})
	first := mustLoad(t, m1, 1)
	served.Production.Swap(first)
	t.Cleanup(served.Production.Close)
	sc := newScorer(served)
	sc.Batcher = loader.NewBatcher(64, 5*time.Millisecond)
	url := MustServe(t, sc.Handler())

	solo := map[int][]float32{}
	for v, m := range map[int]testutil.Model{1: m1, 2: m2} {
		s, err := loader.Open(m.Path, loader.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 64 {
			out, err := s.Run(testutil.Row(float32(i)/64), 1)
			if err != nil {
				t.Fatal(err)
			}
			solo[v] = append(solo[v], out[0])
		}
		s.Close()
	}
	// 64 concurrent requests, three times, the model swapping to v2 in the
	// middle: every answer is its own row's score from the version it names.
	for round := range 3 {
		if round == 1 {
			served.Production.Swap(mustLoad(t, m2, 2))
		}
		errs := make(chan error, 64)
		for i := range 64 {
			go func() {
				resp, err := http.Post(url+"/v1/score", "application/json", strings.NewReader(rowBody("", float32(i)/64)))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var r wire.ScoreResponse
				json.Unmarshal(b, &r)
				switch {
				case resp.StatusCode != 200 || r.Score == nil || r.Source != scorerapi.SourceModel:
					errs <- fmt.Errorf("request %d: %d %s", i, resp.StatusCode, b)
				case *r.Score != solo[r.Version][i]:
					errs <- fmt.Errorf("request %d got %v from v%d, its row scores %v there", i, *r.Score, r.Version, solo[r.Version][i])
				default:
					errs <- nil
				}
			}()
		}
		for range 64 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	runs, rows := sc.Batcher.Stats()
	if rows != 3*64 || runs > rows {
		t.Fatalf("batcher stats: %d runs of %d rows in all, want %d rows", runs, rows, 3*64)
	}
	waitMetric(t, url, "modelops_scorer_batch_rows_count")
}
