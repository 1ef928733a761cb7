package scorerapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scoring"
	"github.com/modelops/modelops/internal/wire"
)

// The Open Inference Protocol v2 (KServe / Triton "v2" REST), for the scorer's
// models: FP32 input "input" of shape [N, features], FP32 output "output" [N, 1].
// Errors are {"error": "…"} as the protocol says.

func oipError(x exchange, status int, msg string) error {
	return x.json(status, map[string]string{"error": msg})
}

func (s *Scorer) oipServer(x exchange) error {
	// Triton's binary tensor extension is the one the scorer implements whole.
	return x.json(http.StatusOK, map[string]any{"name": ServerName, "version": "2", "extensions": []string{"binary_tensor_data"}})
}

// repositoryIndex is POST /v2/repository/index: every model served, with each
// version loaded (production's, then the canary's), its state and reason.
func (s *Scorer) repositoryIndex(x exchange) error {
	out := []wire.RepositoryModel{}
	for _, m := range s.Models() {
		reason := ""
		if m.LoadError != nil {
			reason = m.LoadError()
		}
		vs := m.Versions()
		if len(vs) == 0 {
			e := wire.RepositoryModel{Name: m.Name, State: "UNAVAILABLE", Reason: "no version loaded yet"}
			if m.Rules != nil {
				e.State, e.Reason = "READY", "no version loaded yet: the fallback rules answer"
			}
			if reason != "" {
				e.Reason += "; " + reason
			}
			out = append(out, e)
			continue
		}
		for _, v := range vs {
			out = append(out, wire.RepositoryModel{Name: m.Name, Version: v, State: "READY", Reason: reason})
		}
	}
	return x.json(http.StatusOK, out)
}

func (s *Scorer) oipModel(x exchange, name string) (*Served, error) {
	m, ok := s.Model(name)
	if !ok || name == "" {
		return nil, oipError(x, http.StatusNotFound, fmt.Sprintf("unknown model %q", clip(name, 80)))
	}
	return m, nil
}

// oipMetadata is GET /v2/models/{m}[/versions/{v}]: the versions served
// (production's, then the canary's), or the one asked for, and the tensors of
// production's session, or of that version's.
func (s *Scorer) oipMetadata(x exchange, model, version string) error {
	m, err := s.oipModel(x, model)
	if m == nil {
		return err
	}
	md := wire.OIPModelMetadata{Name: m.Name, Platform: "onnxruntime_onnx",
		Inputs:  []wire.OIPTensor{{Name: "input", Datatype: "FP32", Shape: []int64{-1, int64(m.Width())}}},
		Outputs: []wire.OIPTensor{{Name: "output", Datatype: "FP32", Shape: []int64{-1, 1}}}}
	var l *loader.Loaded
	if v := version; v != "" {
		if l, _ = servedVersion(m, v); l == nil {
			return oipError(x, http.StatusNotFound, noVersion(m, v))
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
			md.Inputs = append(md.Inputs, wire.OIPTensor{Name: t.Name, Datatype: artifact.ServableTypes[t.Type], Shape: t.Shape})
		}
		for _, t := range sig.Outs() {
			md.Outputs = append(md.Outputs, wire.OIPTensor{Name: t.Name, Datatype: artifact.ServableTypes[t.Type], Shape: t.Shape})
		}
		l.Release()
	}
	return x.json(http.StatusOK, md)
}

// oipModelReady is GET /v2/models/{m}[/versions/{v}]/ready: a model is ready
// when a session or its rules can answer, a version when it is loaded.
func (s *Scorer) oipModelReady(x exchange, model, version string) error {
	m, err := s.oipModel(x, model)
	if m == nil {
		return err
	}
	if v := version; v != "" {
		l, _ := servedVersion(m, v)
		if l == nil {
			return oipError(x, http.StatusNotFound, noVersion(m, v))
		}
		l.Release()
		return x.json(http.StatusOK, map[string]any{"name": m.Name, "version": v, "ready": true})
	}
	ready := m.Ready()
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	return x.json(status, map[string]any{"name": m.Name, "ready": ready})
}

// servedVersion finds version v of m (as a path spells it: a decimal number)
// in production's slot or the canary's, and returns its session, acquired (the
// caller releases it), with the arm that serves it; nil when neither holds it.
func servedVersion(m *Served, v string) (*loader.Loaded, string) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || strconv.Itoa(n) != v {
		return nil, ""
	}
	return m.Pin(n)
}

