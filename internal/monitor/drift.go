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

// DriftAlpha is the family-wise false-alarm rate of the KS tests in one window,
// split over the features by Bonferroni.
const DriftAlpha = 0.001

// KS is the Kolmogorov–Smirnov statistic of observed counts against expected
// proportions over the same bins: the largest gap between the two cumulative
// distributions at the bin edges. It also returns the sample size.
func KS(expected []float64, observed []int64) (float64, int64) {
	var n int64
	for _, c := range observed {
		n += c
	}
	if n == 0 || len(expected) != len(observed) {
		return 0, n
	}
	var ce, co, d float64
	for i := range expected {
		ce += expected[i]
		co += float64(observed[i]) / float64(n)
		d = math.Max(d, math.Abs(ce-co))
	}
	return d, n
}

// KSCritical is the one-sample KS critical value at level alpha for n samples.
func KSCritical(n int64, alpha float64) float64 {
	return math.Sqrt(-0.5*math.Log(alpha/2)) / math.Sqrt(float64(n))
}

// Drifted says whether a feature has drifted: PSI at the act level, or a KS test
// significant at DriftAlpha/tests (Bonferroni over the features tested together)
// with PSI at least at the warning level. Below minRows it never says so.
func Drifted(expected []float64, observed []int64, tests int, minRows int64) (bool, float64) {
	psi := PSI(expected, observed)
	d, n := KS(expected, observed)
	if n < minRows {
		return false, psi
	}
	if psi >= PSIAct {
		return true, psi
	}
	return psi >= PSIWarn && d > KSCritical(n, DriftAlpha/float64(max(1, tests))), psi
}
