package scorerapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scorerapi/inferencepb"
	"github.com/modelops/modelops/internal/scoring"
)

// inferenceServer is inference.GRPCInferenceService over the scoring core.
// Its semantics are the REST adapter's (internal/api/oip.go): the same
// parameters, the same checks, the same answers. The tensor conversion below
// duplicates that adapter's until both live in this package.
type inferenceServer struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	g *GRPCServer
}

// ServerName and the extensions the scorer reports in server metadata (REST's
// GET /v2 says the same).
const ServerName = "modelops-scorer"

var serverExtensions = []string{"binary_tensor_data"}

func (s *inferenceServer) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

func (s *inferenceServer) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	ok, _ := s.g.Service.Ready()
	return &inferencepb.ServerReadyResponse{Ready: ok}, nil
}

func (s *inferenceServer) ServerMetadata(context.Context, *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	return &inferencepb.ServerMetadataResponse{Name: ServerName, Version: "2", Extensions: serverExtensions}, nil
}

// model finds a model by the name a request gives ("" names none).
func (s *inferenceServer) model(name string) (*scoring.Model, error) {
	m, ok := s.g.Service.Model(name)
	if !ok || name == "" {
		return nil, status.Errorf(codes.NotFound, "unknown model %q", truncate(name, 80))
	}
	return m, nil
}

// pin finds version v of m as a request spells it (a decimal number),
// acquired; the caller releases it.
func pin(m *scoring.Model, v string) (*loader.Loaded, error) {
	n, err := strconv.Atoi(v)
	if err == nil && n >= 1 && strconv.Itoa(n) == v {
		if l, _ := m.Pin(n); l != nil {
			return l, nil
		}
	}
	return nil, status.Error(codes.NotFound, scoring.NoVersion(m, v))
}

// ModelReady: a model is ready when a session or its rules can answer, a
// version when it is loaded.
func (s *inferenceServer) ModelReady(_ context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	m, err := s.model(req.GetName())
	if err != nil {
		return nil, err
	}
	if v := req.GetVersion(); v != "" {
		l, err := pin(m, v)
		if err != nil {
			return nil, err
		}
		l.Release()
		return &inferencepb.ModelReadyResponse{Ready: true}, nil
	}
	return &inferencepb.ModelReadyResponse{Ready: m.Ready()}, nil
}

// ModelMetadata: the versions served (production's, then the canary's), or
// the one asked for, and the tensors of production's session, or of that
// version's.
func (s *inferenceServer) ModelMetadata(_ context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	m, err := s.model(req.GetName())
	if err != nil {
		return nil, err
	}
	width := int64(m.Width())
	md := &inferencepb.ModelMetadataResponse{Name: m.Name, Platform: "onnxruntime_onnx",
		Inputs:  []*inferencepb.ModelMetadataResponse_TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, width}}},
		Outputs: []*inferencepb.ModelMetadataResponse_TensorMetadata{{Name: "output", Datatype: "FP32", Shape: []int64{-1, 1}}}}
	var l *loader.Loaded
	if v := req.GetVersion(); v != "" {
		if l, err = pin(m, v); err != nil {
			return nil, err
		}
		md.Versions = []string{v}
	} else {
		md.Versions = m.Versions()
		l = m.Production.Acquire()
	}
	if l != nil {
		sig := l.Signature()
		md.Inputs, md.Outputs = nil, nil
		for _, t := range sig.Ins() {
			md.Inputs = append(md.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: artifact.ServableTypes[t.Type], Shape: t.Shape})
		}
		for _, t := range sig.Outs() {
			md.Outputs = append(md.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: artifact.ServableTypes[t.Type], Shape: t.Shape})
		}
		l.Release()
	}
	return md, nil
}

// inferParams are the request parameters the scorer reads; the rest are
// ignored, as on REST.
type inferParams struct {
	key        string
	budget     time.Duration
	noFallback bool
}

// readParams reads "key" (string: the routing key), "timeout" (int64: the
// latency budget in microseconds, as Triton's clients send it; 0 is the
// scorer's) and "fallback" (bool: false refuses an answer from the rules).
func readParams(ps map[string]*inferencepb.InferParameter) (inferParams, error) {
	var p inferParams
	if v, ok := ps["key"]; ok {
		c, ok := v.GetParameterChoice().(*inferencepb.InferParameter_StringParam)
		if !ok {
			return p, errors.New("parameters.key must be a string_param")
		}
		p.key = c.StringParam
	}
	if v, ok := ps["timeout"]; ok {
		var us int64
		switch c := v.GetParameterChoice().(type) {
		case *inferencepb.InferParameter_Int64Param:
			us = c.Int64Param
		default:
			return p, errors.New("parameters.timeout must be an int64_param (microseconds)")
		}
		if us < 0 || us > scoring.MaxBudget.Microseconds() {
			return p, fmt.Errorf("parameters.timeout %d: want microseconds from 1 to %d (0 or none: the scorer's budget)", us, scoring.MaxBudget.Microseconds())
		}
		p.budget = time.Duration(us) * time.Microsecond
	}
	if v, ok := ps["fallback"]; ok {
		c, ok := v.GetParameterChoice().(*inferencepb.InferParameter_BoolParam)
		if !ok {
			return p, errors.New("parameters.fallback must be a bool_param")
		}
		p.noFallback = !c.BoolParam
	}
	return p, nil
}