// noVersion says that m has no version v here, and which it has.
func noVersion(m *Served, v string) string { return scoring.NoVersion(m, v) }

// inferKeyed is POST /v2/models/{model}[/versions/{version}]/infer: the API
// key, then oipInfer.
func (s *Scorer) inferKeyed(x exchange, model, version string) error {
	if !s.keyOK(x) {
		s.Metrics().Refused(http.StatusUnauthorized, "unauthenticated")
		return oipError(x, http.StatusUnauthorized, missingKey)
	}
	return s.oipInfer(x, model, version)
}

// oipInfer answers an inference request for model. A version ("" for none)
// pins the request to that version's session, which answers it by itself (a
// micro-batch runs on whatever its slot holds when it runs) and under the arm
// that serves it, with no A/B draw; the rules still answer if it fails or runs
// out of budget, as for any request.
func (s *Scorer) oipInfer(x exchange, model, version string) error {
	m, err := s.oipModel(x, model)
	if m == nil {
		s.Refused("", http.StatusNotFound, scoring.ReasonOf(scoring.ErrUnknownModel))
		return err
	}
	// refuse answers an OIP error and counts it against m.
	refuse := func(status int, msg string) error {
		reason := scoring.ReasonOf(scoring.ErrInvalidInput)
		switch status {
		case http.StatusNotFound:
			reason = scoring.ReasonOf(scoring.ErrUnknownVersion)
		case http.StatusServiceUnavailable:
			reason = scoring.ReasonOf(scoring.ErrUnavailable)
		case http.StatusRequestEntityTooLarge:
			reason = "too_large"
		case http.StatusUnsupportedMediaType:
			reason = "unsupported_encoding"
		}
		s.Refused(m.Name, status, reason)
		return oipError(x, status, msg)
	}
	pinned := 0
	width := m.Width()
	sig, hasSig := m.Signature()
	if version != "" {
		l, _ := servedVersion(m, version)
		if l == nil {
			return refuse(http.StatusNotFound, noVersion(m, version))
		}
		pinned, width, sig, hasSig = l.Version, l.Signature().Features(), l.Signature(), true
		l.Release()
	}
	inputName := "input"
	if hasSig {
		inputName = sig.Input.Name
	}
	body, err := requestBody(x, s.MaxBodyBytes)
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			return refuse(re.status, re.msg)
		}
		return refuse(http.StatusBadRequest, err.Error())
	}
	var arrival *loader.Arrival
	if pinned == 0 { // a pinned request never joins a batch, so no batch waits for it
		arrival = s.Expect()
		defer arrival.Abandon()
	}
	// The binary tensor extension: the JSON header comes first, its length in
	// Inference-Header-Content-Length, and raw tensor bytes follow it.
	var tensorBytes []byte
	if hl := x.header(HeaderInferenceLength); hl != "" {
		n, err := strconv.Atoi(hl)
		if err != nil || n < 0 || n > len(body) {
			return refuse(http.StatusBadRequest, fmt.Sprintf("%s %q does not fit a %d-byte body", HeaderInferenceLength, clip(hl, 20), len(body)))
		}
		body, tensorBytes = body[:n], body[n:]
	}
	var req wire.OIPInferRequest
	if err := decodeOIPHeader(body, &req); err != nil {
		return refuse(http.StatusBadRequest, "malformed inference request: "+explainJSON(err))
	}
	if hasSig && !sig.Simple() {
		arrival.Abandon()
		return s.inferTensors(x, m, pinned, sig, &req, tensorBytes, refuse)
	}
	if width == 0 {
		return refuse(http.StatusServiceUnavailable, fmt.Sprintf("model %s has no verified version loaded yet and no fallback rules", m.Name))
	}
	if len(req.Inputs) != 1 {
		return refuse(http.StatusBadRequest, fmt.Sprintf("expected 1 input tensor %q, got %d", inputName, len(req.Inputs)))
	}
	in := req.Inputs[0]
	if in.Name != inputName {
		return refuse(http.StatusBadRequest, fmt.Sprintf("unexpected input %q: the model takes %q", clip(in.Name, 40), inputName))
	}
	if in.Datatype != "FP32" {
		return refuse(http.StatusBadRequest, fmt.Sprintf("input datatype %q: the model takes FP32", clip(in.Datatype, 20)))
	}
	if len(in.Shape) != 2 || in.Shape[1] != int64(width) || in.Shape[0] < 1 || in.Shape[0] > int64(s.MaxRows) {
		return refuse(http.StatusBadRequest, fmt.Sprintf("input shape %v: want [N,%d] with 1 ≤ N ≤ %d", in.Shape, width, s.MaxRows))
	}
	binaryOut := len(req.Outputs) == 0 && req.Parameters.BinaryDataOutput
	outputName := "output"
	if hasSig {
		outputName = sig.Output.Name
	}
	for _, o := range req.Outputs {
		if o.Name != outputName {
			return refuse(http.StatusBadRequest, fmt.Sprintf("unknown output %q: the model yields %q", clip(o.Name, 40), outputName))
		}
		binaryOut = binaryOut || o.Parameters.BinaryData
	}
	n := int(in.Shape[0])
	var flat []float32
	if size := in.Parameters.BinaryDataSize; size != nil {
		if tensorBytes == nil {
			return refuse(http.StatusBadRequest, "binary_data_size without the "+HeaderInferenceLength+" header")
		}
		if *size != int64(4*n*width) || int64(len(tensorBytes)) != *size {
			return refuse(http.StatusBadRequest, fmt.Sprintf("binary input has %d bytes (binary_data_size %d); shape [%d,%d] FP32 needs %d", len(tensorBytes), *size, n, width, 4*n*width))
		}
		// The rows go into a pooled buffer: nothing keeps them once the answer
		// is written (see scoring.Response).
		floats := floatPool.Get().(*[]float32)
		defer floatPool.Put(floats)
		if flat, err = decodeFP32(*floats, tensorBytes); err != nil {
			return refuse(http.StatusBadRequest, "input data: "+err.Error())
		}
		*floats = flat
	} else if flat, err = flattenFP32(in.Data, n*width); err != nil {
		return refuse(http.StatusBadRequest, "input data: "+err.Error())
	}
	budget := s.Budget
	if t := req.Parameters.Timeout; t != nil && *t != 0 {
		if *t < 0 || *t > maxBudget.Microseconds() {
			return refuse(http.StatusBadRequest, fmt.Sprintf("parameters.timeout %d: want microseconds from 1 to %d (0 or none: the scorer's %s)", *t, maxBudget.Microseconds(), s.Budget))
		}
		budget = time.Duration(*t) * time.Microsecond
	}
	out, err := s.Score(x.context(), scoring.Request{Model: m.Name, Version: pinned, Flat: flat, Rows: n, Key: req.Parameters.Key, Budget: budget,
		NoFallback: req.Parameters.Fallback != nil && !*req.Parameters.Fallback, Arrival: arrival})
	if err != nil {
		var e *scoring.Error
		if errors.As(err, &e) {
			if e.RetryAfter > 0 {
				x.setHeader("Retry-After", strconv.Itoa(e.RetryAfter))
			}
			return oipError(x, scoring.Status(e), e.Msg)
		}
		return err
	}
	resp := wire.OIPInferResponse{ModelName: m.Name, ID: req.ID,
		Parameters: wire.OIPResponseParameters{Arm: out.Arm, Reason: out.Reason, Source: out.Source, RequestID: out.RequestID},
		Outputs:    []wire.OIPOutputTensor{{Name: outputName, Shape: []int64{int64(n), int64(out.Outputs)}, Datatype: "FP32", Data: out.Scores}}}
	if out.Version > 0 {
		resp.ModelVersion = strconv.Itoa(out.Version)
	}
	if !binaryOut {
		return x.json(http.StatusOK, resp)
	}
	size := int64(4 * len(out.Scores))
	resp.Outputs[0].Data = nil
	resp.Outputs[0].Parameters = &wire.OIPTensorParameters{BinaryDataSize: &size}
	header, err := marshalOIPAnswerHeader(make([]byte, 0, 256+size), &resp)
	if err != nil {
		return err
	}
	x.setHeader(HeaderInferenceLength, strconv.Itoa(len(header)))
	return x.blob(http.StatusOK, "application/octet-stream", appendFP32(header, out.Scores))
}

