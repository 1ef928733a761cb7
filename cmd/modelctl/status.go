package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/monitor"
	"github.com/modelops/modelops/internal/registry"
)

type statusCmd struct{ *env }

func (c *statusCmd) Usage() string {
	return "status [MODEL]   health per version and arm (requests, errors, fallbacks, latency, drift) and the scorer fleet"
}

func (c *statusCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "status")
	cf := c.clientFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		fs.Usage()
		return fmt.Errorf("status takes at most one MODEL")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var models []registry.Model
	if len(pos) == 1 {
		m, err := cl.Model(ctx, pos[0])
		if err != nil {
			return err
		}
		models = append(models, m.Model)
	} else {
		if models, err = cl.Models(ctx); err != nil {
			return err
		}
	}
	var healths []*monitor.ModelHealth
	for _, m := range models {
		h, err := cl.Health(ctx, m.Name)
		if err != nil {
			return err
		}
		healths = append(healths, h)
	}
	fleet, err := cl.Fleet(ctx)
	if err != nil {
		return err
	}
	// Several replicas on etcd: say which runs the monitor (one without an
	// answer is no reason to withhold the rest).
	leader, _ := cl.Leader(ctx)
	if cf.output == "json" {
		out := map[string]any{"models": healths, "fleet": fleet}
		if leader != nil {
			out["leader"] = leader
		}
		return c.printJSON(out)
	}
	if leader != nil {
		where := leader.Monitor
		if where == "" {
			where = "no replica yet (an election is under way)"
		}
		fmt.Fprintf(c.stdout, "monitor runs on %s (asked %s)\n\n", where, leader.Self)
	}
	for i, h := range healths {
		fmt.Fprintf(c.stdout, "%s  production %s  canary %s  blend %g  (window %s)\n", h.Model, orDash(h.Production), canaryString(models[i].Candidate), models[i].BlendWeight(), h.Window)
		if len(h.Arms) == 0 {
			fmt.Fprintln(c.stdout, "  no traffic reported in the window")
		} else {
			c.table(func(w io.Writer) {
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
					fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", version, a.Arm, rate, errs, fbs, p50, p99, a.Outcomes, mse, mae, drift)
				}
			})
		}
		fmt.Fprintln(c.stdout)
	}
	if len(fleet) == 0 {
		fmt.Fprintln(c.stdout, "no scorer nodes have reported")
		return nil
	}
	c.table(func(w io.Writer) {
		fmt.Fprintln(w, "NODE\tREADY\tSERVES\tLAST REPORT")
		for _, n := range fleet {
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
			fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\n", n.Node, ready, strings.Join(serves, ", "), time.Since(n.LastReport).Round(time.Second))
		}
	})
	// A node that cannot serve what it was asked to says why, under the table.
	for _, n := range fleet {
		for _, m := range slices.Sorted(maps.Keys(n.LoadErrors)) {
			fmt.Fprintf(c.stdout, "%s cannot serve %s's deployment: %s\n", n.Node, m, n.LoadErrors[m])
		}
	}
	return nil
}

type policyCmd struct{ *env }

func (c *policyCmd) Usage() string {
	return "policy MODEL [--max-error-rate 0.01] [--max-fallback-rate 0.05] [--max-p99-ms 50] [--max-prediction-psi 0.25] [--min-samples 100] [--bake-time 10m] [--failure-limit 3] [--corroborating-nodes 2]   show or change the rollback policy"
}

func (c *policyCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "policy")
	cf := c.clientFlags(fs)
	var b api.PolicyBody
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
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("policy needs MODEL")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var p *registry.Policy
	if b == (api.PolicyBody{}) {
		p, err = cl.Policy(ctx, pos[0])
	} else {
		p, err = cl.SetPolicy(ctx, pos[0], b)
	}
	if err != nil {
		return err
	}
	if cf.output == "json" {
		return c.printJSON(p)
	}
	c.table(func(w io.Writer) {
		fmt.Fprintf(w, "max error rate\t%g\nmax fallback rate\t%g\nmax p99\t%g ms\nmax prediction PSI\t%g\nmin samples\t%d\nbake time\t%s\nfailure limit\t%d\ncorroborating nodes\t%d\n",
			p.MaxErrorRate, p.MaxFallbackRate, p.MaxP99Ms, p.MaxPredPSI, p.MinSamples, time.Duration(p.BakeTime), p.FailureLimit, p.CorroboratingNodes)
	})
	return nil
}
