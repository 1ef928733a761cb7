// Package monitor watches every version in production. On a scorer, a Recorder
// counts what each (version, arm) answered, cheaply, and a Reporter sends it to the
// control plane every second. On the control plane, the Monitor keeps sliding
// windows, measures error and fallback rates, latency and drift against each card's
// reference, and rolls back a freshly promoted version that breaks its policy.
package report

import (
	"time"
)

// LatencyBucketsMs are the upper edges of the latency histogram, in milliseconds;
// one more bucket counts everything slower.
var LatencyBucketsMs = []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000}

// ShadowDiffEdges are the upper edges of the |challenger − champion| histogram of
// shadow runs; one more bin counts larger differences.
var ShadowDiffEdges = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5}

// PredictionBins is the number of equal-width bins over [0,1] of the prediction
// histogram, used to compare versions with each other.
const PredictionBins = 20

// Report is what a scorer sends every interval; it is also its heartbeat.
type Report struct {
	Node     string        `json:"node"`
	Address  string        `json:"address"`
	Ready    bool          `json:"ready"`
	Time     time.Time     `json:"time"`
	Interval float64       `json:"interval_s"`
	Models   []ModelReport `json:"models"`
}

// ModelReport covers one model on a node.
type ModelReport struct {
	Model   string   `json:"model"`
	Served  []Served `json:"served"`
	Windows []Window `json:"windows"`
	// LoadError is why the node does not serve what the deployment asks for
	// (a version it could not fetch or verify), while that lasts.
	LoadError string `json:"load_error,omitempty"`
}

// Served names what a node serves on one arm.
type Served struct {
	Arm     string `json:"arm"`
	Version int    `json:"version"`
	Digest  string `json:"digest"`
}

// Window holds the counts of one (version, arm) over one interval.
type Window struct {
	Version   int              `json:"version"`
	Arm       string           `json:"arm"`
	Requests  int64            `json:"requests"`
	Rows      int64            `json:"rows"`
	Errors    int64            `json:"errors"`
	Fallbacks map[string]int64 `json:"fallbacks,omitempty"`
	// Refusals count requests answered with an error instead of a score, by
	// reason: "unavailable" (a model without rules that failed, counted among
	// Requests and, when the model failed, Errors) and refusals before a model
	// ran ("invalid_input", "queue_full", "no_capacity", "unknown_version"),
	// which are not requests.
	Refusals map[string]int64 `json:"refusals,omitempty"`
	// Latency counts requests per LatencyBucketsMs bucket (plus one).
	Latency []int64 `json:"latency"`
	// Prediction counts model scores in PredictionBins equal bins over [0,1].
	Prediction []int64 `json:"prediction"`
	// RefPrediction counts model scores over the card's prediction edges.
	RefPrediction []int64 `json:"ref_prediction,omitempty"`
	// Features counts rows per feature over the card's reference edges (in the
	// card's feature order); empty when the card has no reference.
	Features [][]int64 `json:"features,omitempty"`
	// Outcomes joined by feedback: how many, and the summed squared and absolute
	// errors of the scores against them.
	Outcomes  int64   `json:"outcomes,omitempty"`
	OutcomeSE float64 `json:"outcome_se,omitempty"`
	OutcomeAE float64 `json:"outcome_ae,omitempty"`
	// OutcomeSE2 sums the squared errors squared, so the variance of the
	// per-row loss is known to the rollout's sequential test.
	OutcomeSE2 float64 `json:"outcome_se2,omitempty"`
	// ShadowDiff counts |challenger − champion| per row over ShadowDiffEdges, on the
	// challenger's window in shadow mode.
	ShadowDiff []int64 `json:"shadow_diff,omitempty"`
}

// Add merges o into w (same version and arm).
func (w *Window) Add(o Window) {
	w.Requests += o.Requests
	w.Outcomes += o.Outcomes
	w.OutcomeSE += o.OutcomeSE
	w.OutcomeAE += o.OutcomeAE
	w.OutcomeSE2 += o.OutcomeSE2
	w.Rows += o.Rows
	w.Errors += o.Errors
	if len(o.Fallbacks) > 0 && w.Fallbacks == nil {
		w.Fallbacks = map[string]int64{}
	}
	for k, v := range o.Fallbacks {
		w.Fallbacks[k] += v
	}
	if len(o.Refusals) > 0 && w.Refusals == nil {
		w.Refusals = map[string]int64{}
	}
	for k, v := range o.Refusals {
		w.Refusals[k] += v
	}
	w.Latency = addCounts(w.Latency, o.Latency)
	w.Prediction = addCounts(w.Prediction, o.Prediction)
	w.ShadowDiff = addCounts(w.ShadowDiff, o.ShadowDiff)
	w.RefPrediction = addCounts(w.RefPrediction, o.RefPrediction)
	if len(o.Features) > 0 {
		if len(w.Features) != len(o.Features) {
			w.Features = make([][]int64, len(o.Features))
		}
		for i := range o.Features {
			w.Features[i] = addCounts(w.Features[i], o.Features[i])
		}
	}
}

func addCounts(a, b []int64) []int64 {
	if len(b) == 0 {
		return a
	}
	if len(a) != len(b) {
		a = make([]int64, len(b))
	}
	for i, v := range b {
		a[i] += v
	}
	return a
}

// FallbackCount is the total of fallbacks by every reason.
func (w *Window) FallbackCount() int64 {
	var n int64
	for _, v := range w.Fallbacks {
		n += v
	}
	return n
}

// QuantileMs estimates a latency quantile from the histogram: the upper edge of
// the bucket that holds it.
func (w *Window) QuantileMs(q float64) float64 {
	var total int64
	for _, c := range w.Latency {
		total += c
	}
	if total == 0 {
		return 0
	}
	target := int64(q*float64(total) + 0.5)
	if target < 1 {
		target = 1
	}
	var seen int64
	for i, c := range w.Latency {
		seen += c
		if seen >= target {
			if i < len(LatencyBucketsMs) {
				return LatencyBucketsMs[i]
			}
			return LatencyBucketsMs[len(LatencyBucketsMs)-1] * 2
		}
	}
	return 0
}