// explainJSON says what encoding/json refused in the request's own terms: a
// field of the wrong type by its path, not by the Go type it would fill.
func explainJSON(err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	if te.Field == "" {
		return "the body must be a JSON object, not " + article(te.Value)
	}
	t := te.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var want string
	switch t.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "an integer"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Slice:
		want = "an array"
	case reflect.Struct:
		want = "an object"
	default:
		return err.Error()
	}
	return fmt.Sprintf("%s must be %s, not %s", te.Field, want, te.Value)
}

// article names a JSON value kind as encoding/json reports it ("array",
// "object", "string", "number", "bool") with its article.
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// HeaderInferenceLength carries the length of the JSON header in the OIP v2
// binary tensor extension.
const HeaderInferenceLength = "Inference-Header-Content-Length"

// decodeFP32 reads little-endian float32 values into dst's storage (a new slice
// when it is too small) and refuses non-finite ones.
func decodeFP32(dst []float32, b []byte) ([]float32, error) {
	n := len(b) / 4
	b = b[:4*n]
	if i := loader.FirstNonFinite(b); i >= 0 {
		return nil, fmt.Errorf("value %d is not a finite number", i)
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	out := dst[:n]
	if n == 0 {
		return out, nil
	}
	if nativeLittleEndian {
		// The wire is little-endian too: one copy.
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(b)), b)
		return out, nil
	}
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// floatPool keeps the buffers requests' rows are laid out flat in (/v1/score
// and binary tensors): at 256 rows each is 40 KB, which the allocator would
// otherwise take from the heap, zeroed, per request.
var floatPool = sync.Pool{New: func() any { return new([]float32) }}

