package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

// The model page shows a running rollout's steps and the monitor's analysis,
// and its pause, resume and abort buttons act behind the confirmation.
func TestDashboardRolloutStepsAnalysisAndButtons(t *testing.T) {
	ctx := context.Background()
	cp, cl := noAuthWithVersions(t, 2)
	if _, err := cl.Promote(ctx, "calling-score", wire.AliasBody{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.StartRollout(ctx, "calling-score", wire.RolloutBody{Version: 2, Steps: []float64{10, 40, 100}}); err != nil {
		t.Fatal(err)
	}
	b, problems := browser(t)
	// No traffic: the first step is current and its analysis inconclusive.
	err := chromedp.Do(b,
		chromedp.Navigate(cp.URL()+"/#/model/calling-score"),
		chromedp.WaitVisible(chromedp.CSS("#rollout-steps")),
		chromedp.Poll[chromedp.Void](`(() => {
			const a = document.querySelector("#rollout-analysis");
			return a && a.textContent.includes("error rate") && a.textContent.includes("inconclusive") &&
				document.querySelector('#rollout-steps li.current[data-step="0"]') !== null;
		})()`, chromedp.WithPollingTimeout(20*time.Second)),
	)
	if err != nil {
		t.Fatalf("the rollout's steps and analysis: %v", err)
	}
	steps, err := textOf(b, "#rollout-steps")
	if err != nil || strings.Join(strings.Fields(steps), " ") != "10% 40% 100%" {
		t.Fatalf("steps read %q (%v)", steps, err)
	}
	press := func(id, state string) {
		t.Helper()
		err := chromedp.Do(b,
			chromedp.Poll[chromedp.Void](`(() => { const b = document.getElementById("`+id+`"); if (!b || b.disabled) return false; b.click(); return true; })()`,
				chromedp.WithPollingTimeout(15*time.Second)),
			chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
			chromedp.Click(chromedp.CSS("#confirm-ok")),
			chromedp.Poll[chromedp.Void](`document.querySelector('#rollout[data-state="`+state+`"]') !== null`, chromedp.WithPollingTimeout(15*time.Second)),
		)
		if err != nil {
			t.Fatalf("%s, then the rollout %s: %v", id, state, err)
		}
		st, err := cl.Rollout(ctx, "calling-score")
		if err != nil || st.Rollout.State != state {
			t.Fatalf("after %s the control plane says %+v (%v), want %s", id, st, err, state)
		}
	}
	press("rollout-pause", registry.RolloutPaused)
	press("rollout-resume", registry.RolloutRunning)
	press("rollout-abort", registry.RolloutAborted)
	m, err := cl.Model(ctx, "calling-score")
	if err != nil || m.Candidate != nil {
		t.Fatalf("after the abort: canary %+v (%v), want none", m.Candidate, err)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("#rollout button").length`)); err != nil || n != 0 {
		t.Fatalf("a finished rollout shows %d buttons (%v)", n, err)
	}
	if len(*problems) > 0 {
		t.Fatalf("browser console: %v", *problems)
	}
}
