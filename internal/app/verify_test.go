package app

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/registry"
	"github.com/modelops/modelops/internal/testutil"
)

// Hostile graphs, written with the ONNX protobuf types. Each has the
// calling-score signature (input float32 [batch,39], output float32
// [batch,1]), so that it passes inspection and reaches the runtime: its output
// is the mean of the input plus a scalar the hostile part yields.

func valueInfo(name string, elem onnx.TensorProto_DataType, dims ...any) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range dims {
		switch d := d.(type) {
		case string:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: d}})
		case int:
			shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		}
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{ElemType: int32(elem), Shape: shape}}}}
}

func float32Tensor(name string, dims []int64, v ...float32) *onnx.TensorProto {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), RawData: raw}
}

func int64Tensor(name string, dims []int64, v ...int64) *onnx.TensorProto {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_INT64), RawData: raw}
}

// callingScoreGraph writes a graph whose output is mean(input) + extra, where
// the nodes given compute the scalar float "extra".
func callingScoreGraph(t *testing.T, name string, init []*onnx.TensorProto, nodes ...*onnx.NodeProto) string {
	t.Helper()
	nodes = append(nodes,
		&onnx.NodeProto{OpType: "ReduceMean", Input: []string{"input"}, Output: []string{"mean"}, Attribute: []*onnx.AttributeProto{
			{Name: "axes", Type: onnx.AttributeProto_INTS, Ints: []int64{1}}, {Name: "keepdims", Type: onnx.AttributeProto_INT, I: 1}}},
		&onnx.NodeProto{OpType: "Add", Input: []string{"mean", "extra"}, Output: []string{"output"}},
	)
	g := &onnx.GraphProto{
		Name:        name,
		Input:       []*onnx.ValueInfoProto{valueInfo("input", onnx.TensorProto_FLOAT, "batch", 39)},
		Output:      []*onnx.ValueInfoProto{valueInfo("output", onnx.TensorProto_FLOAT, "batch", 1)},
		Initializer: init,
		Node:        nodes,
	}
	data, err := proto.Marshal(&onnx.ModelProto{IrVersion: 8, OpsetImport: []*onnx.OperatorSetIdProto{{Version: 17}}, Graph: g})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// loopingArtifact loops 2^62 times: a Loop whose body passes its carried value
// on unchanged.
func loopingArtifact(t *testing.T) string {
	body := &onnx.GraphProto{
		Name: "spin",
		Input: []*onnx.ValueInfoProto{
			valueInfo("i", onnx.TensorProto_INT64), valueInfo("cond_in", onnx.TensorProto_BOOL), valueInfo("v_in", onnx.TensorProto_FLOAT),
		},
		Output: []*onnx.ValueInfoProto{valueInfo("cond_out", onnx.TensorProto_BOOL), valueInfo("v_out", onnx.TensorProto_FLOAT)},
		Node: []*onnx.NodeProto{
			{OpType: "Identity", Input: []string{"cond_in"}, Output: []string{"cond_out"}},
			{OpType: "Identity", Input: []string{"v_in"}, Output: []string{"v_out"}},
		},
	}
	cond := &onnx.TensorProto{Name: "cond", DataType: int32(onnx.TensorProto_BOOL), RawData: []byte{1}}
	return callingScoreGraph(t, "loops", []*onnx.TensorProto{int64Tensor("trips", nil, 1<<62), cond, float32Tensor("zero", nil, 0)},
		&onnx.NodeProto{OpType: "Loop", Input: []string{"trips", "cond", "zero"}, Output: []string{"extra"},
			Attribute: []*onnx.AttributeProto{{Name: "body", Type: onnx.AttributeProto_GRAPH, G: body}}})
}

// allocatingArtifact asks for 16 GiB at run time: zeros of shape [4, 2^30],
// summed.
func allocatingArtifact(t *testing.T) string {
	return callingScoreGraph(t, "allocates", []*onnx.TensorProto{int64Tensor("shape", []int64{2}, 4, 1<<30)},
		&onnx.NodeProto{OpType: "ConstantOfShape", Input: []string{"shape"}, Output: []string{"zeros"},
			Attribute: []*onnx.AttributeProto{{Name: "value", Type: onnx.AttributeProto_TENSOR, T: float32Tensor("", []int64{1}, 0)}}},
		&onnx.NodeProto{OpType: "ReduceSum", Input: []string{"zeros"}, Output: []string{"extra"}, Attribute: []*onnx.AttributeProto{
			{Name: "keepdims", Type: onnx.AttributeProto_INT, I: 0}}})
}

// externalDataArtifact keeps an initializer's data in a file, planted in dir:
// where the runtime looks for it, beside the staged upload.
func externalDataArtifact(t *testing.T, dir string) string {
	weights := &onnx.TensorProto{Name: "planted_weights", Dims: []int64{}, DataType: int32(onnx.TensorProto_FLOAT),
		DataLocation: onnx.TensorProto_EXTERNAL, ExternalData: []*onnx.StringStringEntryProto{{Key: "location", Value: "weights.bin"}}}
	p := callingScoreGraph(t, "external", []*onnx.TensorProto{weights},
		&onnx.NodeProto{OpType: "Identity", Input: []string{"planted_weights"}, Output: []string{"extra"}})
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), make([]byte, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyingControlPlane starts a control plane whose push verification may use
// cpu seconds of CPU time.
func verifyingControlPlane(t *testing.T, cpu time.Duration) (*ControlPlane, *client.Client) {
	t.Helper()
	cfg := DefaultControlPlaneConfig()
	cfg.DataDir, cfg.Listen = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
	cfg.AdminToken = registry.NewTokenSecret()
	cfg.VerifyCPUTime = cpu
	cfg.VerifyTimeout = 10 * time.Minute // the CPU limit or the test ends it first
	cp := NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := cp.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close(context.Background()) })
	c := client.New(cp.URL())
	c.Token = cfg.AdminToken
	return cp, c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Push verification runs the admin's graph in a child process under limits: a
// graph that loops forever and one that allocates 16 GiB are refused with 422
// and the reason, nothing is recorded, and the control plane answers other
// requests meanwhile and goes on serving.
func TestHostilePushesAreVerifiedInABoundedChild(t *testing.T) {
	cp, c := verifyingControlPlane(t, 2*time.Second)
	ctx := context.Background()
	for _, tc := range []struct {
		name, path, reason string
	}{
		{"looping", loopingArtifact(t), "CPU-time limit of 2s"},
		{"allocating", allocatingArtifact(t), "allocate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			var pushErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, pushErr = c.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: tc.path})
			}()
			if tc.name == "looping" {
				// Other requests are answered while the child spins. The
				// bound is generous (a loaded 2-CPU machine): it catches a
				// control plane that is stuck, not one that is slow.
				waitFor(t, "the verify child", time.Minute, func() bool { return cp.Verifier.Running() > 0 })
				for _, path := range []string{"/healthz", "/api/v1/models"} {
					reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
					req, _ := http.NewRequestWithContext(reqCtx, http.MethodGet, cp.URL()+path, nil)
					req.Header.Set("Authorization", "Bearer "+c.Token)
					resp, err := http.DefaultClient.Do(req)
					cancel()
					if err != nil {
						t.Fatalf("GET %s during the push: %v", path, err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("GET %s during the push: %s", path, resp.Status)
					}
				}
				if cp.Verifier.Running() == 0 {
					t.Log("the verify child ended while the other requests were answered")
				}
			}
			wg.Wait()
			if client.StatusOf(pushErr) != http.StatusUnprocessableEntity || !strings.Contains(pushErr.Error(), tc.reason) {
				t.Fatalf("push of a %s graph: %v, want 422 saying %q", tc.name, pushErr, tc.reason)
			}
			t.Logf("refused: %v", pushErr)
			if ms, err := c.Models(ctx); err != nil || len(ms) != 0 {
				t.Fatalf("after a refused push: models %v, %v; want none", ms, err)
			}
		})
	}
	// Still serving, and a sound model still goes in.
	good := testutil.MustModel(t, 1)
	if _, err := c.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: good.Path, Card: good.Card}); err != nil {
		t.Fatalf("push of a sound model after the hostile ones: %v", err)
	}
}

