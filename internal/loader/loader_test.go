package loader_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/onnx"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.InitORT()
	os.Exit(m.Run())
}

func TestFindLibraryNamesTheWayOut(t *testing.T) {
	_, err := loader.FindLibrary("/nonexistent/libonnxruntime.so")
	if err == nil || !strings.Contains(err.Error(), "make ort") || !strings.Contains(err.Error(), loader.LibraryEnv) {
		t.Fatalf("err = %v, want it to name `make ort` and %s", err, loader.LibraryEnv)
	}
	t.Setenv(loader.LibraryEnv, "/also/missing.so")
	if _, err := loader.FindLibrary(""); err == nil || !strings.Contains(err.Error(), "/also/missing.so") {
		t.Fatalf("err = %v, want it to name the path in %s", err, loader.LibraryEnv)
	}
}

func TestFindLibraryPrefersExplicitPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "libonnxruntime.so")
	os.WriteFile(p, nil, 0o644)
	t.Setenv(loader.LibraryEnv, "/elsewhere.so")
	got, err := loader.FindLibrary(p)
	if err != nil || got != p {
		t.Fatalf("FindLibrary(%s) = %s, %v", p, got, err)
	}
}

func mustLoaded(t *testing.T, seed uint64, version int) *loader.Loaded {
	t.Helper()
	m := testutil.MustModel(t, seed)
	s, err := loader.Open(m.Path, loader.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return loader.NewLoaded(s, version, m.Digest, nil)
}

func TestSlotDestroysRetiredSessionAfterLastRequest(t *testing.T) {
	slot := &loader.Slot{}
	if slot.Acquire() != nil {
		t.Fatal("an empty slot gave a session")
	}
	slot.Swap(mustLoaded(t, 1, 1))
	inFlight := slot.Acquire()
	slot.Swap(mustLoaded(t, 2, 2))
	if slot.Destroyed() != 0 {
		t.Fatal("the retired session was destroyed while a request still held it")
	}
	// The request that started on v1 finishes on v1.
	if _, err := inFlight.Run(testutil.Row(0.5), 1); err != nil {
		t.Fatalf("run on the retired session: %v", err)
	}
	inFlight.Release()
	select {
	case <-inFlight.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("the retired session was not destroyed after its last request")
	}
	if slot.Destroyed() != 1 || slot.Swaps() != 1 {
		t.Fatalf("destroyed %d, swaps %d; want 1 and 1", slot.Destroyed(), slot.Swaps())
	}
	cur := slot.Acquire()
	if cur.Version != 2 {
		t.Fatalf("serving v%d, want v2", cur.Version)
	}
	cur.Release()
	slot.Close()
}

func TestSessionRefusesWrongRowWidth(t *testing.T) {
	l := mustLoaded(t, 1, 1)
	defer l.Release()
	if _, err := l.Run(make([]float32, 38), 1); !errors.Is(err, loader.ErrRun) {
		t.Fatalf("38 values for one row of 39: err = %v, want ErrRun", err)
	}
}

func TestCacheStoresOnlyVerifiedBytes(t *testing.T) {
	c := &loader.Cache{Dir: t.TempDir()}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	data := []byte("artifact bytes")
	digest := testutil.MustDigest(t, data)
	if _, err := c.Store(digest, -1, bytes.NewReader([]byte("other bytes"))); !errors.Is(err, loader.ErrDigest) {
		t.Fatalf("storing bytes of another digest: err = %v, want ErrDigest", err)
	}
	if _, ok := c.Lookup(digest); ok {
		t.Fatal("a refused download is in the cache")
	}
	p, err := c.Store(digest, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Lookup(digest); !ok || got != p {
		t.Fatalf("Lookup = %s, %v", got, ok)
	}
	os.WriteFile(p, []byte("tampered"), 0o644)
	if _, ok := c.Lookup(digest); ok {
		t.Fatal("a tampered cache file was returned")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("a tampered cache file was left in place")
	}
	if _, err := c.Path("../../etc/passwd"); err == nil {
		t.Fatal("a non-digest reached a cache path")
	}
}

func TestCacheKeepsNewestVersionsAndLastDeployment(t *testing.T) {
	c := &loader.Cache{Dir: t.TempDir()}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	var digests []string
	for i := 0; i < 3; i++ {
		data := []byte{byte(i), 1, 2, 3}
		d := testutil.MustDigest(t, data)
		if _, err := c.Store(d, -1, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := c.SaveDeployment(loader.CachedDeployment{Model: "calling-score", Version: i + 1, Digest: d}, 2); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if _, ok := c.Lookup(digests[0]); ok {
		t.Fatal("the oldest of three versions is still cached with keep=2")
	}
	for _, d := range digests[1:] {
		if _, ok := c.Lookup(d); !ok {
			t.Fatalf("%s dropped from the cache", d[:12])
		}
	}
	last, err := c.LoadDeployment("calling-score")
	if err != nil || last.Version != 3 || last.Digest != digests[2] {
		t.Fatalf("last deployment %+v %v", last, err)
	}
	if err := c.SaveDeployment(loader.CachedDeployment{Model: "../evil", Digest: digests[2]}, 2); err == nil {
		t.Fatal("a hostile model name reached a cache path")
	}
}

// The check push runs and the one a scorer runs before serving are one: a
// version whose golden outputs break its card's output contract is refused,
// with the contract named, and served once the card declares the right one.
func TestGoldenOutputsKeepTheContract(t *testing.T) {
	path := testutil.RegressionModel(t)
	golden := []artifact.Golden{{Input: make([]float64, 39), Output: []float64{100}}}
	_, err := loader.Verify(path, "churn", nil, &artifact.Card{Golden: golden})
	if !errors.Is(err, loader.ErrGolden) || !strings.Contains(err.Error(), `contract "score"`) || !strings.Contains(err.Error(), `"output": "regression"`) {
		t.Fatalf("regression outputs under the default contract: %v, want a golden error naming the contract and the way out", err)
	}
	if _, err := loader.Verify(path, "churn", nil, &artifact.Card{Output: artifact.ContractRegression, Golden: golden}); err != nil {
		t.Fatalf("declared regression: %v", err)
	}
	if _, err := loader.Verify(path, "churn", nil, &artifact.Card{Output: artifact.ContractProbabilities}); !errors.Is(err, artifact.ErrCard) {
		t.Fatalf("probabilities from one output: %v, want a card error", err)
	}
}

// Any servable signature passes the check push and serving share; one the
// scorer could not serve is refused with the reason.
func TestServableSignatures(t *testing.T) {
	for name, path := range map[string]string{"mixed": testutil.MixedModel(t), "softmax": testutil.SoftmaxModel(t)} {
		sig, err := loader.Verify(path, name, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "mixed" && (len(sig.Ins()) != 5 || len(sig.Outs()) != 3 || sig.Ins()[1].Type != "int64") {
			t.Fatalf("mixed: %s", sig)
		}
		if _, err := artifact.Inspect(mustRead(t, path)); err != nil {
			t.Fatalf("%s: inspect: %v", name, err)
		}
	}
	fixed := testutil.MustGraph(t, &onnx.GraphProto{
		Name:   "fixed_batch",
		Input:  []*onnx.ValueInfoProto{testutil.ValueInfo("input", onnx.TensorProto_FLOAT, 2, 3)},
		Output: []*onnx.ValueInfoProto{testutil.ValueInfo("output", onnx.TensorProto_FLOAT, 2, 3)},
		Node:   []*onnx.NodeProto{{OpType: "Identity", Input: []string{"input"}, Output: []string{"output"}}},
	})
	if _, err := loader.Verify(fixed, "fixed", nil, nil); !errors.Is(err, artifact.ErrSignature) || !strings.Contains(err.Error(), "symbolic batch") {
		t.Fatalf("a fixed batch: %v, want a signature error naming the symbolic batch", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A graph whose runs never end cannot wedge the loader: its warm-up is
// stopped by ONNX Runtime's run termination when the load's deadline passes,
// and the loader serves the next load.
func TestLoadDeadlineStopsALoopingWarmUp(t *testing.T) {
	path := testutil.LoopingModel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s, err := loader.PrepareContext(ctx, path, "looping", nil, nil, loader.DefaultOptions())
	if !errors.Is(err, loader.ErrLoadTimeout) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("looping warm-up: %v, want ErrLoadTimeout", err)
	}
	// The loader's thread is free for the next load.
	good, err := loader.Prepare(testutil.MustModel(t, 1).Path, "calling-score", nil, nil, loader.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	good.Close()
	// A load cancelled (superseded, shut down) says so.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel2)
	if _, err := loader.PrepareContext(ctx2, path, "looping", nil, nil, loader.DefaultOptions()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled load: %v, want context.Canceled", err)
	}
}
