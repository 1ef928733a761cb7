package monitor

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/modelops/modelops/internal/monitor/report"
)

// normalDeciles are the inner decile edges of N(0,1).
var normalDeciles = []float64{-1.2816, -0.8416, -0.5244, -0.2533, 0, 0.2533, 0.5244, 0.8416, 1.2816}

var tenths = []float64{.1, .1, .1, .1, .1, .1, .1, .1, .1, .1}

func counts(rng *rand.Rand, n int, shift float64) []int64 {
	c := make([]int64, len(normalDeciles)+1)
	for i := 0; i < n; i++ {
		c[binOf(normalDeciles, rng.NormFloat64()+shift)]++
	}
	return c
}

const features = 39

// windowAlarm reports whether any of 39 features is flagged in one window of n
// rows, the last feature shifted by shift standard deviations.
func windowAlarm(rng *rand.Rand, n int, shift float64) bool {
	alarm := false
	for f := 0; f < features; f++ {
		s := 0.0
		if f == features-1 {
			s = shift
		}
		if d, _ := Drifted(tenths, counts(rng, n, s), features, 220); d {
			alarm = true
		}
	}
	return alarm
}

func TestReferenceTrafficRaisesAlmostNoAlarms(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	alarms := 0
	for w := 0; w < 1000; w++ {
		if windowAlarm(rng, 1000, 0) {
			alarms++
		}
	}
	if alarms > 1 {
		t.Fatalf("%d false alarms in 1000 windows of reference traffic, want at most 1", alarms)
	}
}

func TestHalfSigmaShiftIsFoundWithinTwoWindows(t *testing.T) {
	found := 0
	for trial := 0; trial < 100; trial++ {
		rng := rand.New(rand.NewPCG(uint64(trial), 99))
		if windowAlarm(rng, 1000, 0.5) || windowAlarm(rng, 1000, 0.5) {
			found++
		}
	}
	if found < 95 {
		t.Fatalf("a 0.5σ shift was found within 2 windows in %d of 100 trials, want at least 95", found)
	}
}

func TestSmallWindowsRaiseNoAlarm(t *testing.T) {
	// 50 rows of a strongly shifted feature: below the minimum, no verdict.
	rng := rand.New(rand.NewPCG(1, 1))
	if d, _ := Drifted(tenths, counts(rng, 50, 2), features, 220); d {
		t.Fatal("a 50-row window raised an alarm")
	}
}

func TestPSIAndKS(t *testing.T) {
	if p := PSI(tenths, []int64{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}); p != 0 {
		t.Fatalf("PSI of identical distributions = %v", p)
	}
	if p := PSI(tenths, []int64{100, 0, 0, 0, 0, 0, 0, 0, 0, 0}); p < 1 {
		t.Fatalf("PSI of all mass in one decile = %v, want large", p)
	}
	if d, n := KS(tenths, []int64{0, 0, 0, 0, 0, 10, 10, 10, 10, 10}); math.Abs(d-0.5) > 1e-9 || n != 50 {
		t.Fatalf("KS = %v over %d, want 0.5 over 50", d, n)
	}
}

func TestWindowQuantiles(t *testing.T) {
	w := report.Window{Latency: make([]int64, len(report.LatencyBucketsMs)+1)}
	w.Latency[3] = 98 // ≤ 1 ms
	w.Latency[8] = 2  // ≤ 50 ms
	if q := w.QuantileMs(.5); q != 1 {
		t.Fatalf("p50 = %v, want 1", q)
	}
	if q := w.QuantileMs(.99); q != 50 {
		t.Fatalf("p99 = %v, want 50", q)
	}
}

// binOf is the bin of v among edges, as the recorder bins a value.
func binOf(edges []float64, v float64) int { return sort.SearchFloat64s(edges, v) }
