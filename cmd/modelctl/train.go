package main

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/trainer"
)

// parityTolerance is how far ONNX Runtime may stray from the trainer's own forward
// pass on the test split before train refuses its export.
const parityTolerance = 1e-5

// goldenRows is how many golden inputs a card records.
const goldenRows = 32

type trainCmd struct {
	*env
	o trainOptions
}

func (c *trainCmd) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train [--data FILE | --samples 10000] [--seed 42] [--epochs 100] [--batch 32] [--lr 0.001] --out DIR",
		Short: "train calling-score",
		Args:  cobra.NoArgs,
		RunE:  runs(c),
	}
	o := &c.o
	o.cfg, o.samples = trainer.DefaultConfig(), 10000
	fs := cmd.Flags()
	fs.StringVar(&o.data, "data", "", "training data: CSV with a header, or .jsonl; the 39 feature columns plus \"label\" (default: synthetic)")
	fs.IntVar(&o.samples, "samples", o.samples, "synthetic samples to generate when --data is not given")
	fs.Uint64Var(&o.cfg.Seed, "seed", o.cfg.Seed, "seed of every random choice (data, split, init, dropout, shuffles)")
	fs.Uint64Var(&o.population, "population-seed", 42, "seed of the synthetic population the data is drawn from (42: the shipped model's); --seed changes the draws, not the population")
	fs.IntVar(&o.cfg.Epochs, "epochs", o.cfg.Epochs, "maximum epochs")
	fs.IntVar(&o.cfg.Batch, "batch", o.cfg.Batch, "mini-batch size")
	fs.Float64Var(&o.cfg.LR, "lr", o.cfg.LR, "Adam learning rate")
	fs.IntVar(&o.cfg.Patience, "patience", o.cfg.Patience, "early stopping: epochs without a better validation loss")
	fs.StringVar(&o.out, "out", "", "output directory for model.onnx and card.json (required)")
	fs.BoolVar(&o.quiet, "quiet", false, "no per-epoch progress")
	cmd.MarkFlagRequired("out")
	return cmd
}

// trainOptions is one run of `modelctl train`.
type trainOptions struct {
	data    string
	samples int
	// population seeds the synthetic population, apart from the draws.
	population uint64
	out        string
	cfg        trainer.Config
	quiet      bool
}

// trainReport is what a run measured.
type trainReport struct {
	ModelPath, CardPath string
	Card                *trainer.Card
	Result              *trainer.Result
	Parity              float64
}

func (c *trainCmd) Run(ctx context.Context, _ []string) error {
	o := c.o
	if o.out == "" {
		return fmt.Errorf("train needs --out DIR")
	}
	switch {
	case o.cfg.Epochs < 1:
		return fmt.Errorf("train: --epochs %d: want 1 or more", o.cfg.Epochs)
	case o.cfg.Batch < 1:
		return fmt.Errorf("train: --batch %d: want 1 or more", o.cfg.Batch)
	case !(o.cfg.LR > 0) || math.IsInf(o.cfg.LR, 0):
		return fmt.Errorf("train: --lr %g: want a number more than 0", o.cfg.LR)
	case o.samples < 20:
		return fmt.Errorf("train: --samples %d: want at least 20", o.samples)
	}
	if _, err := loader.Init(c.getenv("ONNXRUNTIME_LIB")); err != nil {
		return err
	}
	rep, err := runTrain(ctx, o, c.stderr)
	if err != nil {
		return err
	}
	return c.print(rep.view(), func(w io.Writer) { summary(w, rep) })
}

// trainView is what -o json says of a run.
type trainView struct {
	Model     string                     `json:"model"`
	Card      string                     `json:"card"`
	EpochsRun int                        `json:"epochs_run"`
	BestEpoch int                        `json:"best_epoch"`
	Seconds   float64                    `json:"seconds"`
	Parity    float64                    `json:"onnx_parity_max_abs_diff"`
	Metrics   map[string]trainer.Metrics `json:"metrics"`
}

func (rep *trainReport) view() trainView {
	return trainView{Model: rep.ModelPath, Card: rep.CardPath, EpochsRun: len(rep.Result.Epochs), BestEpoch: rep.Result.BestEpoch,
		Seconds: rep.Result.Duration.Seconds(), Parity: rep.Parity, Metrics: rep.Card.Metrics}
}