// refusal is an error status with the HTTP-like status and reason the
// service's metrics count it under.
type refusal struct {
	code   codes.Code
	status int
	reason string
	msg    string
}

func invalid(format string, args ...any) *refusal {
	return &refusal{code: codes.InvalidArgument, status: 400, reason: scoring.ReasonOf(scoring.ErrInvalidInput), msg: fmt.Sprintf(format, args...)}
}

// ModelInfer answers an inference request: a thin adapter over
// scoring.Service.Score. A model of one FP32 input [N,F] and one FP32 output
// takes the rows path (which its rules can answer too); any other servable
// signature the tensors path.
func (s *inferenceServer) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	svc := s.g.Service
	m, err := s.model(req.GetModelName())
	if err != nil {
		svc.Refused("", 404, scoring.ReasonOf(scoring.ErrUnknownModel))
		return nil, err
	}
	resp, r := s.infer(ctx, m, req)
	if r != nil {
		if r.status > 0 { // Score counts its own refusals
			svc.Refused(m.Name, r.status, r.reason)
		}
		return nil, status.Error(r.code, r.msg)
	}
	return resp, nil
}

func (s *inferenceServer) infer(ctx context.Context, m *scoring.Model, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, *refusal) {
	svc := s.g.Service
	pinned, width := 0, m.Width()
	sig, hasSig := m.Signature()
	if v := req.GetModelVersion(); v != "" {
		l, err := pin(m, v)
		if err != nil {
			return nil, &refusal{codes.NotFound, 404, scoring.ReasonOf(scoring.ErrUnknownVersion), status.Convert(err).Message()}
		}
		pinned, width, sig, hasSig = l.Version, l.Signature().Features(), l.Signature(), true
		l.Release()
	}
	params, err := readParams(req.GetParameters())
	if err != nil {
		return nil, invalid("%v", err)
	}
	raw := req.GetRawInputContents()
	if len(raw) > 0 {
		if len(raw) != len(req.GetInputs()) {
			return nil, invalid("%d raw_input_contents for %d inputs: one each, in the inputs' order", len(raw), len(req.GetInputs()))
		}
		for _, in := range req.GetInputs() {
			if in.GetContents() != nil {
				return nil, invalid("input %q has contents and the request raw_input_contents: use one or the other", truncate(in.GetName(), 40))
			}
		}
	}
	var out scoring.Response
	var names []string // outputs asked for, in order
	if hasSig && !sig.Simple() {
		inputs, rows, r := s.tensors(req, raw)
		if r != nil {
			return nil, r
		}
		for _, o := range req.GetOutputs() {
			if !slices.ContainsFunc(sig.Outs(), func(t artifact.Tensor) bool { return t.Name == o.GetName() }) {
				return nil, invalid("unknown output %q: the model yields %s", truncate(o.GetName(), 40), sig)
			}
			names = append(names, o.GetName())
		}
		out, err = svc.Score(ctx, scoring.Request{Model: m.Name, Version: pinned, Rows: rows, Inputs: inputs,
			Key: params.key, Budget: params.budget, NoFallback: params.noFallback})
	} else {
		inputName, outputName := "input", "output"
		if hasSig {
			inputName, outputName = sig.Input.Name, sig.Output.Name
		}
		if width == 0 {
			return nil, &refusal{codes.Unavailable, 503, scoring.ReasonOf(scoring.ErrUnavailable), fmt.Sprintf("model %s has no verified version loaded yet and no fallback rules", m.Name)}
		}
		ins := req.GetInputs()
		if len(ins) != 1 {
			return nil, invalid("expected 1 input tensor %q, got %d", inputName, len(ins))
		}
		in := ins[0]
		if in.GetName() != inputName {
			return nil, invalid("unexpected input %q: the model takes %q", truncate(in.GetName(), 40), inputName)
		}
		if in.GetDatatype() != "FP32" {
			return nil, invalid("input %q datatype %q: the model takes FP32", inputName, truncate(in.GetDatatype(), 20))
		}
		shape := in.GetShape()
		if len(shape) != 2 || shape[1] != int64(width) || shape[0] < 1 || shape[0] > int64(svc.MaxRows) {
			return nil, invalid("input %q shape %v: want [N,%d] with 1 ≤ N ≤ %d", inputName, shape, width, svc.MaxRows)
		}
		for _, o := range req.GetOutputs() {
			if o.GetName() != outputName {
				return nil, invalid("unknown output %q: the model yields %q", truncate(o.GetName(), 40), outputName)
			}
		}
		n := int(shape[0])
		var arrival *loader.Arrival
		if pinned == 0 { // a pinned request never joins a batch
			arrival = svc.Expect()
			defer arrival.Abandon()
		}
		var flat []float32
		if len(raw) > 0 {
			if len(raw[0]) != 4*n*width {
				return nil, invalid("input %q: raw_input_contents has %d bytes; shape [%d,%d] FP32 needs %d", inputName, len(raw[0]), n, width, 4*n*width)
			}
			flat = rawFP32(raw[0])
			if i := loader.FirstNonFinite(raw[0]); i >= 0 {
				return nil, invalid("input %q: value %d is not a finite number", inputName, i)
			}
		} else {
			flat = in.GetContents().GetFp32Contents()
			if len(flat) != n*width {
				return nil, invalid("input %q: contents.fp32_contents has %d values; shape [%d,%d] needs %d", inputName, len(flat), n, width, n*width)
			}
			if i := loader.NonFinite32(flat); i >= 0 {
				return nil, invalid("input %q: value %d is not a finite number", inputName, i)
			}
		}
		out, err = svc.Score(ctx, scoring.Request{Model: m.Name, Version: pinned, Flat: flat, Rows: n,
			Key: params.key, Budget: params.budget, NoFallback: params.noFallback, Arrival: arrival})
		if err == nil && out.Tensors == nil {
			out.Tensors = []loader.Tensor{{Name: outputName, Shape: []int64{int64(n), int64(out.Outputs)}, Data: out.Scores}}
		}
	}
	if err != nil {
		return nil, scoreRefusal(ctx, err)
	}
	return answer(m, req, &out, names), nil
}

