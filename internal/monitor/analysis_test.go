package monitor_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/monitor/report"
	"github.com/modelops/modelops/internal/registry"
)

// outcomes adds n rows of outcome loss to w, each the squared error of a
// normal error of variance mse.
func outcomes(rng *rand.Rand, w *report.Window, n int, mse float64) {
	sd := math.Sqrt(mse)
	for range n {
		e := rng.NormFloat64() * sd
		w.Outcomes++
		w.OutcomeSE += e * e
		w.OutcomeSE2 += e * e * e * e
	}
}

// simulate runs rollouts' loss tests: each run adds perLook outcomes to each
// arm and looks, up to looks times, and ends at the first pass or fail. It
// returns the share of runs that passed and failed, and the outcomes per arm
// at which the decisive look came (sorted).
func simulate(seed uint64, runs, looks, perLook int, prodMSE, canaryMSE float64, rp registry.RolloutPolicy) (passed, failed float64, at []int) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var p, f int
	for range runs {
		var c, pr report.Window
		for look := 1; look <= looks; look++ {
			outcomes(rng, &c, perLook, canaryMSE)
			outcomes(rng, &pr, perLook, prodMSE)
			v := monitor.CompareLoss(c, pr, rp.LossMargin, rp.Alpha, rp.MinOutcomes).Verdict
			if v == monitor.Pass {
				p++
			}
			if v == monitor.Fail {
				f++
			}
			if v != monitor.Inconclusive {
				at = append(at, look*perLook)
				break
			}
		}
	}
	slices.Sort(at)
	return float64(p) / float64(runs), float64(f) / float64(runs), at
}

func median(xs []int) int {
	if len(xs) == 0 {
		return -1
	}
	return xs[len(xs)/2]
}

// TestLossTestErrorRates measures the sequential loss test's false-promotion
// rate (a canary worse by exactly the margin passing) and false-abort rate
// (a canary as good as production failing) over 1,000 simulated rollouts
// each, looked at every 100 outcomes per arm up to 20,000, and holds them to
// the stated alpha. It also checks that the test decides: an equal canary
// passes and a canary twice as bad fails in most runs. docs/monitoring.md
// states the figures this prints.
func TestLossTestErrorRates(t *testing.T) {
	rp := registry.DefaultRolloutPolicy()
	const runs, looks, perLook, prod = 1000, 200, 100, 0.01
	pass, fail, at := simulate(1, runs, looks, perLook, prod, prod*(1+rp.LossMargin), rp)
	t.Logf("worse by the margin (%g): false promotion %.3f, failed %.3f", rp.LossMargin, pass, fail)
	if pass > rp.Alpha {
		t.Errorf("false-promotion rate %.3f over %d runs; the test states at most %g", pass, runs, rp.Alpha)
	}
	pass, fail, at = simulate(2, runs, looks, perLook, prod, prod, rp)
	t.Logf("equal: false abort %.3f, passed %.3f, median outcomes per arm to pass %d", fail, pass, median(at))
	if fail > rp.Alpha {
		t.Errorf("false-abort rate %.3f over %d runs; the test states at most %g", fail, runs, rp.Alpha)
	}
	if pass < 0.9 {
		t.Errorf("an equal canary passed in %.3f of runs within %d outcomes per arm; want most", pass, looks*perLook)
	}
	pass, fail, at = simulate(3, runs, looks, perLook, prod, 2*prod, rp)
	t.Logf("twice as bad: failed %.3f, passed %.3f, median outcomes per arm to fail %d", fail, pass, median(at))
	if fail < 0.99 || pass > 0 {
		t.Errorf("a canary twice as bad failed in %.3f and passed in %.3f of runs; want nearly all failed, none passed", fail, pass)
	}
	// A wider margin, as a team might set for a small model: the same bounds.
	rp.LossMargin = 0.5
	pass, _, _ = simulate(4, runs, looks, perLook, prod, prod*1.5, rp)
	_, fail, at = simulate(5, runs, looks, perLook, prod, prod, rp)
	t.Logf("margin 0.5: false promotion %.3f, false abort %.3f, median outcomes per arm to pass an equal canary %d", pass, fail, median(at))
	if pass > rp.Alpha || fail > rp.Alpha {
		t.Errorf("margin 0.5: false promotion %.3f, false abort %.3f; the test states at most %g each", pass, fail, rp.Alpha)
	}
}

// TestLossTestWaitsOnFewOutcomes: below the policy's outcomes the test says
// nothing, whatever the figures.
func TestLossTestWaitsOnFewOutcomes(t *testing.T) {
	c := report.Window{Outcomes: 199, OutcomeSE: 199 * 10, OutcomeSE2: 199 * 100}
	p := report.Window{Outcomes: 5000, OutcomeSE: 50, OutcomeSE2: 0.05}
	if v := monitor.CompareLoss(c, p, 0.1, 0.05, 200).Verdict; v != monitor.Inconclusive {
		t.Fatalf("199 outcomes gave %s; want inconclusive", v)
	}
	c.Outcomes, c.OutcomeSE, c.OutcomeSE2 = 200, 2000, 20000
	if v := monitor.CompareLoss(c, p, 0.1, 0.05, 200).Verdict; v != monitor.Fail {
		t.Fatalf("a canary 1,000 times worse gave %s at 200 outcomes; want fail", v)
	}
}
