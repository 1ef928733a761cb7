package report

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelops/modelops/internal/artifact"
)

// Observation is one answered request, as the scorer saw it.
type Observation struct {
	// Version is the version that was asked (0: none was loaded).
	Version int
	Arm     string
	Rows    int
	// Flat holds the rows' features, Rows × len/Rows.
	Flat []float32
	// Scores are the model's answers; nil when the fallback answered.
	Scores []float32
	// Error is true when the session failed.
	Error bool
	// Fallback is the reason the rules answered, if they did.
	Fallback string
	// Refused, when set, is why the request got no answer at all (a model
	// without rules that failed, or a client that refused the rules' answer).
	Refused string
	Latency time.Duration
}

type accKey struct {
	version int
	arm     string
}

// reference is a version's card edges in input order.
type reference struct {
	features [][]float64
	pred     []float64
}

// FeatureSampleRows bounds the rows of one request whose features are counted for
// drift: all rows of a smaller request, evenly spaced rows of a larger one. Binning
// 39 features costs about 0.4 µs a row, as much as ONNX Runtime spends scoring it
// in a large batch; a sample keeps the drift statistics (which work on
// proportions) while requests, rows, errors and scores are always counted whole.
const FeatureSampleRows = 16

// Recorder counts observations per (version, arm) until the next Flush. It is safe
// for concurrent use and costs well under a microsecond per row.
type Recorder struct {
	mu   sync.Mutex
	accs map[accKey]*Window
	// refs maps versions to their reference edges; replaced whole on change, so
	// Observe reads it without the lock.
	refs atomic.Pointer[map[int]*reference]
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	r := &Recorder{accs: map[accKey]*Window{}}
	r.refs.Store(&map[int]*reference{})
	return r
}

// SetReference records a version's reference edges from its card, so that its
// feature and prediction counts use them. Versions without one count neither.
func (r *Recorder) SetReference(version int, card *artifact.Card) {
	if card == nil || card.Reference == nil || len(card.Features) == 0 {
		return
	}
	ref := &reference{pred: card.Reference.Prediction.Edges}
	for _, name := range card.Features {
		h, ok := card.Reference.Features[name]
		if !ok || len(h.Edges) >= math.MaxUint16 {
			return // a partial (or absurd) reference is no reference
		}
		ref.features = append(ref.features, h.Edges)
	}
	r.mu.Lock()
	refs := map[int]*reference{version: ref}
	for v, old := range *r.refs.Load() {
		if v != version {
			refs[v] = old
		}
	}
	r.refs.Store(&refs)
	r.mu.Unlock()
}

// bin returns the histogram bin of v for inner edges (see artifact.Histogram).
func bin(edges []float64, v float64) int {
	// Linear for the short decile edges: faster than a binary search here.
	if len(edges) <= 16 {
		for i, e := range edges {
			if v <= e {
				return i
			}
		}
		return len(edges)
	}
	return sort.SearchFloat64s(edges, v)
}

func latencyBucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	return bin(LatencyBucketsMs, ms)
}

