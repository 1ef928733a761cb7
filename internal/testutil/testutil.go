// Package testutil holds helpers shared by tests across packages: real ONNX
// Runtime set-up and real model artifacts made on the spot.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/registry/boltmeta"
	"github.com/modelops/modelops/internal/registry/fileblob"
	"github.com/modelops/modelops/internal/trainer"
)

// InitORT initialises ONNX Runtime for a test binary, or exits: in this project a
// missing runtime is a failure, never a skip. Call it from TestMain.
func InitORT() {
	if _, err := loader.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: ONNX Runtime is required for these tests:", err)
		os.Exit(1)
	}
}

// ServeVerifyChild answers as a verify child, then exits, when this test binary
// was started as one: a control plane under test verifies each push by running
// its own executable with loader.VerifyCommand, as `modelctl serve` runs
// `modelctl verify-artifact`. Call it first thing in the TestMain of a package
// that runs control planes (app.ControlPlane).
func ServeVerifyChild() {
	if len(os.Args) < 2 || os.Args[1] != loader.VerifyCommand {
		return
	}
	if err := loader.ServeVerify(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Model is an artifact on disk with its card.
type Model struct {
	Path   string
	Card   []byte
	Digest string
	MLP    *trainer.MLP
}

// MustModel exports an MLP of the given widths (default 39,16,1) seeded with seed
// into a temp dir, with a card holding 8 golden inputs answered by ONNX Runtime.
func MustModel(tb testing.TB, seed uint64, widths ...int) Model {
	tb.Helper()
	if len(widths) == 0 {
		widths = []int{39, 16, 1}
	}
	m := trainer.NewMLP(seed, widths...)
	data, err := trainer.ExportONNX(m, trainer.ExportMeta{GraphName: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), fmt.Sprintf("model-%d.onnx", seed))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	s, err := loader.Open(path, loader.DefaultOptions())
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	sig := s.Signature()
	golden, err := trainer.Golden(s.Run, trainer.GoldenInputs(seed, 8, sig.Features()), sig.Outputs())
	if err != nil {
		tb.Fatal(err)
	}
	card := &artifact.Card{Golden: golden}
	raw, err := json.Marshal(card)
	if err != nil {
		tb.Fatal(err)
	}
	return Model{Path: path, Card: raw, Digest: MustDigest(tb, data), MLP: m}
}

// MustDigest returns the hex sha256 of data.
func MustDigest(tb testing.TB, data []byte) string {
	tb.Helper()
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// Row returns a calling-score row with every feature set to v.
func Row(v float32) []float32 {
	r := make([]float32, 39)
	for i := range r {
		r[i] = v
	}
	return r
}

// NaNModel exports a calling-score MLP whose output is NaN for every row: a model
// that loads and runs but answers nonsense.
func NaNModel(tb testing.TB) Model {
	tb.Helper()
	m := trainer.NewMLP(3, 39, 8, 1)
	m.Layers[1].B[0] = float32(math.NaN())
	data, err := trainer.ExportONNX(m, trainer.ExportMeta{})
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "nan.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return Model{Path: path, Digest: MustDigest(tb, data), MLP: m}
}

// MustRegistry opens a registry over a file blob store in a temp dir, verifying
// pushes with ONNX Runtime. When the test ends it checks the bbolt file's
// consistency and closes it. It returns the registry and its directory.
func MustRegistry(tb testing.TB) (*registry.Registry, string) {
	tb.Helper()
	dir := tb.TempDir()
	blobs, err := fileblob.New(filepath.Join(dir, "artifacts"))
	if err != nil {
		tb.Fatal(err)
	}
	r := registry.New(filepath.Join(dir, "registry.db"), blobs, loader.Verifier{})
	if err := r.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Meta.(*boltmeta.Store).Check(); err != nil {
			tb.Errorf("bbolt check: %v", err)
		}
		r.Close()
	})
	return r, dir
}
