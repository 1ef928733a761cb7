package artifact_test

import (
	"errors"
	"os"
	"testing"

	"github.com/modelops/modelops/internal/artifact"
)

func TestInspectShippedModel(t *testing.T) {
	data, err := os.ReadFile("../../models/calling_score/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := artifact.Inspect(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := sig.Match(artifact.CallingScore); err != nil {
		t.Fatalf("shipped model: %v", err)
	}
	if _, err := artifact.Inspect([]byte("not a model")); !errors.Is(err, artifact.ErrNotONNX) {
		t.Fatalf("junk: %v, want ErrNotONNX", err)
	}
}

func FuzzInspect(f *testing.F) {
	if data, err := os.ReadFile("../../models/calling_score/model.onnx"); err == nil {
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte("\x08\x08\x12\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sig, err := artifact.Inspect(data)
		if err == nil && (sig.Input.Name == "" && sig.Output.Name == "" && len(sig.Input.Shape) > 1<<20) {
			t.Fatal("impossible signature")
		}
	})
}

func FuzzParseCard(f *testing.F) {
	if data, err := os.ReadFile("../../models/calling_score/card.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"golden":[{"input":[1],"output":[2]}]}`))
	f.Add([]byte(`{"reference":{"features":{"a":{"edges":[2,1],"proportions":[1,0,0]}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := artifact.ParseCard(data)
		if err != nil {
			return
		}
		// A card that parsed is safe to check against any signature.
		_ = c.Check("calling-score", artifact.CallingScore)
		if c.Reference != nil {
			for _, h := range c.Reference.Features {
				if len(h.Proportions) != len(h.Edges)+1 {
					t.Fatalf("accepted a histogram with %d edges and %d proportions", len(h.Edges), len(h.Proportions))
				}
			}
		}
	})
}
