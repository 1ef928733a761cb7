package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/fallback"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/trainer"
)

type trainCmd struct{ *env }

func (c *trainCmd) Usage() string {
	return "train [--seed 42] --out DIR   make a calling-score model: DIR/model.onnx and DIR/card.json"
}

func (c *trainCmd) Run(ctx context.Context, args []string) error {
	fs := c.flags(c, "train")
	seed := fs.Uint64("seed", 42, "seed of every random choice")
	out := fs.String("out", "", "output directory (required)")
	golden := fs.Int("golden", 32, "golden inputs recorded in the card")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("train needs --out DIR")
	}
	if _, err := loader.Init(c.getenv("ONNXRUNTIME_LIB")); err != nil {
		return err
	}
	m := trainer.NewMLP(*seed, fallback.CallingScoreFeatures, 128, 64, 1)
	onnx, err := trainer.ExportONNX(m, trainer.ExportMeta{GraphName: "calling_score", ProducerVersion: trainer.FormatVersion})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	modelPath := filepath.Join(*out, "model.onnx")
	if err := writeFileAtomic(modelPath, onnx); err != nil {
		return err
	}
	card, err := goldenCard(modelPath, *seed, *golden)
	if err != nil {
		return err
	}
	buf, err := json.MarshalIndent(card, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(*out, "card.json"), append(buf, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "wrote %s and %s\n", modelPath, filepath.Join(*out, "card.json"))
	return nil
}

// goldenCard runs golden inputs through ONNX Runtime on the exported file and
// records what it answers.
func goldenCard(modelPath string, seed uint64, n int) (*artifact.Card, error) {
	s, err := loader.Open(modelPath, loader.DefaultOptions())
	if err != nil {
		return nil, err
	}
	defer s.Close()
	sig := s.Signature()
	card := &artifact.Card{Model: "calling-score"}
	for i := 0; i < sig.Features(); i++ {
		card.Features = append(card.Features, fmt.Sprintf("f%02d", i))
	}
	return card, trainer.AddGolden(card, s.Run, seed, n, sig.Features(), sig.Outputs())
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