// Observe counts one request.
func (r *Recorder) Observe(o Observation) {
	ref := (*r.refs.Load())[o.Version]
	// Bin the sampled rows' features before taking the lock.
	var binBuf [FeatureSampleRows * 48]uint16
	var bins []uint16
	sampled := 0
	if ref != nil && o.Rows > 0 && len(o.Flat) == o.Rows*len(ref.features) {
		width := len(ref.features)
		sampled = min(o.Rows, FeatureSampleRows)
		bins = binBuf[:0]
		if sampled*width > len(binBuf) {
			bins = make([]uint16, 0, sampled*width)
		}
		for k := 0; k < sampled; k++ {
			row := k * o.Rows / sampled
			for i, v := range o.Flat[row*width : (row+1)*width] {
				bins = append(bins, uint16(bin(ref.features[i], float64(v))))
			}
		}
	}

	// And count the scores: under the lock, a large request's scores would hold
	// every other request up.
	var predCounts [PredictionBins]int64
	var refBuf [17]int64
	var refCounts []int64
	if ref != nil && len(ref.pred) > 0 {
		refCounts = refBuf[:0]
		if len(ref.pred)+1 > len(refBuf) {
			refCounts = make([]int64, 0, len(ref.pred)+1)
		}
		refCounts = refCounts[:len(ref.pred)+1]
	}
	for _, s := range o.Scores {
		b := int(s * PredictionBins)
		if b >= PredictionBins {
			b = PredictionBins - 1
		} else if b < 0 {
			b = 0
		}
		predCounts[b]++
		if refCounts != nil {
			refCounts[bin(ref.pred, float64(s))]++
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	k := accKey{o.Version, o.Arm}
	w := r.accs[k]
	if w == nil {
		w = &Window{Version: o.Version, Arm: o.Arm, Latency: make([]int64, len(LatencyBucketsMs)+1), Prediction: make([]int64, PredictionBins)}
		r.accs[k] = w
	}
	w.Requests++
	w.Rows += int64(o.Rows)
	w.Latency[latencyBucket(o.Latency)]++
	if o.Error {
		w.Errors++
	}
	if o.Fallback != "" {
		if w.Fallbacks == nil {
			w.Fallbacks = map[string]int64{}
		}
		w.Fallbacks[o.Fallback]++
	}
	if o.Refused != "" {
		if w.Refusals == nil {
			w.Refusals = map[string]int64{}
		}
		w.Refusals[o.Refused]++
	}
	if len(o.Scores) > 0 {
		for b, n := range predCounts {
			w.Prediction[b] += n
		}
		if refCounts != nil {
			if w.RefPrediction == nil {
				w.RefPrediction = make([]int64, len(refCounts))
			}
			for b, n := range refCounts {
				w.RefPrediction[b] += n
			}
		}
	}
	if sampled == 0 {
		return
	}
	if w.Features == nil {
		w.Features = make([][]int64, len(ref.features))
		for i, e := range ref.features {
			w.Features[i] = make([]int64, len(e)+1)
		}
	}
	width := len(ref.features)
	for k := 0; k < sampled; k++ {
		for i, b := range bins[k*width : (k+1)*width] {
			w.Features[i][b]++
		}
	}
}

// Refuse counts a request refused before it reached a model (bad input, over
// capacity, an unknown version) by reason, against version and arm when they
// are known (0 and "" when not). A refusal is not a request: it weighs on no
// rate the monitor judges a version by.
func (r *Recorder) Refuse(version int, arm, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := accKey{version, arm}
	w := r.accs[k]
	if w == nil {
		w = &Window{Version: version, Arm: arm, Latency: make([]int64, len(LatencyBucketsMs)+1), Prediction: make([]int64, PredictionBins)}
		r.accs[k] = w
	}
	if w.Refusals == nil {
		w.Refusals = map[string]int64{}
	}
	w.Refusals[reason]++
}

// ObserveShadow records a shadow run: the challenger's scores and their distance
// from the champion's on the same rows, and the scores against the challenger's
// reference (its prediction drift). The challenger's window counts them as rows
// without requests, so they never weigh on rates.
func (r *Recorder) ObserveShadow(version int, scores, champion []float32) {
	ref := (*r.refs.Load())[version]
	r.mu.Lock()
	defer r.mu.Unlock()
	k := accKey{version, "shadow"}
	w := r.accs[k]
	if w == nil {
		w = &Window{Version: version, Arm: "shadow", Latency: make([]int64, len(LatencyBucketsMs)+1), Prediction: make([]int64, PredictionBins), ShadowDiff: make([]int64, len(ShadowDiffEdges)+1)}
		r.accs[k] = w
	}
	if ref != nil && len(ref.pred) > 0 && w.RefPrediction == nil {
		w.RefPrediction = make([]int64, len(ref.pred)+1)
	}
	for i, s := range scores {
		w.Rows++
		b := int(s * PredictionBins)
		w.Prediction[min(max(b, 0), PredictionBins-1)]++
		if ref != nil && len(w.RefPrediction) == len(ref.pred)+1 {
			w.RefPrediction[bin(ref.pred, float64(s))]++
		}
		d := float64(s - champion[i])
		if d < 0 {
			d = -d
		}
		w.ShadowDiff[bin(ShadowDiffEdges, d)]++
	}
}

// ObserveOutcomes records real outcomes for scores a (version, arm) gave.
func (r *Recorder) ObserveOutcomes(version int, arm string, scores []float32, outcomes []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := accKey{version, arm}
	w := r.accs[k]
	if w == nil {
		w = &Window{Version: version, Arm: arm, Latency: make([]int64, len(LatencyBucketsMs)+1), Prediction: make([]int64, PredictionBins)}
		r.accs[k] = w
	}
	for i, s := range scores {
		e := float64(s) - outcomes[i]
		w.Outcomes++
		w.OutcomeSE += e * e
		w.OutcomeSE2 += e * e * e * e
		if e < 0 {
			e = -e
		}
		w.OutcomeAE += e
	}
}

// Flush returns the counts since the last Flush and starts afresh.
func (r *Recorder) Flush() []Window {
	r.mu.Lock()
	accs := r.accs
	r.accs = map[accKey]*Window{}
	r.mu.Unlock()
	out := make([]Window, 0, len(accs))
	for _, w := range accs {
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Arm < out[j].Arm
	})
	return out
}
