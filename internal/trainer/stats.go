package trainer

import (
	"math"
	"sort"

	"github.com/modelops/modelops/internal/artifact"
)

// Metrics compare predictions with labels.
type Metrics struct {
	MSE float64 `json:"mse"`
	MAE float64 `json:"mae"`
	R2  float64 `json:"r2"`
}

// Score computes MSE, MAE and R² of pred against y.
func Score(pred, y []float64) Metrics {
	var mean float64
	for _, v := range y {
		mean += v
	}
	mean /= float64(len(y))
	var se, ae, tot float64
	for i := range y {
		e := pred[i] - y[i]
		se += e * e
		ae += math.Abs(e)
		d := y[i] - mean
		tot += d * d
	}
	n := float64(len(y))
	m := Metrics{MSE: round(se / n), MAE: round(ae / n)}
	if tot > 0 {
		m.R2 = round(1 - se/tot)
	}
	return m
}

// Histogram is a reference distribution (deciles, with ties merged).
type Histogram = artifact.Histogram

// Deciles builds a Histogram from values: edges at the 10th…90th percentiles.
func Deciles(values []float64) Histogram {
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	var edges []float64
	for q := 1; q <= 9; q++ {
		e := round(s[(len(s)-1)*q/10])
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	h := Histogram{Edges: edges, Proportions: make([]float64, len(edges)+1)}
	for _, v := range values {
		h.Proportions[Bin(edges, v)]++
	}
	for i := range h.Proportions {
		h.Proportions[i] = round(h.Proportions[i] / float64(len(values)))
	}
	return h
}

// Bin returns the bin of v for the inner edges.
func Bin(edges []float64, v float64) int {
	return sort.SearchFloat64s(edges, v)
}

// Summary describes one column.
type Summary struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// Summarize computes a column's summary.
func Summarize(values []float64) Summary {
	s := Summary{Min: math.Inf(1), Max: math.Inf(-1)}
	for _, v := range values {
		s.Mean += v
		s.Min = math.Min(s.Min, v)
		s.Max = math.Max(s.Max, v)
	}
	s.Mean /= float64(len(values))
	for _, v := range values {
		s.Std += (v - s.Mean) * (v - s.Mean)
	}
	s.Std = math.Sqrt(s.Std / float64(len(values)))
	s.Mean, s.Std, s.Min, s.Max = round(s.Mean), round(s.Std), round(s.Min), round(s.Max)
	return s
}

// round keeps 6 significant decimals, so cards read well and stay stable.
func round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	return math.Round(v*1e6) / 1e6
}

// Column returns column i of d.
func (d *Dataset) Column(i int) []float64 {
	out := make([]float64, d.Len())
	for r, x := range d.X {
		out[r] = x[i]
	}
	return out
}
