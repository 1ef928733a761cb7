package report

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/artifact"
)

func TestRecorderCountsPerVersionAndArm(t *testing.T) {
	r := NewRecorder()
	r.SetReference(3, referenceCard())
	flat := make([]float32, 2*referenceFeatures)
	for i := range flat {
		flat[i] = 0.95
	}
	r.Observe(Observation{Version: 3, Arm: "champion", Rows: 2, Flat: flat, Scores: []float32{0.2, 0.9}, Latency: 300 * time.Microsecond})
	r.Observe(Observation{Version: 3, Arm: "champion", Rows: 1, Flat: flat[:referenceFeatures], Fallback: "invalid_output", Latency: time.Millisecond})
	r.Observe(Observation{Version: 4, Arm: "challenger", Rows: 1, Flat: flat[:referenceFeatures], Error: true, Fallback: "model_error"})
	ws := r.Flush()
	if len(ws) != 2 {
		t.Fatalf("%d windows, want 2", len(ws))
	}
	w := ws[0]
	if w.Version != 3 || w.Requests != 2 || w.Rows != 3 || w.Fallbacks["invalid_output"] != 1 || w.Errors != 0 {
		t.Fatalf("window %+v", w)
	}
	if w.Features[0][9] != 3 || w.RefPrediction[0] != 1 || w.RefPrediction[1] != 1 || w.Prediction[4] != 1 || w.Prediction[18] != 1 {
		t.Fatalf("histograms: referenceFeatures[0] %v, ref prediction %v, prediction %v", w.Features[0], w.RefPrediction, w.Prediction)
	}
	if ws[1].Errors != 1 || ws[1].Features != nil {
		t.Fatalf("challenger window %+v", ws[1])
	}
	if len(r.Flush()) != 0 {
		t.Fatal("Flush did not start afresh")
	}
}

// BenchmarkRecorderObservePerRow measures monitoring's cost per scored row (one
// row per request, 39 referenceFeatures binned, prediction binned). Target: under 1 µs.
func BenchmarkRecorderObservePerRow(b *testing.B) {
	r := NewRecorder()
	r.SetReference(1, referenceCard())
	rng := rand.New(rand.NewPCG(1, 2))
	flat := make([]float32, referenceFeatures)
	for i := range flat {
		flat[i] = rng.Float32()
	}
	scores := []float32{0.42}
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(Observation{Version: 1, Arm: "champion", Rows: 1, Flat: flat, Scores: scores, Latency: 400 * time.Microsecond})
	}
}

func TestShadowRunsAreCountedApart(t *testing.T) {
	r := NewRecorder()
	r.ObserveShadow(2, []float32{0.5, 0.7}, []float32{0.5, 0.4})
	ws := r.Flush()
	if len(ws) != 1 || ws[0].Arm != "shadow" || ws[0].Requests != 0 || ws[0].Rows != 2 || ws[0].ShadowDiff[0] != 1 || ws[0].ShadowDiff[7] != 1 {
		t.Fatalf("shadow window %+v", ws)
	}
	if ws[0].RefPrediction != nil {
		t.Fatalf("without a reference a shadow window counts no reference bins: %v", ws[0].RefPrediction)
	}
	// With the challenger's reference, its shadow scores are binned against it,
	// so its prediction drift is measured before it takes any traffic.
	r.SetReference(2, referenceCard())
	r.ObserveShadow(2, []float32{0.5, 0.7, 0.9}, []float32{0.5, 0.4, 0.9})
	ws = r.Flush()
	if len(ws) != 1 || len(ws[0].RefPrediction) != 2 || ws[0].RefPrediction[0] != 1 || ws[0].RefPrediction[1] != 2 {
		t.Fatalf("shadow window against the reference's prediction edges [.5]: %+v", ws)
	}
}

func TestLargeRequestsSampleFeaturesButCountEveryRow(t *testing.T) {
	r := NewRecorder()
	r.SetReference(1, referenceCard())
	rng := rand.New(rand.NewPCG(3, 4))
	for _, rows := range []int{256, 5} {
		flat := make([]float32, rows*referenceFeatures)
		for i := range flat {
			flat[i] = rng.Float32()
		}
		scores := make([]float32, rows)
		for i := range scores {
			scores[i] = rng.Float32()
		}
		r.Observe(Observation{Version: 1, Arm: "champion", Rows: rows, Flat: flat, Scores: scores})
	}
	ws := r.Flush()
	if len(ws) != 1 {
		t.Fatalf("windows %+v", ws)
	}
	w := ws[0]
	sum := func(c []int64) (n int64) {
		for _, v := range c {
			n += v
		}
		return n
	}
	if w.Requests != 2 || w.Rows != 261 || sum(w.Prediction) != 261 || sum(w.RefPrediction) != 261 {
		t.Fatalf("requests %d rows %d predictions %d ref predictions %d, want 2, 261, 261, 261", w.Requests, w.Rows, sum(w.Prediction), sum(w.RefPrediction))
	}
	want := int64(FeatureSampleRows + 5)
	for i, f := range w.Features {
		if sum(f) != want {
			t.Fatalf("feature %d counts %d rows, want %d (%d sampled of 256, all 5 of 5)", i, sum(f), want, FeatureSampleRows)
		}
	}
}

// BenchmarkRecorderObserve256Rows measures monitoring's cost for one 256-row
// request: scores counted whole, referenceFeatures sampled.
func BenchmarkRecorderObserve256Rows(b *testing.B) {
	r := NewRecorder()
	r.SetReference(1, referenceCard())
	rng := rand.New(rand.NewPCG(1, 2))
	flat := make([]float32, 256*referenceFeatures)
	for i := range flat {
		flat[i] = rng.Float32()
	}
	scores := make([]float32, 256)
	for i := range scores {
		scores[i] = rng.Float32()
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(Observation{Version: 1, Arm: "champion", Rows: 256, Flat: flat, Scores: scores, Latency: 400 * time.Microsecond})
	}
}

func referenceCard() *artifact.Card {
	c := &artifact.Card{Reference: &artifact.Reference{Features: map[string]artifact.Histogram{}, Prediction: artifact.Histogram{Edges: []float64{.5}, Proportions: []float64{.5, .5}}}}
	edges := []float64{.1, .2, .3, .4, .5, .6, .7, .8, .9}
	for i := 0; i < referenceFeatures; i++ {
		name := string(rune('a'+i%26)) + string(rune('a'+i/26))
		c.Features = append(c.Features, name)
		c.Reference.Features[name] = artifact.Histogram{Edges: edges, Proportions: referenceTenths}
	}
	return c
}

const referenceFeatures = 39

var referenceTenths = []float64{.1, .1, .1, .1, .1, .1, .1, .1, .1, .1}
