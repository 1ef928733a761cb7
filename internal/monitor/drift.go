package monitor

import "math"

// Drift thresholds for the population stability index.
const (
	PSIWarn = 0.1
	PSIAct  = 0.25
)

// psiFloor keeps empty bins from making the index infinite.
const psiFloor = 1e-4

// PSI is the population stability index of observed counts against expected
// proportions over the same bins: Σ (a−e)·ln(a/e).
func PSI(expected []float64, observed []int64) float64 {
	if len(expected) != len(observed) {
		return math.NaN()
	}
	var total int64
	for _, c := range observed {
		total += c
	}
	if total == 0 {
		return 0
	}
	var psi float64
	for i, e := range expected {
		a := float64(observed[i]) / float64(total)
		a, e = math.Max(a, psiFloor), math.Max(e, psiFloor)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// PSICounts compares two observed histograms over the same bins.
func PSICounts(expected, observed []int64) float64 {
	var total int64
	for _, c := range expected {
		total += c
	}
	if total == 0 {
		return 0
	}
	exp := make([]float64, len(expected))
	for i, c := range expected {
		exp[i] = float64(c) / float64(total)
	}
	return PSI(exp, observed)
}

// Status grades a PSI: green below PSIWarn, amber below PSIAct, red above.
func Status(psi float64) string {
	switch {
	case psi >= PSIAct:
		return "red"
	case psi >= PSIWarn:
		return "amber"
	}
	return "green"
}
