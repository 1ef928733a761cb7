package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/wire"
)

type statusCmd struct {
	*env
	watch    bool
	interval time.Duration
}

func (c *statusCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [MODEL] [--watch [--interval 2s]]",
		Short: "health per version and arm (requests, errors, fallbacks, latency, drift) and the scorer fleet",
		Args:  needs(0, 1, "at most one MODEL"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	cmd.Flags().BoolVarP(&c.watch, "watch", "w", false, "redraw every --interval until Ctrl-C (with -o json or yaml: one document each time)")
	cmd.Flags().DurationVar(&c.interval, "interval", 2*time.Second, "with --watch: how often to redraw")
	return cmd
}

// statusView is what status prints: the models' health and the fleet.
type statusView struct {
	models  []registry.Model
	Healths []*monitor.ModelHealth `json:"models"`
	Fleet   []monitor.NodeState    `json:"fleet"`
	// Leader, with several replicas on etcd, says which runs the monitor.
	Leader *wire.LeaderInfo `json:"leader,omitempty"`
}

func (c *statusCmd) Run(ctx context.Context, args []string) error {
	if !c.watch {
		return c.once(ctx, args, c.stdout)
	}
	if c.interval < 100*time.Millisecond {
		return fmt.Errorf("--interval %s: want 100ms or more", c.interval)
	}
	clear := isTerminal(c.stdout) && c.out.format == "table"
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		// Each frame is drawn whole, then shown at once: no half-drawn screen.
		var frame bytes.Buffer
		if clear {
			frame.WriteString("\x1b[H\x1b[2J") // home, clear: our own, not the server's
		}
		if c.out.format == "table" {
			fmt.Fprintf(&frame, "every %s: modelctl status   %s\n\n", c.interval, time.Now().Format("15:04:05"))
		}
		if err := c.once(ctx, args, &frame); err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C while asking
			}
			// A control plane away for a moment is shown, not fatal.
			fmt.Fprintf(&frame, "%s\n", escText(err.Error()))
		}
		if _, err := c.stdout.Write(frame.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// once asks for the status and prints it to w.
func (c *statusCmd) once(ctx context.Context, args []string, w io.Writer) error {
	v, err := c.fetch(ctx, args)
	if err != nil {
		return err
	}
	out := *c.env
	out.stdout = w
	return out.print(v, func(w io.Writer) { v.table(w) })
}

func (c *statusCmd) fetch(ctx context.Context, args []string) (*statusView, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	v := &statusView{}
	if len(args) == 1 {
		m, err := cl.Model(ctx, args[0])
		if err != nil {
			return nil, err
		}
		v.models = append(v.models, m.Model)
	} else if v.models, err = cl.Models(ctx); err != nil {
		return nil, err
	}
	v.Healths = []*monitor.ModelHealth{}
	for _, m := range v.models {
		h, err := cl.Health(ctx, m.Name)
		if err != nil {
			return nil, err
		}
		v.Healths = append(v.Healths, h)
	}
	if v.Fleet, err = cl.Fleet(ctx); err != nil {
		return nil, err
	}
	if v.Fleet == nil {
		v.Fleet = []monitor.NodeState{}
	}
	// Several replicas on etcd: say which runs the monitor (one without an
	// answer is no reason to withhold the rest).
	v.Leader, _ = cl.Leader(ctx)
	return v, nil
}

func (v *statusView) table(out io.Writer) {
	if v.Leader != nil {
		where := esc(v.Leader.Monitor)
		if where == "" {
			where = "no replica yet (an election is under way)"
		}
		fmt.Fprintf(out, "monitor runs on %s (asked %s)\n\n", where, esc(v.Leader.Self))
	}
	for i, h := range v.Healths {
		fmt.Fprintf(out, "%s  production %s  canary %s  blend %g  (window %s)\n", esc(h.Model), orDash(h.Production), esc(canaryString(v.models[i].Candidate)), v.models[i].BlendWeight(), esc(h.Window))
		if len(h.Arms) == 0 {
			fmt.Fprintln(out, "  no traffic reported in the window")
		} else {
			table(out, func(w io.Writer) {
				fmt.Fprintln(w, "  VERSION\tARM\tREQ/S\tERRORS\tFALLBACKS\tP50\tP99\tOUTCOMES\tMSE\tMAE\tDRIFT")
				for _, a := range h.Arms {
					drift := a.Drift
					if a.Drift == monitor.DriftTooFewRows {
						drift = fmt.Sprintf("too few rows (%d of %d)", a.DriftRows, a.DriftMinRows)
					} else if a.MaxPSIFeat != "" {
						drift = fmt.Sprintf("%s (PSI %.3f %s, pred %.3f)", a.Drift, a.MaxPSI, a.MaxPSIFeat, a.PredPSI)
					}
					mse, mae := "-", "-"
					if a.Outcomes > 0 {
						mse, mae = fmt.Sprintf("%.4f", a.OutcomeMSE), fmt.Sprintf("%.4f", a.OutcomeMAE)
					}
					if drift == "" {
						drift = "no reference"
					}
					// A shadow run answers no requests: no rates or latency of its own.
					rate, errs, fbs, p50, p99 := fmt.Sprintf("%.1f", a.RequestRate), fmt.Sprintf("%.2f%%", 100*a.ErrorRate), fmt.Sprintf("%.2f%%", 100*a.FallbackRate), fmt.Sprintf("%gms", a.P50Ms), fmt.Sprintf("%gms", a.P99Ms)
					if a.Requests == 0 {
						rate, errs, fbs, p50, p99 = "-", "-", "-", "-", "-"
					}
					version := fmt.Sprintf("v%d", a.Version)
					if a.Version == 0 {
						version = monitor.NoModel
					}
					fmt.Fprintln(w, "  "+cells(version, a.Arm, rate, errs, fbs, p50, p99, a.Outcomes, mse, mae, drift))
				}
			})
		}
		fmt.Fprintln(out)
	}
	if len(v.Fleet) == 0 {
		fmt.Fprintln(out, "no scorer nodes have reported")
		return
	}
	table(out, func(w io.Writer) {
		fmt.Fprintln(w, "NODE\tREADY\tSERVES\tLAST REPORT")
		for _, n := range v.Fleet {
			var serves []string
			for _, s := range n.Served {
				serves = append(serves, fmt.Sprintf("%s v%d (%s)", s.Model, s.Version, s.Arm))
			}
			if len(serves) == 0 {
				serves = []string{"-"} // the rules answer, or nothing does
			}
			ready := fmt.Sprint(n.Ready)
			if n.Silent {
				ready = "silent" // its last word on readiness may no longer hold
			}
			fmt.Fprintln(w, cells(n.Node, ready, strings.Join(serves, ", "), time.Since(n.LastReport).Round(time.Second).String()+" ago"))
		}
	})
	// A node that cannot serve what it was asked to says why, under the table.
	for _, n := range v.Fleet {
		for _, m := range slices.Sorted(maps.Keys(n.LoadErrors)) {
			fmt.Fprintf(out, "%s cannot serve %s's deployment: %s\n", esc(n.Node), esc(m), esc(n.LoadErrors[m]))
		}
	}
}

type policyCmd struct {
	*env
	body wire.PolicyBody
}

func (c *policyCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy MODEL [--max-error-rate 0.01] [--max-fallback-rate 0.05] [--max-p99-ms 50] [--max-prediction-psi 0.25] [--min-samples 100] [--bake-time 10m] [--failure-limit 3] [--corroborating-nodes 2]",
		Short: "show or change the rollback policy",
		Args:  needs(1, 1, "MODEL"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
	fs, b := cmd.Flags(), &c.body
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
	floatFlag("max-error-rate", "largest error rate a new version may show (0–1)", &b.MaxErrorRate)
	floatFlag("max-fallback-rate", "largest fallback rate (0–1)", &b.MaxFallbackRate)
	floatFlag("max-p99-ms", "largest p99 latency in milliseconds", &b.MaxP99Ms)
	floatFlag("max-prediction-psi", "largest prediction PSI against the previous version", &b.MaxPredPSI)
	fs.Func("min-samples", "requests needed before judging", func(s string) error {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		b.MinSamples = &v
		return nil
	})
	fs.Func("bake-time", "how long after a promotion a version is judged (e.g. 10m)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		rd := registry.Duration(d)
		b.BakeTime = &rd
		return nil
	})
	fs.Func("failure-limit", "consecutive failing evaluations before acting", func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		b.FailureLimit = &v
		return nil
	})
	fs.Func("corroborating-nodes", "nodes that must each see a breach before a version served by several is rolled back", func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		b.CorroboratingNodes = &v
		return nil
	})
	return cmd
}

func (c *policyCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var p *registry.Policy
	if c.body == (wire.PolicyBody{}) {
		p, err = cl.Policy(ctx, args[0])
	} else {
		p, err = cl.SetPolicy(ctx, args[0], c.body)
	}
	if err != nil {
		return err
	}
	return c.print(p, func(out io.Writer) {
		table(out, func(w io.Writer) {
			fmt.Fprintf(w, "max error rate\t%g\nmax fallback rate\t%g\nmax p99\t%g ms\nmax prediction PSI\t%g\nmin samples\t%d\nbake time\t%s\nfailure limit\t%d\ncorroborating nodes\t%d\n",
				p.MaxErrorRate, p.MaxFallbackRate, p.MaxP99Ms, p.MaxPredPSI, p.MinSamples, time.Duration(p.BakeTime), p.FailureLimit, p.CorroboratingNodes)
		})
	})
}
