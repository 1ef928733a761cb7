package scorerapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/modelops/modelops/internal/app"
	"github.com/modelops/modelops/internal/scorerapi"
	pb "github.com/modelops/modelops/internal/scorerapi/inferencepb"
	"github.com/modelops/modelops/internal/testutil"
)

// base bounds every call of the tests.
var base context.Context

func TestMain(m *testing.M) {
	testutil.InitORT()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	base = ctx
	code := m.Run()
	cancel()
	os.Exit(code)
}

const apiKey = "k-grpc-test"

// node is a scorer started by the assembly the binary uses (REST and gRPC
// both up), serving one model from a directory.
type node struct {
	s    *app.Scorer
	dir  string
	conn *grpc.ClientConn
	cl   pb.GRPCInferenceServiceClient
	rest string
}

type nodeOpts struct {
	model    string
	onnx     string // file to serve ("" serves nothing yet)
	tls      bool
	noClient bool
}

func startNode(t *testing.T, o nodeOpts) *node {
	t.Helper()
	dir := t.TempDir()
	if o.onnx != "" {
		copyFile(t, o.onnx, filepath.Join(dir, o.model+".onnx"))
	}
	cfg := app.DefaultScorerConfig()
	cfg.GRPCListen = "127.0.0.1:0" // the default port would be shared by tests running at once
	cfg.Models, cfg.ModelDir = []string{o.model}, dir
	cfg.Listen, cfg.GRPCListen, cfg.CacheDir = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(t.TempDir(), "cache")
	cfg.APIKeys = []string{apiKey}
	var pool *x509.CertPool
	if o.tls {
		cfg.TLSCert, cfg.TLSKey, pool = selfSigned(t)
	}
	s := app.NewScorer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := &node{s: s, dir: dir, rest: s.URL()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if n.conn != nil {
			n.conn.Close()
		}
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	creds := insecure.NewCredentials()
	if o.tls {
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool})
	}
	conn, err := grpc.NewClient(s.GRPC.ListenAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	n.conn, n.cl = conn, pb.NewGRPCInferenceServiceClient(conn)
	return n
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// keyed is a context carrying the API key as Triton's clients send headers.
func keyed() context.Context {
	return metadata.AppendToOutgoingContext(base, "authorization", "Bearer "+apiKey)
}

// input is one tensor of a request, sent as contents or raw.
type input struct {
	name, datatype string
	shape          []int64
	data           any // []float32, []float64, []int32, []int64, []bool
}

func le(data any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, data); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func contents(data any) *pb.InferTensorContents {
	switch d := data.(type) {
	case []float32:
		return &pb.InferTensorContents{Fp32Contents: d}
	case []float64:
		return &pb.InferTensorContents{Fp64Contents: d}
	case []int32:
		return &pb.InferTensorContents{IntContents: d}
	case []int64:
		return &pb.InferTensorContents{Int64Contents: d}
	case []bool:
		return &pb.InferTensorContents{BoolContents: d}
	}
	panic(fmt.Sprintf("%T", data))
}

func inferRequest(model string, raw bool, ins ...input) *pb.ModelInferRequest {
	req := &pb.ModelInferRequest{ModelName: model, Id: "req-1"}
	for _, in := range ins {
		t := &pb.ModelInferRequest_InferInputTensor{Name: in.name, Datatype: in.datatype, Shape: in.shape}
		if raw {
			req.RawInputContents = append(req.RawInputContents, le(in.data))
		} else {
			t.Contents = contents(in.data)
		}
		req.Inputs = append(req.Inputs, t)
	}
	return req
}

func param(resp *pb.ModelInferResponse, name string) string {
	return resp.GetParameters()[name].GetStringParam()
}

// restInfer asks the same of the REST API, binary tensors in and out, and
// returns each output's bytes by name and the version that answered.
func restInfer(t *testing.T, base, model string, ins ...input) (map[string][]byte, string) {
	t.Helper()
	type tensor struct {
		Name       string         `json:"name"`
		Shape      []int64        `json:"shape"`
		Datatype   string         `json:"datatype"`
		Parameters map[string]any `json:"parameters"`
	}
	var header struct {
		Inputs     []tensor       `json:"inputs"`
		Parameters map[string]any `json:"parameters"`
	}
	header.Parameters = map[string]any{"binary_data_output": true}
	var body []byte
	for _, in := range ins {
		b := le(in.data)
		header.Inputs = append(header.Inputs, tensor{Name: in.name, Shape: in.shape, Datatype: in.datatype, Parameters: map[string]any{"binary_data_size": len(b)}})
		body = append(body, b...)
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/models/"+model+"/infer", bytes.NewReader(append(h, body...)))
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(h)))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	all, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("REST infer: %d %s", resp.StatusCode, all)
	}
	hl, err := strconv.Atoi(resp.Header.Get("Inference-Header-Content-Length"))
	if err != nil {
		t.Fatalf("REST answer is not binary: %s", all)
	}
	var out struct {
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Name       string `json:"name"`
			Parameters struct {
				BinaryDataSize int `json:"binary_data_size"`
			} `json:"parameters"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(all[:hl], &out); err != nil {
		t.Fatal(err)
	}
	got, rest := map[string][]byte{}, all[hl:]
	for _, o := range out.Outputs {
		got[o.Name], rest = rest[:o.Parameters.BinaryDataSize], rest[o.Parameters.BinaryDataSize:]
	}
	return got, out.ModelVersion
}

func rows(seed uint64, n, width int) []float32 {
	r := mrand.New(mrand.NewPCG(seed, 7))
	out := make([]float32, n*width)
	for i := range out {
		out[i] = r.Float32()
	}
	return out
}

// Every RPC of the metadata side, against a real session.
func TestGRPCLiveReadyAndMetadata(t *testing.T) {
	m := testutil.MustModel(t, 1)
	n := startNode(t, nodeOpts{model: "calling-score", onnx: m.Path})
	ctx := context.Background() // metadata needs no key, as on REST
	if r, err := n.cl.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive = %v, %v", r, err)
	}
	if r, err := n.cl.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady = %v, %v", r, err)
	}
	if r, err := n.cl.ModelReady(ctx, &pb.ModelReadyRequest{Name: "calling-score"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady = %v, %v", r, err)
	}
	if r, err := n.cl.ModelReady(ctx, &pb.ModelReadyRequest{Name: "calling-score", Version: "1"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady v1 = %v, %v", r, err)
	}
	for _, req := range []*pb.ModelReadyRequest{{Name: "calling-score", Version: "2"}, {Name: "calling-score", Version: "01"}, {Name: "nope"}, {}} {
		if _, err := n.cl.ModelReady(ctx, req); status.Code(err) != codes.NotFound {
			t.Errorf("ModelReady %v: %v, want NOT_FOUND", req, err)
		}
	}
	sm, err := n.cl.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
	if err != nil || sm.Name != scorerapi.ServerName || len(sm.Extensions) == 0 {
		t.Fatalf("ServerMetadata = %v, %v", sm, err)
	}
	for _, v := range []string{"", "1"} {
		md, err := n.cl.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "calling-score", Version: v})
		if err != nil {
			t.Fatal(err)
		}
		if md.Name != "calling-score" || len(md.Versions) != 1 || md.Versions[0] != "1" || md.Platform != "onnxruntime_onnx" ||
			len(md.Inputs) != 1 || md.Inputs[0].Datatype != "FP32" || fmt.Sprint(md.Inputs[0].Shape) != "[-1 39]" ||
			len(md.Outputs) != 1 || md.Outputs[0].Datatype != "FP32" {
			t.Errorf("ModelMetadata(%q) = %v", v, md)
		}
	}
	if _, err := n.cl.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "calling-score", Version: "9"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelMetadata v9: %v, want NOT_FOUND", err)
	}
	if _, err := n.cl.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelMetadata nope: %v, want NOT_FOUND", err)
	}
}

// Rows sent as contents and as raw_input_contents, at batch 1 and 256, are
// answered with the same bits REST answers for them.
func TestGRPCInferMatchesRESTToTheBit(t *testing.T) {
	m := testutil.MustModel(t, 2)
	n := startNode(t, nodeOpts{model: "calling-score", onnx: m.Path})
	for _, batch := range []int{1, 256} {
		in := input{name: "input", datatype: "FP32", shape: []int64{int64(batch), 39}, data: rows(uint64(batch), batch, 39)}
		want, version := restInfer(t, n.rest, "calling-score", in)
		if version != "1" || len(want["output"]) != 4*batch {
			t.Fatalf("REST answered version %q with %d bytes", version, len(want["output"]))
		}
		for _, raw := range []bool{false, true} {
			req := inferRequest("calling-score", raw, in)
			req.Parameters = map[string]*pb.InferParameter{"key": {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "user-7"}}}
			resp, err := n.cl.ModelInfer(keyed(), req)
			if err != nil {
				t.Fatalf("batch %d raw %v: %v", batch, raw, err)
			}
			if resp.ModelName != "calling-score" || resp.ModelVersion != "1" || resp.Id != "req-1" || param(resp, "source") != "model" || param(resp, "arm") == "" {
				t.Errorf("batch %d raw %v: answer %v", batch, raw, resp)
			}
			if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "output" || resp.Outputs[0].Datatype != "FP32" || fmt.Sprint(resp.Outputs[0].Shape) != fmt.Sprintf("[%d 1]", batch) {
				t.Fatalf("batch %d raw %v: outputs %v", batch, raw, resp.Outputs)
			}
			if len(resp.RawOutputContents) != 1 || !bytes.Equal(resp.RawOutputContents[0], want["output"]) {
				t.Errorf("batch %d raw %v: gRPC and REST answers differ", batch, raw)
			}
			if resp.Outputs[0].Contents != nil {
				t.Errorf("batch %d: contents beside raw_output_contents", batch)
			}
		}
	}
	// The version in the request is honoured: 1 is served, 2 is not.
	req := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{1, 39}, data: rows(1, 1, 39)})
	req.ModelVersion = "1"
	if resp, err := n.cl.ModelInfer(keyed(), req); err != nil || resp.ModelVersion != "1" {
		t.Errorf("pinned v1: %v, %v", resp, err)
	}
	req.ModelVersion = "2"
	if _, err := n.cl.ModelInfer(keyed(), req); status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "version") {
		t.Errorf("pinned v2: %v, want NOT_FOUND naming the version", err)
	}
	// The calls are counted by protocol beside the core's series.
	metrics := scrape(t, n.rest)
	if !strings.Contains(metrics, `modelops_scorer_protocol_requests_total{code="OK",method="ModelInfer",protocol="grpc"} 5`) ||
		!strings.Contains(metrics, `modelops_scorer_protocol_requests_total{code="NotFound",method="ModelInfer",protocol="grpc"} 1`) {
		t.Errorf("metrics lack the gRPC calls:\n%s", grepLines(metrics, "protocol_requests"))
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// mixedInputs are the MixedModel's five inputs for n rows.
func mixedInputs(n int) []input {
	x := rows(uint64(n)+100, n, 3)
	ns, ws, ms, flags := make([]int64, n), make([]float64, n), make([]int32, n), make([]bool, n)
	for i := range n {
		ns[i], ws[i], ms[i], flags[i] = int64(i*1000003), float64(i)/3, int32(-i), i%3 == 0
	}
	s := func(w int64) []int64 { return []int64{int64(n), w} }
	return []input{
		{"x", "FP32", s(3), x}, {"n", "INT64", s(1), ns}, {"w", "FP64", s(1), ws}, {"m", "INT32", s(1), ms}, {"flag", "BOOL", s(1), flags},
	}
}

// A model of several inputs (FP32, INT64, FP64, INT32, BOOL) and outputs
// answers every output raw, with its true shape and datatype, equal to REST.
func TestGRPCMultiOutputModel(t *testing.T) {
	n := startNode(t, nodeOpts{model: "mixed", onnx: testutil.MixedModel(t)})
	for _, batch := range []int{1, 256} {
		ins := mixedInputs(batch)
		want, _ := restInfer(t, n.rest, "mixed", ins...)
		for _, raw := range []bool{false, true} {
			resp, err := n.cl.ModelInfer(keyed(), inferRequest("mixed", raw, ins...))
			if err != nil {
				t.Fatalf("batch %d raw %v: %v", batch, raw, err)
			}
			var got []string
			for i, o := range resp.Outputs {
				got = append(got, fmt.Sprintf("%s %s %v", o.Name, o.Datatype, o.Shape))
				if !bytes.Equal(resp.RawOutputContents[i], want[o.Name]) {
					t.Errorf("batch %d raw %v: output %s differs from REST's", batch, raw, o.Name)
				}
			}
			if w := fmt.Sprintf("[twice FP32 [%d 3] sum FP32 [%d 1] next INT64 [%d 1]]", batch, batch, batch); fmt.Sprint(got) != w {
				t.Fatalf("outputs %v, want %s", got, w)
			}
			next := resp.RawOutputContents[2]
			for i := range batch {
				if v := int64(binary.LittleEndian.Uint64(next[8*i:])); v != ins[1].data.([]int64)[i]+1 {
					t.Fatalf("next[%d] = %d, want n+1", i, v)
				}
			}
			twice := resp.RawOutputContents[0]
			if v := math.Float32frombits(binary.LittleEndian.Uint32(twice)); v != 2*ins[0].data.([]float32)[0] {
				t.Fatalf("twice[0] = %v", v)
			}
		}
	}
	// Outputs asked for come alone, in the order asked.
	req := inferRequest("mixed", true, mixedInputs(2)...)
	req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "next"}, {Name: "twice"}}
	resp, err := n.cl.ModelInfer(keyed(), req)
	if err != nil || len(resp.Outputs) != 2 || resp.Outputs[0].Name != "next" || resp.Outputs[1].Name != "twice" || len(resp.RawOutputContents) != 2 {
		t.Fatalf("outputs asked for: %v, %v", resp, err)
	}
	req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "bogus"}}
	if _, err := n.cl.ModelInfer(keyed(), req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown output: %v", err)
	}
}

// Bad requests get the status the issue names, with a message naming the
// input and position, and change nothing: the scorer keeps answering.
func TestGRPCRefusals(t *testing.T) {
	n := startNode(t, nodeOpts{model: "calling-score", onnx: testutil.MustModel(t, 3).Path})
	good := func() *pb.ModelInferRequest {
		return inferRequest("calling-score", false, input{name: "input", datatype: "FP32", shape: []int64{2, 39}, data: rows(3, 2, 39)})
	}
	nan := good()
	nan.Inputs[0].Contents.Fp32Contents[41] = float32(math.NaN())
	both := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{2, 39}, data: rows(3, 2, 39)})
	both.Inputs[0].Contents = contents(rows(3, 2, 39))
	short := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{2, 39}, data: rows(3, 1, 39)})
	cases := []struct {
		name string
		ctx  context.Context
		edit func(*pb.ModelInferRequest)
		req  *pb.ModelInferRequest
		code codes.Code
		says []string
	}{
		{name: "unknown model", edit: func(r *pb.ModelInferRequest) { r.ModelName = "nope" }, code: codes.NotFound, says: []string{"nope"}},
		{name: "unknown version", edit: func(r *pb.ModelInferRequest) { r.ModelVersion = "5" }, code: codes.NotFound, says: []string{"5"}},
		{name: "wrong shape", edit: func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{2, 38} }, code: codes.InvalidArgument, says: []string{`"input"`, "[2 38]", "39"}},
		{name: "too few values", edit: func(r *pb.ModelInferRequest) { r.Inputs[0].Shape = []int64{3, 39} }, code: codes.InvalidArgument, says: []string{`"input"`, "78 values", "117"}},
		{name: "wrong datatype", edit: func(r *pb.ModelInferRequest) { r.Inputs[0].Datatype = "INT64" }, code: codes.InvalidArgument, says: []string{`"input"`, "INT64"}},
		{name: "wrong name", edit: func(r *pb.ModelInferRequest) { r.Inputs[0].Name = "feats" }, code: codes.InvalidArgument, says: []string{"feats"}},
		{name: "nan", req: nan, code: codes.InvalidArgument, says: []string{`"input"`, "value 41"}},
		{name: "contents and raw", req: both, code: codes.InvalidArgument, says: []string{"raw_input_contents"}},
		{name: "raw too short", req: short, code: codes.InvalidArgument, says: []string{`"input"`, "156 bytes", "312"}},
		{name: "bad key type", edit: func(r *pb.ModelInferRequest) {
			r.Parameters = map[string]*pb.InferParameter{"key": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 3}}}
		}, code: codes.InvalidArgument, says: []string{"parameters.key"}},
		{name: "budget too long", edit: func(r *pb.ModelInferRequest) {
			r.Parameters = map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1 << 40}}}
		}, code: codes.InvalidArgument, says: []string{"parameters.timeout"}},
		{name: "no key", ctx: context.Background(), code: codes.Unauthenticated, says: []string{"Bearer"}},
		{name: "wrong key", ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nope"), code: codes.Unauthenticated},
	}
	for _, tc := range cases {
		req := tc.req
		if req == nil {
			req = good()
		}
		if tc.edit != nil {
			tc.edit(req)
		}
		ctx := tc.ctx
		if ctx == nil {
			ctx = keyed()
		}
		_, err := n.cl.ModelInfer(ctx, req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(status.Convert(err).Message(), s) {
				t.Errorf("%s: %q does not say %q", tc.name, status.Convert(err).Message(), s)
			}
		}
	}
	// x-api-key works too, and the scorer still answers.
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", apiKey)
	if _, err := n.cl.ModelInfer(ctx, good()); err != nil {
		t.Fatal(err)
	}
	if m := scrape(t, n.rest); !strings.Contains(m, `modelops_scorer_refused_total{arm="",code="401",model="",reason="unauthenticated",version=""} 2`) {
		t.Errorf("unauthenticated calls not counted as refusals:\n%s", grepLines(m, "refused_total"))
	}
}

// With no model loaded the rules answer, and the answer says so; a request
// refusing a fallback gets UNAVAILABLE. Holding every turn makes admission
// refuse: RESOURCE_EXHAUSTED.
func TestGRPCFallbackUnavailableAndAdmission(t *testing.T) {
	n := startNode(t, nodeOpts{model: "calling-score"})
	req := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{1, 39}, data: rows(4, 1, 39)})
	resp, err := n.cl.ModelInfer(keyed(), req)
	if err != nil {
		t.Fatal(err)
	}
	if param(resp, "source") != "fallback" || param(resp, "reason") == "" || resp.ModelVersion != "" || len(resp.RawOutputContents) != 1 || len(resp.RawOutputContents[0]) != 4 {
		t.Errorf("fallback answer: %v", resp)
	}
	req.Parameters = map[string]*pb.InferParameter{"fallback": {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: false}}}
	if _, err := n.cl.ModelInfer(keyed(), req); status.Code(err) != codes.Unavailable {
		t.Errorf("fallback refused: %v, want UNAVAILABLE", err)
	}
	// Every turn taken: a call waits its budget (1 ms) in the queue, then is refused.
	svc := n.s.GRPC.Service
	var releases []func()
	for range svc.MaxInFlight {
		release, err := svc.Admit(context.Background(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	req.Parameters = map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 1000}}}
	var trailer metadata.MD
	_, err = n.cl.ModelInfer(keyed(), req, grpc.Trailer(&trailer))
	for _, r := range releases {
		r()
	}
	if status.Code(err) != codes.ResourceExhausted || len(trailer.Get("retry-after")) != 1 {
		t.Errorf("admission refused: %v (trailer %v), want RESOURCE_EXHAUSTED with retry-after", err, trailer)
	}
	if _, err := n.cl.ModelInfer(keyed(), req); err != nil {
		t.Errorf("after the turns came back: %v", err)
	}
}

// A promotion under gRPC load: every call succeeds, each answer names
// version 1 or 2, and 2 comes.
func TestGRPCPromotionUnderLoad(t *testing.T) {
	v2 := testutil.MustModel(t, 6)
	n := startNode(t, nodeOpts{model: "calling-score", onnx: testutil.MustModel(t, 5).Path})
	var stop atomic.Bool
	var seen2 atomic.Bool
	var calls, failed atomic.Int64
	var mu sync.Mutex
	var problems []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{4, 39}, data: rows(uint64(w), 4, 39)})
			// A budget no slow test machine runs out of: a fallback here
			// would be the machine's, not the swap's.
			req.Parameters = map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 10_000_000}}}
			for !stop.Load() {
				resp, err := n.cl.ModelInfer(keyed(), req)
				calls.Add(1)
				if err == nil && (resp.ModelVersion == "1" || resp.ModelVersion == "2") && param(resp, "source") == "model" {
					if resp.ModelVersion == "2" {
						seen2.Store(true)
					}
					continue
				}
				failed.Add(1)
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%v %v", resp, err))
				mu.Unlock()
			}
		}()
	}
	for calls.Load() < 50 {
		time.Sleep(5 * time.Millisecond)
	}
	copyFile(t, v2.Path, filepath.Join(n.dir, "calling-score.onnx"))
	deadline := time.Now().Add(30 * time.Second)
	for !seen2.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	after := calls.Load()
	for calls.Load() < after+50 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if !seen2.Load() {
		t.Fatalf("version 2 never answered in %d calls", calls.Load())
	}
	if failed.Load() > 0 {
		t.Fatalf("%d of %d calls failed or named another version: %v", failed.Load(), calls.Load(), problems[:min(len(problems), 5)])
	}
}

// A client that opens a call and never sends its message is refused once the
// read timeout passes, and one that sends a message over the limit is
// refused at once; the server answers others all along.
func TestGRPCHeldStreamAndOversizeMessageAreRefused(t *testing.T) {
	n := startNode(t, nodeOpts{model: "calling-score", onnx: testutil.MustModel(t, 7).Path})
	g := &scorerapi.GRPCServer{Service: n.s.GRPC.Service, Addr: "127.0.0.1:0", APIKeys: []string{apiKey}, ReadTimeout: 300 * time.Millisecond, RowBytes: 256}
	if err := g.Open(); err != nil {
		t.Fatal(err)
	}
	defer g.Close(context.Background())
	conn, err := grpc.NewClient(g.ListenAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := pb.NewGRPCInferenceServiceClient(conn)
	good := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{1, 39}, data: rows(7, 1, 39)})
	if _, err := cl.ModelInfer(keyed(), good); err != nil {
		t.Fatal(err)
	}
	stream, err := conn.NewStream(keyed(), &grpc.StreamDesc{StreamName: "ModelInfer"}, "/inference.GRPCInferenceService/ModelInfer")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { held <- stream.RecvMsg(new(pb.ModelInferResponse)) }()
	// While it is held, calls on the same connection are answered.
	for range 5 {
		if _, err := cl.ModelInfer(keyed(), good); err != nil {
			t.Fatalf("while a stream is held: %v", err)
		}
	}
	select {
	case err := <-held:
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("held stream ended with %v, want DEADLINE_EXCEEDED", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stream held open was never refused")
	}
	// Over the limit: 4096 rows × 256 bytes + 64 KiB.
	limit := g.MaxMessageBytes()
	if limit != n.s.GRPC.Service.MaxRows*256+64<<10 {
		t.Fatalf("limit %d not derived from the row limit", limit)
	}
	big := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{int64(limit/156 + 1), 39}, data: rows(8, limit/156+1, 39)})
	_, err = cl.ModelInfer(keyed(), big)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Errorf("oversize message: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := cl.ModelInfer(keyed(), good); err != nil {
		t.Fatalf("after an oversize message: %v", err)
	}
}

// TLS with the scorer's certificate flags, the health service (overall and per
// model), reflection, and a graceful stop that lets a call in flight finish.
func TestGRPCTLSHealthReflectionAndGracefulStop(t *testing.T) {
	n := startNode(t, nodeOpts{model: "calling-score", onnx: testutil.MustModel(t, 9).Path, tls: true})
	ctx := context.Background()
	hc := healthpb.NewHealthClient(n.conn)
	for _, svc := range []string{"", "calling-score", "inference.GRPCInferenceService"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, %v", svc, r, err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown model: %v", err)
	}
	rc, err := reflectionpb.NewServerReflectionClient(n.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	lr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range lr.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "inference.GRPCInferenceService") || !strings.Contains(got, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %s", got)
	}
	rc.CloseSend()
	// A call in flight waits for a turn; the server stops; the call is answered.
	svc := n.s.GRPC.Service
	var releases []func()
	for range svc.MaxInFlight {
		release, err := svc.Admit(context.Background(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	req := inferRequest("calling-score", true, input{name: "input", datatype: "FP32", shape: []int64{1, 39}, data: rows(9, 1, 39)})
	req.Parameters = map[string]*pb.InferParameter{"timeout": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 30_000_000}}}
	answered := make(chan error, 1)
	go func() {
		_, err := n.cl.ModelInfer(keyed(), req)
		answered <- err
	}()
	for svc.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		closed <- n.s.GRPC.Close(cctx)
	}()
	// New calls are turned away while the one in flight drains.
	deadline := time.Now().Add(10 * time.Second)
	for {
		other, err := grpc.NewClient(n.s.GRPC.ListenAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
		if err != nil {
			t.Fatal(err)
		}
		_, err = pb.NewGRPCInferenceServiceClient(other).ServerLive(ctx, &pb.ServerLiveRequest{})
		other.Close()
		if status.Code(err) == codes.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new connection was still served during the stop: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a call in flight", err)
	default:
	}
	for _, r := range releases {
		r()
	}
	if err := <-answered; err != nil {
		t.Errorf("the call in flight during the stop: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting it.
func selfSigned(t *testing.T) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scorer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cert, keyPath, pool
}