var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// appendFP32 appends v to b as little-endian float32 values.
func appendFP32(b []byte, v []float32) []byte {
	b = slices.Grow(b, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// trustedGrow is how much of a declared Content-Length a body buffer reserves
// before the bytes arrive: a 256-row binary request fits.
const trustedGrow = 64 << 10

// flattenFP32 reads tensor data given flat or nested (up to maxTensorRank deep), and checks that
// it holds exactly want finite float32 values.
func flattenFP32(raw json.RawMessage, want int) ([]float32, error) {
	// Directly when it can (see jsonScan), sized for want values but no more
	// than the bytes could hold.
	s := jsonScan{b: raw}
	flat, ok := s.tensor(make([]float64, 0, min(max(want, 0), len(raw)/2+1)), true)
	if !ok || !s.end() {
		// encoding/json reads each level of nesting again: data nested deep
		// would cost it seconds.
		if d := arrayDepth(raw); d > maxTensorRank {
			return nil, fmt.Errorf("data is nested %d deep; a tensor here has at most %d dimensions", d, maxTensorRank)
		}
		var err error
		if flat, err = flattenJSON(raw); err != nil {
			return nil, err
		}
	}
	if want >= 0 && len(flat) != want {
		return nil, fmt.Errorf("%d values for the shape, which needs %d", len(flat), want)
	}
	out := make([]float32, len(flat))
	for i, v := range flat {
		f := float32(v)
		if math.IsInf(float64(f), 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("value %d (%g) is outside the float32 range", i, v)
		}
		out[i] = f
	}
	return out, nil
}

// arrayDepth is how deep the brackets in b nest at most.
func arrayDepth(b []byte) int {
	depth, most := 0, 0
	for _, c := range b {
		switch c {
		case '[':
			depth++
			most = max(most, depth)
		case ']':
			depth--
		}
	}
	return most
}

// flattenJSON is flattenFP32's reading with encoding/json, which gives the errors.
func flattenJSON(raw json.RawMessage) ([]float64, error) {
	var flat []float64
	if err := json.Unmarshal(raw, &flat); err != nil {
		var nested []json.RawMessage
		if err2 := json.Unmarshal(raw, &nested); err2 != nil {
			return nil, fmt.Errorf("want an array of numbers: %v", err)
		}
		flat = flat[:0]
		for _, part := range nested {
			sub, err := flattenFP32(part, -1)
			if err != nil {
				return nil, err
			}
			for _, v := range sub {
				flat = append(flat, float64(v))
			}
		}
	} else if bytes.Contains(raw, []byte("null")) {
		return nil, errors.New("null is not a number")
	}
	return flat, nil
}
