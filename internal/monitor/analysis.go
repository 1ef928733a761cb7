package monitor

import (
	"fmt"
	"math"
	"strings"

	"github.com/modelops/modelops/internal/monitor/report"
	"github.com/modelops/modelops/internal/registry"
)

// Verdicts of a rollout's analysis.
const (
	Pass         = "pass"
	Fail         = "fail"
	Inconclusive = "inconclusive"
)

// LossTest compares the canary's outcome loss (squared error per row) with
// production's by an always-valid confidence sequence on
// D = MSE(canary) − (1+margin)·MSE(production): the asymptotic confidence
// sequence of Waudby-Smith, Arnold, Wu, Howard and Ramdas ("Time-uniform
// central limit theory and asymptotic confidence sequences", 2021, Thm 2.2,
// the normal-mixture boundary of Robbins 1970), applied to the difference of
// two independent means with its variance s²c/nc + (1+m)²·s²p/np. Checked as
// often as one likes, its interval misses the true D with probability at most
// alpha, so the test passes (upper bound below 0) a canary worse than the
// margin allows, or fails (lower bound above 0) one within it, with
// probability at most alpha each, however often it looks.
type LossTest struct {
	CanaryOutcomes     int64   `json:"canary_outcomes"`
	ProductionOutcomes int64   `json:"production_outcomes"`
	CanaryMSE          float64 `json:"canary_mse"`
	ProductionMSE      float64 `json:"production_mse"`
	Margin             float64 `json:"margin"`
	// Diff is MSE(canary) − (1+margin)·MSE(production); Lower and Upper bound
	// it at confidence 1−alpha, uniformly over time (absent with too few
	// outcomes: unbounded).
	Diff    float64  `json:"diff"`
	Lower   *float64 `json:"lower,omitempty"`
	Upper   *float64 `json:"upper,omitempty"`
	Alpha   float64  `json:"alpha"`
	Verdict string   `json:"verdict"`
}

// CompareLoss runs the loss test on the outcomes of two windows; with fewer
// than minOutcomes on either arm it is inconclusive.
func CompareLoss(canary, production report.Window, margin, alpha float64, minOutcomes int64) LossTest {
	t := LossTest{CanaryOutcomes: canary.Outcomes, ProductionOutcomes: production.Outcomes, Margin: margin, Alpha: alpha, Verdict: Inconclusive}
	if canary.Outcomes > 0 {
		t.CanaryMSE = canary.OutcomeSE / float64(canary.Outcomes)
	}
	if production.Outcomes > 0 {
		t.ProductionMSE = production.OutcomeSE / float64(production.Outcomes)
	}
	t.Diff = t.CanaryMSE - (1+margin)*t.ProductionMSE
	if canary.Outcomes < minOutcomes || production.Outcomes < minOutcomes {
		return t
	}
	nc, np := float64(canary.Outcomes), float64(production.Outcomes)
	vc := math.Max(canary.OutcomeSE2/nc-t.CanaryMSE*t.CanaryMSE, 0)
	vp := math.Max(production.OutcomeSE2/np-t.ProductionMSE*t.ProductionMSE, 0)
	se := math.Sqrt(vc/nc + (1+margin)*(1+margin)*vp/np)
	r := se * boundary(math.Min(nc, np), float64(minOutcomes), alpha)
	lo, hi := t.Diff-r, t.Diff+r
	t.Lower, t.Upper = &lo, &hi
	switch {
	case hi < 0:
		t.Verdict = Pass
	case lo > 0:
		t.Verdict = Fail
	}
	return t
}

// boundary is the normal-mixture confidence sequence's radius in standard
// errors after n rows, its mixture tuned to be tightest at nStar rows
// (Waudby-Smith et al. 2021, eq. (14) and the choice of ρ below it).
func boundary(n, nStar, alpha float64) float64 {
	l := -2 * math.Log(alpha)
	rho2 := (l + math.Log(l+1)) / nStar
	tr := n * rho2
	return math.Sqrt(2 * (tr + 1) / tr * math.Log(math.Sqrt(tr+1)/alpha))
}

// Interval is the confidence sequence's interval in words.
func (t LossTest) Interval() string {
	if t.Lower == nil || t.Upper == nil {
		return "(-inf, inf)"
	}
	return fmt.Sprintf("[%.4g, %.4g]", *t.Lower, *t.Upper)
}

// Check is one line of an analysis.
type Check struct {
	Name       string  `json:"name"`
	Canary     float64 `json:"canary"`
	Production float64 `json:"production"`
	Limit      float64 `json:"limit"`
	Verdict    string  `json:"verdict"`
	Note       string  `json:"note,omitempty"`
}

// Analysis is a rollout step's judgement of the canary against production
// over the same window.
type Analysis struct {
	Version  int       `json:"version"`
	Phase    string    `json:"phase"` // "shadow" or "ab"
	Requests int64     `json:"canary_requests"`
	Checks   []Check   `json:"checks"`
	Loss     *LossTest `json:"loss,omitempty"`
	Verdict  string    `json:"verdict"`
}

