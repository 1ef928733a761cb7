package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/eval"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/trainer"
)

type evalCmd struct {
	*env
	versions  string
	data      string
	resamples int
	seed      uint64
	record    bool
}

func (c *evalCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval MODEL --versions 1,2[,…] --data FILE",
		Short: "compare versions, and the fallback rules, on the same rows: MSE, MAE, R², calibration, and an interval on each difference",
		Long: `eval runs each version of MODEL in ONNX Runtime on the same rows of FILE (CSV with
a header, or .jsonl: the model's feature columns and "label", as train reads), and
the model's fallback rules when it has some, and prints their figures side by side.
Each later version is compared with the first: its MSE minus the first's, with a
paired bootstrap interval; "better" or "worse" only when the interval excludes 0.`,
		Args: needs(1, 1, "MODEL, --versions and --data"),
		RunE: runs(c),
	}
	cmd.Flags().StringVar(&c.versions, "versions", "", "versions to compare, the baseline first: 1,2 (required)")
	cmd.Flags().StringVar(&c.data, "data", "", "rows with outcomes: CSV or .jsonl (required)")
	cmd.Flags().IntVar(&c.resamples, "resamples", 2000, "bootstrap resamples")
	cmd.Flags().Uint64Var(&c.seed, "seed", 1, "seed of the bootstrap")
	cmd.Flags().BoolVar(&c.record, "record", false, "keep the figures on the control plane as the model's latest evaluation (the dashboard's comparison uses it)")
	cmd.MarkFlagRequired("versions")
	cmd.MarkFlagRequired("data")
	return cmd
}

// evalView is what eval prints.
type evalView struct {
	Model    string   `json:"model"`
	Versions []int    `json:"versions"`
	Data     string   `json:"data"`
	Features []string `json:"features"`
	eval.Report
}

func (c *evalCmd) Run(ctx context.Context, args []string) error {
	model := args[0]
	versions, err := parseVersions(c.versions)
	if err != nil {
		return err
	}
	if c.resamples < 100 || c.resamples > 100000 {
		return fmt.Errorf("eval: --resamples %d: want 100 to 100000", c.resamples)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	// The rows are read as the first version's card names its features.
	first, err := cl.Version(ctx, model, versions[0])
	if err != nil {
		return err
	}
	features := trainer.FeatureNames()
	if len(first.Card) > 0 {
		if card, err := artifact.ParseCard(first.Card); err == nil && len(card.Features) > 0 {
			features = card.Features
		}
	}
	d, err := trainer.ReadFile(c.data, features, true)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if _, err := loader.Init(c.getenv("ONNXRUNTIME_LIB")); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "modelctl-eval-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var scorers []eval.Predictions
	for _, v := range versions {
		p, err := c.predict(ctx, model, v, dir, d)
		if err != nil {
			return fmt.Errorf("eval %s v%d: %w", model, v, err)
		}
		scorers = append(scorers, eval.Predictions{Name: "v" + strconv.Itoa(v), Values: p})
	}
	if rules, err := fallback.For(model); err == nil && rules.Features() == len(features) {
		p := make([]float64, d.Len())
		row := make([]float32, len(features))
		for i, x := range d.X {
			for j, v := range x {
				row[j] = float32(v)
			}
			p[i] = float64(rules.Score(row))
		}
		scorers = append(scorers, eval.Predictions{Name: "rules", Values: p})
	}
	rep, err := eval.Compare(d.Y, scorers, eval.Options{Resamples: c.resamples, Seed: c.seed})
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	view := evalView{Model: model, Versions: versions, Data: c.data, Features: features, Report: rep}
	if c.record {
		ev := registry.Evaluation{Data: filepath.Base(c.data), Rows: rep.Rows, Versions: versions, Confidence: rep.Confidence}
		for _, f := range rep.Figures {
			ev.Figures = append(ev.Figures, registry.EvalFigures{Name: f.Name, MSE: f.MSE, MAE: f.MAE, R2: f.R2, CalibrationError: f.CalibrationError})
		}
		for _, d := range rep.Differences {
			ev.Differences = append(ev.Differences, registry.EvalDifference{Name: d.Name, Baseline: d.Baseline, MSE: d.MSE, Low: d.Low, High: d.High, Verdict: d.Verdict})
		}
		if _, err := cl.RecordEvaluation(ctx, model, ev); err != nil {
			return fmt.Errorf("eval --record: %w", err)
		}
		fmt.Fprintf(c.stderr, "recorded as %s's latest evaluation on %s\n", model, cl.BaseURL)
	}
	return c.print(view, func(w io.Writer) { view.table(w) })
}

// predict runs version v of model on every row of d, in batches of 256, and
// returns the first output of each row.
func (c *evalCmd) predict(ctx context.Context, model string, v int, dir string, d *trainer.Dataset) ([]float64, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	body, _, err := cl.Artifact(ctx, model, v)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("v%d.onnx", v))
	f, err := os.Create(path)
	if err != nil {
		body.Close()
		return nil, err
	}
	_, err = io.Copy(f, body)
	body.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	s, err := loader.Open(path, loader.DefaultOptions())
	if err != nil {
		return nil, err
	}
	defer s.Close()
	width := len(d.Features)
	if got := s.Signature().Features(); got != width {
		return nil, fmt.Errorf("its input has %d features; the data has %d", got, width)
	}
	out := make([]float64, 0, d.Len())
	const batch = 256
	flat := make([]float32, 0, batch*width)
	for lo := 0; lo < d.Len(); lo += batch {
		hi := min(lo+batch, d.Len())
		flat = flat[:0]
		for _, x := range d.X[lo:hi] {
			for _, v := range x {
				flat = append(flat, float32(v))
			}
		}
		scores, err := s.Run(flat, hi-lo)
		if err != nil {
			return nil, err
		}
		per := len(scores) / (hi - lo)
		for r := 0; r < hi-lo; r++ {
			out = append(out, float64(scores[r*per]))
		}
	}
	return out, nil
}