func runTrain(_ context.Context, o trainOptions, progress io.Writer) (*trainReport, error) {
	var (
		d        *trainer.Dataset
		source   string
		exported *trainer.ExportSource
		err      error
	)
	if o.data != "" {
		if d, err = trainer.ReadFile(o.data, trainer.FeatureNames(), true); err != nil {
			return nil, err
		}
		source = "file " + filepath.Base(o.data)
		if exported, err = trainer.ReadExportSource(o.data); err != nil {
			return nil, err
		}
		if exported != nil {
			source = fmt.Sprintf("export of %s's prediction log, %d rows (%d with outcomes) answered %s to %s, file %s", exported.Model, exported.Rows,
				exported.WithOutcomes, exported.First.Format(time.RFC3339), exported.Last.Format(time.RFC3339), filepath.Base(o.data))
		}
	} else {
		d = trainer.GenerateFrom(o.samples, o.population, o.cfg.Seed)
		source = fmt.Sprintf("synthetic, %d samples, seed %d", o.samples, o.cfg.Seed)
		if o.population != o.cfg.Seed {
			source = fmt.Sprintf("synthetic, %d samples of population %d, seed %d", o.samples, o.population, o.cfg.Seed)
		}
	}
	if progress != nil && !o.quiet {
		fmt.Fprintf(progress, "training on %d rows (%s)\n", d.Len(), source)
	}
	res, err := trainer.Train(d, o.cfg, func(e trainer.Epoch) {
		if progress == nil || o.quiet {
			return
		}
		mark := ""
		if e.Best {
			mark = " *"
		}
		fmt.Fprintf(progress, "epoch %3d/%d  train %.5f  val %.5f%s  %s\n", e.N, o.cfg.Epochs, e.TrainLoss, e.ValLoss, mark, e.Elapsed.Round(10*time.Millisecond))
	})
	if err != nil {
		return nil, err
	}

	onnx, err := trainer.ExportONNX(res.MLP, trainer.ExportMeta{
		GraphName: "calling_score", ProducerVersion: trainer.FormatVersion,
		Doc: "calling score: 39 features → MLP 39-128-64-1 (ReLU, sigmoid); normalisation folded into the first layer",
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	rep := &trainReport{ModelPath: filepath.Join(o.out, "model.onnx"), CardPath: filepath.Join(o.out, "card.json"), Result: res}
	tmpModel := rep.ModelPath + ".tmp"
	if err := os.WriteFile(tmpModel, onnx, 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(tmpModel)

	s, err := loader.Open(tmpModel, loader.DefaultOptions())
	if err != nil {
		return nil, fmt.Errorf("self-check: %w", err)
	}
	defer s.Close()
	testRows := res.Split.Test.Rows32(0)
	ortTest, err := runRows(s, testRows)
	if err != nil {
		return nil, fmt.Errorf("self-check: %w", err)
	}
	for i, r := range testRows {
		rep.Parity = math.Max(rep.Parity, math.Abs(ortTest[i]-float64(res.MLP.Forward(r)[0])))
	}
	if rep.Parity > parityTolerance {
		return nil, fmt.Errorf("self-check: ONNX Runtime and the trainer's forward pass differ by up to %.3g on the test split (tolerance %g); nothing written", rep.Parity, parityTolerance)
	}

	card := &trainer.Card{
		Model: "calling-score", Format: trainer.CardFormat, Features: d.Features,
		Export: trainer.ExportInfo{Opset: trainer.OpsetVersion, IRVersion: trainer.IRVersion, Producer: trainer.Producer, ProducerVersion: trainer.FormatVersion,
			Input: "input float32 [batch,39]", Output: "output float32 [batch,1]"},
		Training: &trainer.TrainingInfo{
			Source: source, Seed: o.cfg.Seed, Architecture: archString(res.MLP), Optimizer: "adam", LR: o.cfg.LR, Batch: o.cfg.Batch,
			Dropout: o.cfg.Dropout, MaxEpochs: o.cfg.Epochs, Patience: o.cfg.Patience, EpochsRun: len(res.Epochs), BestEpoch: res.BestEpoch,
			TrainRows: res.Split.Train.Len(), ValRows: res.Split.Val.Len(), TestRows: res.Split.Test.Len(),
			Normalize: "standardisation fitted on the training split, folded into layer 0",
			Export:    exported,
		},
		Metrics: map[string]trainer.Metrics{
			"test_model":    trainer.Score(ortTest, res.Split.Test.Y),
			"test_fallback": trainer.Score(fallbackScores(testRows), res.Split.Test.Y),
		},
	}
	trainPred, err := runRows(s, res.Split.Train.Rows32(0))
	if err != nil {
		return nil, err
	}
	card.Describe(res.Split.Train, trainPred)
	if card.Golden, err = trainer.Golden(s.Run, testRows[:min(goldenRows, len(testRows))], 1); err != nil {
		return nil, err
	}
	if err := writeCard(rep.CardPath, card); err != nil {
		return nil, err
	}
	if err := os.Rename(tmpModel, rep.ModelPath); err != nil {
		return nil, err
	}
	rep.Card = card
	return rep, nil
}

func archString(m *trainer.MLP) string {
	var parts []string
	for _, w := range m.Widths() {
		parts = append(parts, fmt.Sprint(w))
	}
	return strings.Join(parts, "-") + " relu, dropout 0.2 (training), sigmoid"
}

// runRows scores rows with a session, in batches, as float64.
func runRows(s *loader.Session, rows [][]float32) ([]float64, error) {
	const batch = 512
	out := make([]float64, 0, len(rows))
	for b0 := 0; b0 < len(rows); b0 += batch {
		b1 := min(b0+batch, len(rows))
		flat := make([]float32, 0, (b1-b0)*len(rows[0]))
		for _, r := range rows[b0:b1] {
			flat = append(flat, r...)
		}
		res, err := s.Run(flat, b1-b0)
		if err != nil {
			return nil, err
		}
		for _, v := range res {
			out = append(out, float64(v))
		}
	}
	return out, nil
}

func fallbackScores(rows [][]float32) []float64 {
	out := make([]float64, len(rows))
	for i, r := range rows {
		out[i] = float64(fallback.CallingScore{}.Score(r))
	}
	return out
}

func writeCard(path string, card any) error {
	buf, err := json.MarshalIndent(card, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(buf, '\n'))
}

func summary(w io.Writer, rep *trainReport) {
	res, m := rep.Result, rep.Card.Metrics
	model, fb := m["test_model"], m["test_fallback"]
	fmt.Fprintf(w, "\nwrote %s and %s\n\n", rep.ModelPath, rep.CardPath)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "epochs run\t%d (best %d, early stop patience %d)\n", len(res.Epochs), res.BestEpoch, rep.Card.Training.Patience)
	fmt.Fprintf(tw, "training time\t%s\n", res.Duration.Round(10*time.Millisecond))
	fmt.Fprintf(tw, "rows train/val/test\t%d / %d / %d\n", res.Split.Train.Len(), res.Split.Val.Len(), res.Split.Test.Len())
	fmt.Fprintf(tw, "ONNX Runtime vs Go forward pass\tmax |Δ| %.2g (tolerance %g)\n", rep.Parity, parityTolerance)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEST SPLIT\tMSE\tMAE\tR²")
	fmt.Fprintf(tw, "model\t%.5f\t%.5f\t%.3f\n", model.MSE, model.MAE, model.R2)
	fmt.Fprintf(tw, "fallback rules\t%.5f\t%.5f\t%.3f\n", fb.MSE, fb.MAE, fb.R2)
	tw.Flush()
	if fb.MSE > 0 {
		switch gain := 1 - model.MSE/fb.MSE; {
		case gain >= 0.30:
			fmt.Fprintf(w, "\nmodel MSE is %.1f%% lower than the fallback rules' (target ≥ 30%%)\n", 100*gain)
		case gain >= 0:
			fmt.Fprintf(w, "\nmodel MSE is only %.1f%% lower than the fallback rules' (target ≥ 30%%): train longer (--epochs) or on more data\n", 100*gain)
		default:
			fmt.Fprintf(w, "\nmodel MSE is %.1f%% HIGHER than the fallback rules' (target: ≥ 30%% lower): the rules answer better; train longer (--epochs) or on more data before pushing it\n", -100*gain)
		}
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