// tensors reads the inputs of a request for a model of any servable signature.
func (s *inferenceServer) tensors(req *inferencepb.ModelInferRequest, raw [][]byte) ([]loader.Tensor, int, *refusal) {
	maxRows := int64(s.g.Service.MaxRows)
	if len(req.GetInputs()) == 0 {
		return nil, 0, invalid("no input tensors")
	}
	rows := int64(-1)
	inputs := make([]loader.Tensor, 0, len(req.GetInputs()))
	for i, in := range req.GetInputs() {
		name, shape, dt := truncate(in.GetName(), 40), in.GetShape(), in.GetDatatype()
		if len(shape) == 0 || shape[0] < 1 || shape[0] > maxRows {
			return nil, 0, invalid("input %q shape %v: want [N,…] with 1 ≤ N ≤ %d", name, shape, maxRows)
		}
		if rows >= 0 && shape[0] != rows {
			return nil, 0, invalid("input %q has %d rows, another %d: every input has the batch's rows", name, shape[0], rows)
		}
		rows = shape[0]
		count := int64(1)
		for _, d := range shape {
			if d < 1 || d > 1<<24 {
				return nil, 0, invalid("input %q shape %v: every dimension from 1 to %d", name, shape, 1<<24)
			}
			count *= d
			if count > 1<<26 {
				return nil, 0, invalid("input %q shape %v is too large", name, shape)
			}
		}
		size := loader.DatatypeSize(dt)
		if size == 0 {
			return nil, 0, invalid("input %q datatype %q: the scorer reads FP32, FP64, INT32, INT64 and BOOL", name, truncate(dt, 20))
		}
		t := loader.Tensor{Name: in.GetName(), Shape: shape}
		var err error
		if len(raw) > 0 {
			if int64(len(raw[i])) != count*size {
				return nil, 0, invalid("input %q: raw_input_contents[%d] has %d bytes; shape %v %s needs %d", name, i, len(raw[i]), shape, dt, count*size)
			}
			t.Data, err = loader.DecodeLE(dt, raw[i])
		} else {
			t.Data, err = fromContents(dt, in.GetContents(), int(count))
		}
		if err != nil {
			return nil, 0, invalid("input %q: %v", name, err)
		}
		inputs = append(inputs, t)
	}
	return inputs, int(rows), nil
}

