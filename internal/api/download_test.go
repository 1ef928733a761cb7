package api_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/modelops/modelops/internal/api"
	"github.com/modelops/modelops/internal/client"
	"github.com/modelops/modelops/internal/onnx"
	"github.com/modelops/modelops/internal/testutil"
)

// paddedModel is a calling-score-shaped graph with an unused 12 MB
// initializer: a download of it outlasts the socket buffers of a client that
// does not read.
func paddedModel(t *testing.T) string {
	pad := make([]float32, 3<<20)
	return testutil.MustGraph(t, &onnx.GraphProto{
		Name:   "padded",
		Input:  []*onnx.ValueInfoProto{testutil.ValueInfo("input", onnx.TensorProto_FLOAT, -1, 39)},
		Output: []*onnx.ValueInfoProto{testutil.ValueInfo("output", onnx.TensorProto_FLOAT, -1, 1)},
		Initializer: []*onnx.TensorProto{testutil.Float32s("bias", nil, 100), testutil.Int64s("axes", []int64{1}, 1),
			testutil.Float32s("pad", []int64{int64(len(pad))}, pad...)},
		Node: []*onnx.NodeProto{
			{OpType: "ReduceSum", Input: []string{"input", "axes"}, Output: []string{"sum"}, Attribute: []*onnx.AttributeProto{{Name: "keepdims", Type: onnx.AttributeProto_INT, I: 1}}},
			{OpType: "Add", Input: []string{"sum", "bias"}, Output: []string{"output"}},
		},
	})
}

// A token holding artifact downloads open by not reading them (each a
// connection and an open blob for up to 30 minutes) is refused past its share
// with 429; a download that ends frees its place.
func TestArtifactDownloadsAreCappedPerToken(t *testing.T) {
	ctx := context.Background()
	reg, _ := testutil.MustRegistry(t)
	cp := api.NewControlPlane(reg, discard)
	cp.MaxDownloadsPerToken = 1
	url := MustServe(t, cp.Handler())
	cl := client.New(url)
	if _, err := cl.Push(ctx, client.PushOptions{Model: "calling-score", ArtifactPath: paddedModel(t)}); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/models/calling-score/versions/1/artifact"
	// A client that asks and does not read, with a small receive buffer.
	conn, err := net.Dial("tcp", url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	status, err := bufio.NewReaderSize(conn, 64).ReadString('\n')
	if err != nil || status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("the held download: %q %v", status, err)
	}
	get := func() int {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if status := get(); status != http.StatusTooManyRequests {
		t.Fatalf("a second download while the first is held: %d, want 429", status)
	}
	conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for get() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("a closed download never freed its place")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
