package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/trainer"
)

type showCmd struct{ *env }

func (c *showCmd) command() *cobra.Command {
	return &cobra.Command{
		Use:   "show MODEL [VERSION]",
		Short: "a model's versions, or one version with its card in sections",
		Args:  needs(1, 2, "MODEL and optionally VERSION"),
		RunE:  runs(c), ValidArgsFunction: c.completeModels,
	}
}

func (c *showCmd) Run(ctx context.Context, args []string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	if len(args) == 2 {
		n, err := versionArg(args[1])
		if err != nil {
			return err
		}
		v, err := cl.Version(ctx, args[0], n)
		if err != nil {
			return err
		}
		return c.print(v, func(w io.Writer) { showVersion(w, v) })
	}
	m, err := cl.Model(ctx, args[0])
	if err != nil {
		return err
	}
	return c.print(m, func(w io.Writer) {
		fmt.Fprintf(w, "%s  production %s  canary %s  blend %g  revision %d\nsignature: %s\n\n", esc(m.Name), orDash(m.Production), esc(canaryString(m.Candidate)), m.BlendWeight(), m.Revision, esc(m.Signature.String()))
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "VERSION\tSHA256\tSIZE\tCREATED\tBY\tALIAS")
			for _, v := range m.Versions {
				alias := ""
				if v.Number == m.Production {
					alias = "production"
				} else if m.Candidate != nil && v.Number == m.Candidate.Version {
					alias = "candidate"
				}
				fmt.Fprintln(tw, cells(fmt.Sprintf("v%d", v.Number), v.Digest[:min(12, len(v.Digest))], bytesH(v.Size), ago(v.CreatedAt), v.Actor, alias))
			}
		})
	})
}