// A client that goes away takes its push's verify child with it.
func TestAVerifyChildDiesWithItsClient(t *testing.T) {
	cp, c := verifyingControlPlane(t, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: loopingArtifact(t)})
		done <- err
	}()
	waitFor(t, "the verify child", time.Minute, func() bool { return cp.Verifier.Running() > 0 })
	cancel()
	<-done
	waitFor(t, "the verify child to be killed", time.Minute, func() bool { return cp.Verifier.Running() == 0 })
}

// A model whose tensors keep their data in files beside it is refused at push,
// naming the tensor, even with the file planted where the runtime would look.
func TestExternalDataIsRefusedAtPush(t *testing.T) {
	cp, c := verifyingControlPlane(t, time.Minute)
	_, err := c.Push(context.Background(), client.PushOptions{Model: "calling-score", ArtifactPath: externalDataArtifact(t, cp.Registry.StagingDir)})
	if client.StatusOf(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), `"planted_weights"`) || !strings.Contains(err.Error(), "external") {
		t.Fatalf("push with external data: %v, want 422 naming planted_weights", err)
	}
}

// The process that runs an admin's graph gets no secrets from the control
// plane's environment.
func TestVerifyChildGetsNoSecrets(t *testing.T) {
	t.Setenv("MODELOPS_ADMIN_TOKEN", "mo_secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
	env := strings.Join(childEnv(), "\n")
	if strings.Contains(env, "secret") || !strings.Contains(env, "PATH=") {
		t.Fatalf("a verify child's environment:\n%s", env)
	}
}

// A verify process that cannot run or answer is the control plane's fault
// (503), not the artifact's (422), and records nothing.
func TestABrokenVerifierIsNotTheArtifactsFault(t *testing.T) {
	testutil.InitORT()
	good := testutil.MustModel(t, 1)
	for _, command := range [][]string{{"/bin/false"}, {filepath.Join(t.TempDir(), "missing")}} {
		cfg := DefaultControlPlaneConfig()
		cfg.DataDir, cfg.Listen = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
		cfg.AdminToken = registry.NewTokenSecret()
		cfg.VerifyCommand = command
		cp := NewControlPlane(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := cp.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := client.New(cp.URL())
		c.Token = cfg.AdminToken
		_, err := c.Push(context.Background(), client.PushOptions{Model: "calling-score", ArtifactPath: good.Path, Card: good.Card})
		if client.StatusOf(err) != http.StatusServiceUnavailable {
			t.Errorf("push verified by %v: %v, want 503", command, err)
		}
		cp.Close(context.Background())
	}
}
