// Package eval compares scorers (versions of a model, and its fallback rules) on
// the same rows: error figures, calibration by decile, and a paired bootstrap
// interval on each difference, so that a successor is judged against its
// predecessor on one data set rather than on cards from different test sets.
package eval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Predictions are one scorer's answers for the data's rows, in row order.
type Predictions struct {
	Name   string
	Values []float64
}

// Bin is one decile of a scorer's predictions: how many rows fell in it, their
// mean prediction and the mean of what happened.
type Bin struct {
	Rows      int     `json:"rows"`
	Predicted float64 `json:"predicted"`
	Observed  float64 `json:"observed"`
}

// Figures are one scorer's errors on the rows.
type Figures struct {
	Name string  `json:"name"`
	MSE  float64 `json:"mse"`
	MAE  float64 `json:"mae"`
	R2   float64 `json:"r2"`
	// Calibration is by decile of the prediction, lowest first; a well
	// calibrated scorer's Predicted and Observed agree in every bin.
	Calibration []Bin `json:"calibration"`
	// CalibrationError is the rows-weighted mean |Predicted − Observed|.
	CalibrationError float64 `json:"calibration_error"`
}

// Difference is how one scorer's MSE differs from the baseline's on the same
// rows: MSE minus the baseline's, with a paired bootstrap interval. Below zero
// is better than the baseline.
type Difference struct {
	Name     string  `json:"name"`
	Baseline string  `json:"baseline"`
	MSE      float64 `json:"mse_difference"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
	// Verdict is "better" or "worse" when the interval excludes zero, else
	// "no clear difference".
	Verdict string `json:"verdict"`
}

// Report compares scorers on one data set.
type Report struct {
	Rows        int          `json:"rows"`
	Confidence  float64      `json:"confidence"`
	Resamples   int          `json:"resamples"`
	Figures     []Figures    `json:"figures"`
	Differences []Difference `json:"differences"`
}

// Options of a comparison.
type Options struct {
	// Resamples of the paired bootstrap (default 2,000).
	Resamples int
	// Confidence of the intervals (default 0.95).
	Confidence float64
	// Seed of the bootstrap's draws, so that a report can be made again.
	Seed uint64
}

// ErrRows marks predictions that do not match the outcomes.
var ErrRows = errors.New("predictions do not match the rows")

// Compare computes every scorer's figures against the outcomes y, and each
// scorer's difference from the first (the baseline).
func Compare(y []float64, scorers []Predictions, opt Options) (Report, error) {
	if opt.Resamples <= 0 {
		opt.Resamples = 2000
	}
	if opt.Confidence <= 0 || opt.Confidence >= 1 {
		opt.Confidence = 0.95
	}
	n := len(y)
	if n == 0 {
		return Report{}, fmt.Errorf("%w: no rows", ErrRows)
	}
	for _, s := range scorers {
		if len(s.Values) != n {
			return Report{}, fmt.Errorf("%w: %s has %d predictions for %d rows", ErrRows, s.Name, len(s.Values), n)
		}
		for i, v := range s.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return Report{}, fmt.Errorf("%w: %s answered %v for row %d", ErrRows, s.Name, v, i+1)
			}
		}
	}
	for i, v := range y {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Report{}, fmt.Errorf("%w: outcome of row %d is %v", ErrRows, i+1, v)
		}
	}
	r := Report{Rows: n, Confidence: opt.Confidence, Resamples: opt.Resamples}
	for _, s := range scorers {
		r.Figures = append(r.Figures, figures(s, y))
	}
	if len(scorers) < 2 {
		return r, nil
	}
	// Squared errors per row, so that a resample sums them.
	se := make([][]float64, len(scorers))
	for k, s := range scorers {
		se[k] = make([]float64, n)
		for i, v := range s.Values {
			d := v - y[i]
			se[k][i] = d * d
		}
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0xe7a1))
	diffs := make([][]float64, len(scorers)) // per scorer, per resample
	for k := 1; k < len(scorers); k++ {
		diffs[k] = make([]float64, opt.Resamples)
	}
	sums := make([]float64, len(scorers))
	for b := 0; b < opt.Resamples; b++ {
		clear(sums)
		for range n {
			i := rng.IntN(n)
			for k := range scorers {
				sums[k] += se[k][i]
			}
		}
		for k := 1; k < len(scorers); k++ {
			diffs[k][b] = (sums[k] - sums[0]) / float64(n)
		}
	}
	alpha := (1 - opt.Confidence) / 2
	for k := 1; k < len(scorers); k++ {
		slices.Sort(diffs[k])
		d := Difference{
			Name: scorers[k].Name, Baseline: scorers[0].Name,
			MSE: r.Figures[k].MSE - r.Figures[0].MSE,
			Low: quantile(diffs[k], alpha), High: quantile(diffs[k], 1-alpha),
		}
		switch {
		case d.High < 0:
			d.Verdict = "better"
		case d.Low > 0:
			d.Verdict = "worse"
		default:
			d.Verdict = "no clear difference"
		}
		r.Differences = append(r.Differences, d)
	}
	return r, nil
}

func figures(s Predictions, y []float64) Figures {
	n := float64(len(y))
	var mean float64
	for _, v := range y {
		mean += v
	}
	mean /= n
	var se, ae, tot float64
	for i, v := range s.Values {
		d := v - y[i]
		se += d * d
		ae += math.Abs(d)
		tot += (y[i] - mean) * (y[i] - mean)
	}
	f := Figures{Name: s.Name, MSE: se / n, MAE: ae / n}
	if tot > 0 {
		f.R2 = 1 - se/tot
	}
	// Deciles of the prediction: rows sorted by it, cut into ten equal parts.
	order := make([]int, len(y))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case s.Values[a] < s.Values[b]:
			return -1
		case s.Values[a] > s.Values[b]:
			return 1
		}
		return 0
	})
	for d := 0; d < 10; d++ {
		lo, hi := d*len(order)/10, (d+1)*len(order)/10
		if lo == hi {
			continue
		}
		var b Bin
		for _, i := range order[lo:hi] {
			b.Predicted += s.Values[i]
			b.Observed += y[i]
		}
		b.Rows = hi - lo
		b.Predicted /= float64(b.Rows)
		b.Observed /= float64(b.Rows)
		f.Calibration = append(f.Calibration, b)
		f.CalibrationError += float64(b.Rows) * math.Abs(b.Predicted-b.Observed)
	}
	f.CalibrationError /= n
	return f
}

// quantile of sorted values, by linear interpolation.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}
