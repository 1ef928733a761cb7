package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

// parseSteps reads "5,25,50,100".
func parseSteps(s string) ([]float64, error) {
	var steps []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("steps %q: want percentages separated by commas, such as 5,25,50,100", s)
		}
		steps = append(steps, v)
	}
	if err := registry.CheckSteps(steps); err != nil {
		return nil, err
	}
	return steps, nil
}

func durationFlag(dst **registry.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 2m")
		}
		rd := registry.Duration(d)
		*dst = &rd
		return nil
	}
}

type rolloutCmd struct {
	*env
	body wire.RolloutBody
}

func (c *rolloutCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout MODEL VERSION [--steps 5,25,50,100] [--interval 2m] [--timeout 30m] [--mode ab] [--shadow 10m] | rollout status|pause|resume|abort|policy MODEL",
		Short: "move a canary's share step by step while the monitor's analysis passes, then promote it",
		Long: "rollout MODEL VERSION starts a progressive rollout: the version becomes the canary at the first step's share, and at each\n" +
			"step the monitor compares it with production over the same window (error and fallback rates, p99, prediction drift,\n" +
			"and outcome loss by a sequential test). A pass moves to the next step, after the last the version is promoted; a fail\n" +
			"clears the canary and rejects the version; a step inconclusive past the timeout clears the canary.\n" +
			"Settings not given come from the model's rollout policy (modelctl rollout policy MODEL).",
		Args: needs(2, 2, "MODEL VERSION"),
		RunE: runs(c), ValidArgsFunction: c.completeModels,
	}
	fs, b := cmd.Flags(), &c.body
	fs.Func("steps", "the canary's shares in percent, increasing (default: the rollout policy's)", func(s string) error {
		steps, err := parseSteps(s)
		b.Steps = steps
		return err
	})
	fs.Func("interval", "least time at each step (e.g. 2m)", durationFlag(&b.Interval))
	fs.Func("timeout", "most time a step may stay inconclusive before the rollout is abandoned", durationFlag(&b.Timeout))
	fs.Func("shadow", "start with a shadow phase this long (e.g. 10m)", durationFlag(&b.Shadow))
	fs.StringVar(&b.Mode, "mode", "ab", "ab: the canary answers its share")
	for _, a := range []string{"pause", "resume", "abort"} {
		cmd.AddCommand(c.action(a))
	}
	cmd.AddCommand((&rolloutStatusCmd{env: c.env}).command(), (&rolloutPolicyCmd{env: c.env}).command())
	return cmd
}

func (c *rolloutCmd) Run(ctx context.Context, args []string) error {
	n, err := versionArg(args[1])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	c.body.Version = n
	ev, err := cl.StartRollout(ctx, args[0], c.body)
	if err != nil {
		return err
	}
	return c.print(ev, func(w io.Writer) {
		fmt.Fprintf(w, "%s rollout of v%d started: %s (revision %d)\n", esc(ev.Model), ev.To, esc(ev.Reason), ev.Revision)
	})
}

type rolloutActionCmd struct {
	*env
	action, reason string
}

func (c *rolloutCmd) action(a string) *cobra.Command {
	v := &rolloutActionCmd{env: c.env, action: a}
	cmd := &cobra.Command{
		Use:   a + " MODEL [--reason TEXT]",
		Short: map[string]string{"pause": "hold the rollout at its step", "resume": "resume a paused rollout (its step starts afresh)", "abort": "end the rollout and clear its canary (the version is not rejected)"}[a],
		Args:  needs(1, 1, "MODEL"),
		RunE:  func(cmd *cobra.Command, args []string) error { return v.Run(cmd.Context(), args) }, ValidArgsFunction: c.completeModels,
	}
	cmd.Flags().StringVar(&v.reason, "reason", "", "why, recorded in the history")
	return cmd
}

func (c *rolloutActionCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	ev, err := cl.RolloutAction(ctx, args[0], c.action, c.reason)
	if err != nil {
		return err
	}
	return c.print(ev, func(w io.Writer) {
		if ev.Unchanged {
			fmt.Fprintf(w, "%s unchanged: the rollout is already %sd (revision %d)\n", esc(ev.Model), strings.TrimSuffix(c.action, "e"), ev.Revision)
			return
		}
		fmt.Fprintf(w, "%s %s: %s (revision %d)\n", esc(ev.Model), esc(strings.ReplaceAll(ev.Kind, "_", " ")), esc(ev.Reason), ev.Revision)
	})
}

type rolloutStatusCmd struct{ *env }