func (v evalView) table(w io.Writer) {
	fmt.Fprintf(w, "%s on %d rows of %s\n\n", esc(v.Model), v.Rows, esc(v.Data))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCORER\tMSE\tMAE\tR²\tCALIBRATION ERROR")
	for _, f := range v.Figures {
		fmt.Fprintf(tw, "%s\t%.5f\t%.4f\t%.3f\t%.4f\n", f.Name, f.MSE, f.MAE, f.R2, f.CalibrationError)
	}
	tw.Flush()
	if len(v.Differences) > 0 {
		fmt.Fprintf(w, "\nMSE against %s, %.0f%% paired bootstrap interval (%d resamples):\n", v.Differences[0].Baseline, 100*v.Confidence, v.Resamples)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, d := range v.Differences {
			fmt.Fprintf(tw, "  %s\t%+.5f\t[%+.5f, %+.5f]\t%s\n", d.Name, d.MSE, d.Low, d.High, d.Verdict)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\ncalibration by decile of the prediction (mean predicted → mean observed):")
	for _, f := range v.Figures {
		var b strings.Builder
		for _, bin := range f.Calibration {
			fmt.Fprintf(&b, " %.2f→%.2f", bin.Predicted, bin.Observed)
		}
		fmt.Fprintf(w, "  %s:%s\n", f.Name, b.String())
	}
}

// parseVersions reads "1,2,3": at least one, each a version number, none twice.
func parseVersions(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(part), "v"))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("eval: --versions %q: want version numbers like 1,2", s)
		}
		if seen[v] {
			return nil, fmt.Errorf("eval: --versions %q: v%d is named twice", s, v)
		}
		seen[v] = true
		out = append(out, v)
	}
	if len(out) > 10 {
		return nil, fmt.Errorf("eval: --versions: at most 10 at once")
	}
	return out, nil
}
