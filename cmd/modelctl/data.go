package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/trainer"
)

type genDataCmd struct {
	*env
	samples          int
	seed, population uint64
	out              string
}

func (c *genDataCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gen-data --samples N [--seed S] --out FILE.csv|FILE.jsonl",
		Short: "synthetic calling-score data",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
	cmd.Flags().IntVar(&c.samples, "samples", 10000, "rows to generate")
	cmd.Flags().Uint64Var(&c.seed, "seed", 42, "seed of the draws")
	cmd.Flags().Uint64Var(&c.population, "population-seed", 42, "seed of the population drawn from (42: the shipped model's)")
	cmd.Flags().StringVar(&c.out, "out", "", "output file: .csv or .jsonl (required)")
	cmd.MarkFlagRequired("out")
	return cmd
}

func (c *genDataCmd) Run(context.Context, []string) error {
	if c.out == "" || c.samples < 1 {
		return fmt.Errorf("gen-data needs --out FILE and a positive --samples")
	}
	d := trainer.GenerateFrom(c.samples, c.population, c.seed)
	if err := d.WriteFile(c.out); err != nil {
		return err
	}
	return c.print(map[string]any{"file": c.out, "rows": d.Len(), "features": d.Features, "label": trainer.LabelColumn, "seed": c.seed, "population_seed": c.population},
		func(w io.Writer) {
			fmt.Fprintf(w, "wrote %d rows of %d features and %q to %s\n", d.Len(), len(d.Features), trainer.LabelColumn, c.out)
		})
}

type cardCmd struct {
	*env
	data, out, model, features string
}

func (c *cardCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "card MODEL.onnx --data FILE --out card.json [--model NAME] [--features a,b,…]",
		Short: "a card for a model trained elsewhere",
		Args:  needs(1, 1, "MODEL.onnx, --data and --out"),
		RunE:  runs(c),
	}
	cmd.Flags().StringVar(&c.data, "data", "", "reference data: CSV or .jsonl with the feature columns (and optionally \"label\")")
	cmd.Flags().StringVar(&c.out, "out", "", "card to write (required)")
	cmd.Flags().StringVar(&c.model, "model", "calling-score", "model name the card is for")
	cmd.Flags().StringVar(&c.features, "features", "", "comma-separated feature names in input order (default: calling-score's 39)")
	cmd.MarkFlagRequired("data")
	cmd.MarkFlagRequired("out")
	return cmd
}

func (c *cardCmd) Run(_ context.Context, args []string) error {
	pos, model, data, out := args, &c.model, &c.data, &c.out
	if *data == "" || *out == "" {
		return fmt.Errorf("card needs MODEL.onnx, --data and --out")
	}
	names := trainer.FeatureNames()
	if c.features != "" {
		names = strings.Split(c.features, ",")
	}
	if _, err := loader.Init(c.getenv("ONNXRUNTIME_LIB")); err != nil {
		return err
	}
	s, err := loader.Open(pos[0], loader.DefaultOptions())
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	defer s.Close()
	sig := s.Signature()
	if sig.Features() != len(names) {
		return fmt.Errorf("%s takes %d features (%s), the card would name %d; pass --features", pos[0], sig.Features(), sig.Input, len(names))
	}
	if sig.Outputs() != 1 {
		return fmt.Errorf("%s yields %d outputs per row; cards describe one score per row", pos[0], sig.Outputs())
	}
	d, err := trainer.ReadFile(*data, names, false)
	if err != nil {
		return err
	}
	rows := d.Rows32(0)
	pred, err := runRows(s, rows)
	if err != nil {
		return err
	}
	card := &trainer.Card{Model: *model, Format: trainer.CardFormat, Features: names,
		Export: trainer.ExportInfo{Input: sig.Input.String(), Output: sig.Output.String()}}
	card.Describe(d, pred)
	if d.HasLabel {
		card.Metrics = map[string]trainer.Metrics{"data_model": trainer.Score(pred, d.Y)}
		if *model == "calling-score" {
			card.Metrics["data_fallback"] = trainer.Score(fallbackScores(rows), d.Y)
		}
	}
	if card.Golden, err = trainer.Golden(s.Run, rows[:min(goldenRows, len(rows))], 1); err != nil {
		return err
	}
	if err := writeCard(*out, card); err != nil {
		return err
	}
	if d.Len() < minReferenceRows {
		fmt.Fprintf(c.stderr, "modelctl: warning: deciles of %d rows are rough; drift measured against them will read high. Give --data at least %d rows.\n", d.Len(), minReferenceRows)
	}
	return c.print(map[string]any{"card": *out, "model": *model, "golden": len(card.Golden), "reference_rows": d.Len(), "metrics": card.Metrics},
		func(w io.Writer) {
			fmt.Fprintf(w, "wrote %s: %d golden inputs, reference histograms over %d rows of %s\n", *out, len(card.Golden), d.Len(), filepath.Base(*data))
		})
}

// minReferenceRows is the least data a card's reference deciles should come
// from: with 1,000 rows each decile holds about 100, and its edges move by a
// few percent of the spread from one sample to the next.
const minReferenceRows = 1000