// showVersion prints a version and its card as sections a reader can scan:
// what it takes, what it was trained and checked on, what drift is measured
// against.
func showVersion(w io.Writer, v *registry.Version) {
	table(w, func(tw io.Writer) {
		rows := [][2]any{{"model", v.Model}, {"version", fmt.Sprintf("v%d", v.Number)}, {"sha256", v.Digest},
			{"size", bytesH(v.Size)}, {"created", ago(v.CreatedAt)}, {"by", v.Actor}}
		if v.Reason != "" {
			rows = append(rows, [2]any{"reason", v.Reason})
		}
		for _, kv := range rows {
			fmt.Fprintln(tw, cells(kv[0], kv[1]))
		}
	})
	if len(v.Card) == 0 {
		fmt.Fprintln(w, "\nno card: no golden inputs are checked on load and drift has no reference")
		return
	}
	var card trainer.Card
	var fields map[string]json.RawMessage
	if json.Unmarshal(v.Card, &card) != nil || json.Unmarshal(v.Card, &fields) != nil {
		fmt.Fprintln(w, "\ncard: not a JSON object this modelctl reads (-o json shows it as stored)")
		return
	}
	section := func(title string) { fmt.Fprintf(w, "\n%s\n", title) }

	section(fmt.Sprintf("Features (%d)", len(card.Features)))
	wrapList(w, card.Features, 88)
	if card.Export.Input != "" || card.Export.Output != "" {
		fmt.Fprintf(w, "  %s → %s", esc(card.Export.Input), esc(card.Export.Output))
		if card.Export.Opset > 0 {
			fmt.Fprintf(w, " (opset %d, %s %s)", card.Export.Opset, esc(card.Export.Producer), esc(card.Export.ProducerVersion))
		}
		fmt.Fprintln(w)
	}

	if t := card.Training; t != nil {
		section("Training")
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, cells("  source", t.Source))
			fmt.Fprintln(tw, cells("  architecture", t.Architecture))
			fmt.Fprintln(tw, cells("  optimizer", fmt.Sprintf("%s, lr %g, batch %d, seed %d", t.Optimizer, t.LR, t.Batch, t.Seed)))
			fmt.Fprintln(tw, cells("  epochs", fmt.Sprintf("%d run of %d (best %d, patience %d)", t.EpochsRun, t.MaxEpochs, t.BestEpoch, t.Patience)))
			fmt.Fprintln(tw, cells("  rows train/val/test", fmt.Sprintf("%d / %d / %d", t.TrainRows, t.ValRows, t.TestRows)))
		})
	}

	section(fmt.Sprintf("Data summary (%d rows)", card.Data.Rows))
	if len(card.Data.Features) == 0 && card.Data.Label == nil {
		fmt.Fprintln(w, "  none in the card")
	} else {
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "  COLUMN\tMEAN\tSTD\tMIN\tMAX")
			row := func(name string, s trainer.Summary) {
				fmt.Fprintln(tw, cells("  "+name, fmt.Sprintf("%.4g", s.Mean), fmt.Sprintf("%.4g", s.Std), fmt.Sprintf("%.4g", s.Min), fmt.Sprintf("%.4g", s.Max)))
			}
			// In the model's input order, then any the card adds.
			seen := map[string]bool{}
			for _, f := range card.Features {
				if s, ok := card.Data.Features[f]; ok {
					row(f, s)
					seen[f] = true
				}
			}
			for _, f := range slices.Sorted(maps.Keys(card.Data.Features)) {
				if !seen[f] {
					row(f, card.Data.Features[f])
				}
			}
			if card.Data.Label != nil {
				row(trainer.LabelColumn+" (label)", *card.Data.Label)
			}
		})
	}

	section("Metrics")
	if len(card.Metrics) == 0 {
		fmt.Fprintln(w, "  none in the card")
	} else {
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "  ON\tMSE\tMAE\tR²")
			for _, k := range slices.Sorted(maps.Keys(card.Metrics)) {
				m := card.Metrics[k]
				fmt.Fprintln(tw, cells("  "+k, fmt.Sprintf("%.5f", m.MSE), fmt.Sprintf("%.5f", m.MAE), fmt.Sprintf("%.3f", m.R2)))
			}
		})
	}

	section("Golden inputs")
	if len(card.Golden) == 0 {
		fmt.Fprintln(w, "  none: nothing is checked when a scorer loads this version")
	} else {
		fmt.Fprintf(w, "  %d, each checked when a scorer loads this version\n", len(card.Golden))
	}

	section("Drift reference")
	ref := card.Reference
	if len(ref.Features) == 0 && len(ref.Prediction.Proportions) == 0 {
		fmt.Fprintln(w, "  none: drift cannot be measured for this version")
	} else {
		bins := map[int]int{}
		for _, h := range ref.Features {
			bins[len(h.Proportions)]++
		}
		var per []string
		for _, b := range slices.Sorted(maps.Keys(bins)) {
			per = append(per, fmt.Sprintf("%d with %d bins", bins[b], b))
		}
		fmt.Fprintf(w, "  %d feature histograms (%s); prediction histogram of %d bins\n", len(ref.Features), strings.Join(per, ", "), len(ref.Prediction.Proportions))
		var missing []string
		for _, f := range card.Features {
			if _, ok := ref.Features[f]; !ok {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(w, "  no reference for %d features: %s\n", len(missing), esc(strings.Join(missing, ", ")))
		}
	}

	known := map[string]bool{"model": true, "format": true, "features": true, "export": true, "training": true, "data": true, "metrics": true, "reference": true, "golden": true}
	var other []string
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if !known[k] {
			other = append(other, k)
		}
	}
	if len(other) > 0 {
		section("Other card fields (-o json shows them)")
		wrapList(w, other, 88)
	}
}

// wrapList prints names separated by commas, indented, in lines of at most
// width characters.
func wrapList(w io.Writer, names []string, width int) {
	if len(names) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	line := " "
	for i, n := range names {
		n = esc(n)
		if i < len(names)-1 {
			n += ","
		}
		if len(line)+1+len(n) > width && line != " " {
			fmt.Fprintln(w, line)
			line = " "
		}
		line += " " + n
	}
	fmt.Fprintln(w, line)
}
