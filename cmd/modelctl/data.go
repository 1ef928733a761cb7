package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/trainer"
)

type genDataCmd struct{ *env }

func (c *genDataCmd) Usage() string {
	return "gen-data --samples N [--seed S] --out FILE.csv|FILE.jsonl   synthetic calling-score data"
}

func (c *genDataCmd) Run(_ context.Context, args []string) error {
	fs := c.flags(c, "gen-data")
	n := fs.Int("samples", 10000, "rows to generate")
	seed := fs.Uint64("seed", 42, "seed")
	out := fs.String("out", "", "output file: .csv or .jsonl (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 || *n < 1 {
		fs.Usage()
		return fmt.Errorf("gen-data needs --out FILE and a positive --samples")
	}
	d := trainer.Generate(*n, *seed)
	if err := d.WriteFile(*out); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote %d rows of %d features and %q to %s\n", d.Len(), len(d.Features), trainer.LabelColumn, *out)
	return nil
}

type cardCmd struct{ *env }

func (c *cardCmd) Usage() string {
	return "card MODEL.onnx --data FILE --out card.json [--model NAME] [--features a,b,…]   a card for a model trained elsewhere"
}

func (c *cardCmd) Run(_ context.Context, args []string) error {
	fs := c.flags(c, "card")
	data := fs.String("data", "", "reference data: CSV or .jsonl with the feature columns (and optionally \"label\")")
	out := fs.String("out", "", "card to write (required)")
	model := fs.String("model", "calling-score", "model name the card is for")
	features := fs.String("features", "", "comma-separated feature names in input order (default: calling-score's 39)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *data == "" || *out == "" {
		fs.Usage()
		return fmt.Errorf("card needs MODEL.onnx, --data and --out")
	}
	names := trainer.FeatureNames()
	if *features != "" {
		names = strings.Split(*features, ",")
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
	fmt.Fprintf(c.stdout, "wrote %s: %d golden inputs, reference histograms over %d rows of %s\n", *out, len(card.Golden), d.Len(), filepath.Base(*data))
	if d.Len() < minReferenceRows {
		fmt.Fprintf(c.stderr, "modelctl: warning: deciles of %d rows are rough; drift measured against them will read high. Give --data at least %d rows.\n", d.Len(), minReferenceRows)
	}
	return nil
}

// minReferenceRows is the least data a card's reference deciles should come
// from: with 1,000 rows each decile holds about 100, and its edges move by a
// few percent of the spread from one sample to the next.
const minReferenceRows = 1000