// scoreRefusal maps an error of Score to a status: INVALID_ARGUMENT,
// NOT_FOUND, RESOURCE_EXHAUSTED when admission refuses (queue full, or no
// turn within the budget), UNAVAILABLE when nothing may answer. Score counted
// it already. A refusal worth retrying says after how long in the trailer
// "retry-after" (seconds), as REST's Retry-After header does.
func scoreRefusal(ctx context.Context, err error) *refusal {
	var e *scoring.Error
	if !errors.As(err, &e) {
		st := status.FromContextError(err)
		return &refusal{code: st.Code(), msg: st.Message(), status: -1}
	}
	if e.RetryAfter > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.Itoa(e.RetryAfter)))
	}
	code := codes.Internal
	switch {
	case errors.Is(e, scoring.ErrInvalidInput):
		code = codes.InvalidArgument
	case errors.Is(e, scoring.ErrUnknownModel), errors.Is(e, scoring.ErrUnknownVersion):
		code = codes.NotFound
	case errors.Is(e, scoring.ErrQueueFull), errors.Is(e, scoring.ErrNoCapacity):
		code = codes.ResourceExhausted
	case errors.Is(e, scoring.ErrUnavailable):
		code = codes.Unavailable
	}
	return &refusal{code: code, msg: e.Msg, status: -1}
}

// answer is the response to req: every output (or those asked for, in their
// order) in raw_output_contents, as Triton answers, and in parameters the arm,
// the source ("model" or "fallback"), the fallback's reason and the request
// id for feedback, as REST's.
func answer(m *scoring.Model, req *inferencepb.ModelInferRequest, out *scoring.Response, names []string) *inferencepb.ModelInferResponse {
	resp := &inferencepb.ModelInferResponse{ModelName: m.Name, Id: req.GetId(), Parameters: map[string]*inferencepb.InferParameter{
		"arm":    {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: out.Arm}},
		"source": {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: out.Source}},
	}}
	if out.Reason != "" {
		resp.Parameters["reason"] = &inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: out.Reason}}
	}
	if out.RequestID != "" {
		resp.Parameters["request_id"] = &inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: out.RequestID}}
	}
	if out.Version > 0 {
		resp.ModelVersion = strconv.Itoa(out.Version)
	}
	tensors := out.Tensors
	if len(names) > 0 {
		tensors = nil
		for _, name := range names {
			if i := slices.IndexFunc(out.Tensors, func(t loader.Tensor) bool { return t.Name == name }); i >= 0 {
				tensors = append(tensors, out.Tensors[i])
			}
		}
	}
	for _, t := range tensors {
		resp.Outputs = append(resp.Outputs, &inferencepb.ModelInferResponse_InferOutputTensor{Name: t.Name, Datatype: artifact.ServableTypes[t.Type()], Shape: t.Shape})
		resp.RawOutputContents = append(resp.RawOutputContents, loader.EncodeLE(t.Data))
	}
	return resp
}

// rawFP32 is b's little-endian float32 values: b itself when the machine is
// little-endian and b is aligned (the request owns b, and Score keeps nothing
// of a request once it returns; the codec aligns the first raw contents),
// else a copy.
func rawFP32(b []byte) []float32 {
	n := len(b) / 4
	if n == 0 {
		return nil
	}
	if loader.NativeLittleEndian && uintptr(unsafe.Pointer(&b[0]))%unsafe.Alignof(float32(0)) == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]float32, n)
	if loader.NativeLittleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 4*n), b)
		return out
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// fromContents takes want values of datatype from the contents field that
// carries it, naming the field and the first value that does not fit.
func fromContents(datatype string, c *inferencepb.InferTensorContents, want int) (any, error) {
	var data any
	var n int
	var field string
	switch datatype {
	case "FP32":
		v := c.GetFp32Contents()
		if i := loader.NonFinite32(v); i >= 0 {
			return nil, fmt.Errorf("value %d is not a finite number", i)
		}
		data, n, field = v, len(v), "fp32_contents"
	case "FP64":
		v := c.GetFp64Contents()
		if i := loader.NonFinite64(v); i >= 0 {
			return nil, fmt.Errorf("value %d is not a finite number", i)
		}
		data, n, field = v, len(v), "fp64_contents"
	case "INT32":
		v := c.GetIntContents()
		data, n, field = v, len(v), "int_contents"
	case "INT64":
		v := c.GetInt64Contents()
		data, n, field = v, len(v), "int64_contents"
	case "BOOL":
		v := c.GetBoolContents()
		data, n, field = v, len(v), "bool_contents"
	default:
		return nil, fmt.Errorf("datatype %q: the scorer reads FP32, FP64, INT32, INT64 and BOOL", datatype)
	}
	if n != want {
		return nil, fmt.Errorf("contents.%s has %d values; the shape needs %d", field, n, want)
	}
	return data, nil
}

// truncate shortens s to at most n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
