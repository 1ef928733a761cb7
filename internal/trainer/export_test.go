package trainer

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
)

func TestMain(m *testing.M) {
	if _, err := loader.Init(""); err != nil {
		// A missing runtime is a failure, never a skip.
		println("trainer tests:", err.Error())
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestExportMatchesForwardPass(t *testing.T) {
	m := NewMLP(7, 39, 128, 64, 1)
	data, err := ExportONNX(m, ExportMeta{GraphName: "calling_score"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := loader.Open(path, loader.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Signature().Match(artifact.CallingScore); err != nil {
		t.Fatalf("exported signature: %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const rows = 64
	flat := make([]float32, rows*39)
	for i := range flat {
		flat[i] = rng.Float32()
	}
	got, err := s.Run(flat, rows)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for r := 0; r < rows; r++ {
		want := m.Forward(flat[r*39 : (r+1)*39])[0]
		worst = math.Max(worst, math.Abs(float64(got[r]-want)))
	}
	if worst > 1e-5 {
		t.Fatalf("ONNX Runtime and the Go forward pass differ by %g, want ≤ 1e-5", worst)
	}
}

func TestExportIsDeterministic(t *testing.T) {
	a, err := ExportONNX(NewMLP(3, 39, 8, 1), ExportMeta{Metadata: map[string]string{"b": "2", "a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ExportONNX(NewMLP(3, 39, 8, 1), ExportMeta{Metadata: map[string]string{"a": "1", "b": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("two exports of the same weights differ")
	}
	c, _ := ExportONNX(NewMLP(4, 39, 8, 1), ExportMeta{})
	if string(a) == string(c) {
		t.Fatal("exports of different seeds are identical")
	}
}