// String is the analysis in one line, for events.
func (a Analysis) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d canary requests", a.Verdict, a.Requests)
	for _, c := range a.Checks {
		fmt.Fprintf(&b, "; %s %.4g vs production %.4g (limit %.4g) %s", c.Name, c.Canary, c.Production, c.Limit, c.Verdict)
		if c.Note != "" {
			fmt.Fprintf(&b, " (%s)", c.Note)
		}
	}
	if l := a.Loss; l != nil {
		fmt.Fprintf(&b, "; outcome MSE %.4g (%d) vs production %.4g (%d), D=%.4g in %s at alpha %g: %s",
			l.CanaryMSE, l.CanaryOutcomes, l.ProductionMSE, l.ProductionOutcomes, l.Diff, l.Interval(), l.Alpha, l.Verdict)
	}
	return b.String()
}

// Analyze judges a canary's window against production's over the same time.
// step holds the health counts of the current step; all holds the outcomes
// since the rollout began. shadow says the canary is a shadow (its window the
// "shadow" arm's). Rate and latency checks fail only past the rollback
// policy's limit and production's own figure; the prediction drift fails past
// the policy's PSI, once both histograms hold enough rows.
func Analyze(canary, production, canaryAll, productionAll report.Window, shadow bool, pol registry.Policy, rp registry.RolloutPolicy) Analysis {
	a := Analysis{Version: canary.Version, Phase: registry.ModeAB, Requests: canary.Requests, Verdict: Pass}
	if shadow {
		a.Phase = registry.ModeShadow
	}
	judge := func(c Check) {
		a.Checks = append(a.Checks, c)
		switch c.Verdict {
		case Fail:
			a.Verdict = Fail
		case Inconclusive:
			if a.Verdict == Pass {
				a.Verdict = Inconclusive
			}
		}
	}
	enough := canary.Requests >= rp.MinRequests
	prodSeen := production.Requests >= rp.MinRequests
	rate := func(name string, c, p int64, limit float64) {
		ch := Check{Name: name, Limit: limit, Verdict: Inconclusive}
		if canary.Requests > 0 {
			ch.Canary = float64(c) / float64(canary.Requests)
		}
		if production.Requests > 0 {
			ch.Production = float64(p) / float64(production.Requests)
		}
		if enough {
			ch.Verdict = Pass
			if ch.Canary > limit && (!prodSeen || ch.Canary > ch.Production) {
				ch.Verdict = Fail
			}
		} else {
			ch.Note = fmt.Sprintf("%d of %d requests", canary.Requests, rp.MinRequests)
		}
		judge(ch)
	}
	if !shadow {
		rate("error_rate", canary.Errors, production.Errors, pol.MaxErrorRate)
		rate("fallback_rate", canary.FallbackCount(), production.FallbackCount(), pol.MaxFallbackRate)
		ch := Check{Name: "p99_ms", Canary: canary.QuantileMs(.99), Production: production.QuantileMs(.99), Limit: pol.MaxP99Ms, Verdict: Inconclusive}
		if enough {
			ch.Verdict = Pass
			if ch.Canary > ch.Limit && (!prodSeen || ch.Canary > ch.Production) {
				ch.Verdict = Fail
			}
		}
		judge(ch)
	}
	// Prediction drift against production's scores over the same window.
	ch := Check{Name: "prediction_psi", Limit: pol.MaxPredPSI, Verdict: Inconclusive}
	minRows := rp.MinScores
	cr, pr := total(canary.Prediction), total(production.Prediction)
	if cr > 0 && pr > 0 && len(canary.Prediction) == len(production.Prediction) {
		ch.Canary = round4(PSICounts(production.Prediction, canary.Prediction))
	}
	switch {
	case cr >= minRows && pr >= minRows:
		ch.Verdict = Pass
		if ch.Canary > ch.Limit {
			ch.Verdict = Fail
		}
	case !shadow && enough && cr >= minRows:
		// Production answered too little of the window to compare with (the
		// canary has most of the traffic): judged by the other checks.
		ch.Verdict = Pass
		ch.Note = fmt.Sprintf("production has %d of %d scores", pr, minRows)
	case shadow || enough:
		ch.Note = fmt.Sprintf("%d and %d of %d scores", cr, pr, minRows)
	default:
		ch.Verdict = Pass // judged with the rates once they have enough requests
	}
	if !shadow && !enough {
		ch.Verdict = Inconclusive
	}
	judge(ch)
	if shadow {
		ch := Check{Name: "shadow_p50_abs_diff", Limit: rp.MaxShadowDiff, Verdict: Inconclusive}
		n := total(canary.ShadowDiff)
		if n > 0 {
			var seen int64
			for i, c := range canary.ShadowDiff {
				seen += c
				if seen*2 >= n {
					ch.Canary = 1
					if i < len(report.ShadowDiffEdges) {
						ch.Canary = report.ShadowDiffEdges[i]
					}
					break
				}
			}
		}
		if n >= rp.MinRequests {
			ch.Verdict = Pass
			if ch.Canary > ch.Limit {
				ch.Verdict = Fail
			}
		} else {
			ch.Note = fmt.Sprintf("%d of %d shadow rows", n, rp.MinRequests)
		}
		judge(ch)
		return a
	}
	lt := CompareLoss(canaryAll, productionAll, rp.LossMargin, rp.Alpha, rp.MinOutcomes)
	a.Loss = &lt
	switch {
	case lt.Verdict == Fail:
		a.Verdict = Fail
	case lt.Verdict == Pass:
	case canaryAll.Outcomes == 0 && productionAll.Outcomes == 0 && !rp.RequireOutcomes:
		// No feedback at all: the step is judged on health alone.
	default:
		if a.Verdict == Pass {
			a.Verdict = Inconclusive
		}
	}
	return a
}