func (c *rolloutStatusCmd) command() *cobra.Command {
	return &cobra.Command{
		Use:   "status MODEL",
		Short: "the rollout's steps, state and latest analysis",
		Args:  needs(1, 1, "MODEL"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
}

func (c *rolloutStatusCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	st, err := cl.Rollout(ctx, args[0])
	if err != nil {
		return err
	}
	return c.print(st, func(out io.Writer) {
		ro := st.Rollout
		if ro == nil {
			fmt.Fprintf(out, "%s has had no rollout\n", esc(st.Model))
			return
		}
		table(out, func(w io.Writer) {
			fmt.Fprintf(w, "version\tv%d\nstate\t%s\n", ro.Version, ro.State)
			var steps []string
			if ro.Shadow > 0 {
				steps = append(steps, mark(ro.Step == -1, "shadow "+time.Duration(ro.Shadow).String()))
			}
			for i, s := range ro.Steps {
				steps = append(steps, mark(ro.Step == i, strconv.FormatFloat(s, 'g', -1, 64)+"%"))
			}
			fmt.Fprintf(w, "steps\t%s\ninterval\t%s\ntimeout\t%s\nstarted\t%s\nstep since\t%s\n", strings.Join(steps, " → "),
				time.Duration(ro.Interval), time.Duration(ro.Timeout), ro.StartedAt.Format(time.RFC3339), ro.StepSince.Format(time.RFC3339))
			if ro.Reason != "" {
				fmt.Fprintf(w, "reason\t%s\n", esc(ro.Reason))
			}
		})
		if a := st.Analysis; a != nil {
			fmt.Fprintf(out, "\nanalysis (%s phase): %s, %d canary requests\n", a.Phase, a.Verdict, a.Requests)
			table(out, func(w io.Writer) {
				fmt.Fprintln(w, "CHECK\tCANARY\tPRODUCTION\tLIMIT\tVERDICT\tNOTE")
				for _, ch := range a.Checks {
					fmt.Fprintf(w, "%s\t%.4g\t%.4g\t%.4g\t%s\t%s\n", ch.Name, ch.Canary, ch.Production, ch.Limit, ch.Verdict, esc(ch.Note))
				}
				if l := a.Loss; l != nil {
					fmt.Fprintf(w, "outcome_mse\t%.4g (%d)\t%.4g (%d)\t×%g\t%s\tD %.4g in %s, alpha %g\n",
						l.CanaryMSE, l.CanaryOutcomes, l.ProductionMSE, l.ProductionOutcomes, 1+l.Margin, l.Verdict, l.Diff, l.Interval(), l.Alpha)
				}
			})
		} else if ro.Analysis != "" {
			fmt.Fprintf(out, "\nlast analysis: %s\n", esc(ro.Analysis))
		}
	})
}

func mark(current bool, s string) string {
	if current {
		return "[" + s + "]"
	}
	return s
}

type rolloutPolicyCmd struct {
	*env
	body wire.RolloutPolicyBody
}

func (c *rolloutPolicyCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy MODEL [--steps 5,25,50,100] [--interval 2m] [--timeout 30m] [--min-requests 100] [--min-scores 400] [--min-outcomes 200] [--require-outcomes] [--loss-margin 0.1] [--alpha 0.05] [--max-shadow-diff 0.2]",
		Short: "show or change the rollout policy",
		Args:  needs(1, 1, "MODEL"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	fs, b := cmd.Flags(), &c.body
	fs.Func("steps", "the canary's shares in percent, increasing", func(s string) error {
		steps, err := parseSteps(s)
		b.Steps = steps
		return err
	})
	fs.Func("interval", "least time at each step", durationFlag(&b.Interval))
	fs.Func("timeout", "most time a step may stay inconclusive", durationFlag(&b.Timeout))
	intFlag := func(name, usage string, dst **int64) {
		fs.Func(name, usage, func(s string) error {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("want a whole number")
			}
			*dst = &v
			return nil
		})
	}
	intFlag("min-requests", "canary requests a step needs before its health is judged", &b.MinRequests)
	intFlag("min-scores", "scores each arm needs before prediction drift is judged", &b.MinScores)
	intFlag("min-outcomes", "outcomes each arm needs before the loss test may decide", &b.MinOutcomes)
	floatFlag := func(name, usage string, dst **float64) {
		fs.Func(name, usage, func(s string) error {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("want a number")
			}
			*dst = &v
			return nil
		})
	}
	floatFlag("loss-margin", "how much worse the canary's outcome MSE may be, relative (0.1: 10%)", &b.LossMargin)
	floatFlag("alpha", "the loss test's false-promotion and false-abort bound", &b.Alpha)
	floatFlag("max-shadow-diff", "largest median |challenger − champion| a shadow phase accepts", &b.MaxShadowDiff)
	fs.Func("require-outcomes", "true: a step waits for the loss test even when no outcomes arrive", func(s string) error {
		v, err := strconv.ParseBool(s)
		b.RequireOutcomes = &v
		return err
	})
	fs.Lookup("require-outcomes").NoOptDefVal = "true"
	return cmd
}

func (c *rolloutPolicyCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var p *registry.RolloutPolicy
	b := c.body
	if b.Steps == nil && b.Interval == nil && b.Timeout == nil && b.MinRequests == nil && b.MinScores == nil && b.MinOutcomes == nil && b.RequireOutcomes == nil &&
		b.LossMargin == nil && b.Alpha == nil && b.MaxShadowDiff == nil {
		p, err = cl.RolloutPolicy(ctx, args[0])
	} else {
		p, err = cl.SetRolloutPolicy(ctx, args[0], b)
	}
	if err != nil {
		return err
	}
	return c.print(p, func(out io.Writer) {
		table(out, func(w io.Writer) {
			steps := make([]string, len(p.Steps))
			for i, s := range p.Steps {
				steps[i] = strconv.FormatFloat(s, 'g', -1, 64) + "%"
			}
			fmt.Fprintf(w, "steps\t%s\ninterval\t%s\ntimeout\t%s\nmin requests\t%d\nmin scores\t%d\nmin outcomes\t%d\nrequire outcomes\t%t\nloss margin\t%g\nalpha\t%g\nmax shadow diff\t%g\n",
				strings.Join(steps, ", "), time.Duration(p.Interval), time.Duration(p.Timeout), p.MinRequests, p.MinScores, p.MinOutcomes, p.RequireOutcomes, p.LossMargin, p.Alpha, p.MaxShadowDiff)
		})
	})
}
