package scorerapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scoring"
	"github.com/modelops/modelops/internal/wire"
)

// inferTensors answers an inference request for a model of any servable
// signature (several named inputs of FP32, FP64, INT32, INT64 or BOOL, several
// outputs), each input as JSON data or binary, each output with its true shape
// and datatype. Models of one FP32 input and output take the rows path in
// oipInfer instead, which the rules can answer too.
func (s *Scorer) inferTensors(x exchange, m *Served, pinned int, sig artifact.Signature, req *wire.OIPInferRequest, tensorBytes []byte, refuse func(int, string) error) error {
	if len(req.Inputs) == 0 {
		return refuse(http.StatusBadRequest, fmt.Sprintf("no input tensors; the model takes %s", sig))
	}
	rows := int64(-1)
	inputs := make([]loader.Tensor, 0, len(req.Inputs))
	offset := int64(0)
	for _, in := range req.Inputs {
		if len(in.Shape) == 0 || in.Shape[0] < 1 || in.Shape[0] > int64(s.MaxRows) {
			return refuse(http.StatusBadRequest, fmt.Sprintf("input %q shape %v: want [N,…] with 1 ≤ N ≤ %d", clip(in.Name, 40), in.Shape, s.MaxRows))
		}
		if rows >= 0 && in.Shape[0] != rows {
			return refuse(http.StatusBadRequest, fmt.Sprintf("input %q has %d rows, another %d: every input has the batch's rows", clip(in.Name, 40), in.Shape[0], rows))
		}
		rows = in.Shape[0]
		count := int64(1)
		for _, d := range in.Shape {
			if d < 1 || d > 1<<24 {
				return refuse(http.StatusBadRequest, fmt.Sprintf("input %q shape %v: every dimension from 1 to %d", clip(in.Name, 40), in.Shape, 1<<24))
			}
			count *= d
			if count > 1<<26 {
				return refuse(http.StatusBadRequest, fmt.Sprintf("input %q shape %v is too large", clip(in.Name, 40), in.Shape))
			}
		}
		t := loader.Tensor{Name: in.Name, Shape: in.Shape}
		var err error
		if size := in.Parameters.BinaryDataSize; size != nil {
			width := loader.DatatypeSize(in.Datatype)
			if width == 0 {
				return refuse(http.StatusBadRequest, fmt.Sprintf("input %q datatype %q: the scorer reads FP32, FP64, INT32, INT64 and BOOL", clip(in.Name, 40), clip(in.Datatype, 20)))
			}
			if *size != count*width || offset+*size > int64(len(tensorBytes)) {
				return refuse(http.StatusBadRequest, fmt.Sprintf("input %q: binary_data_size %d; shape %v %s needs %d, and %d bytes follow the header", clip(in.Name, 40), *size, in.Shape, in.Datatype, count*width, int64(len(tensorBytes))-offset))
			}
			t.Data, err = loader.DecodeLE(in.Datatype, tensorBytes[offset:offset+*size])
			offset += *size
		} else {
			t.Data, err = decodeJSONTensor(in.Datatype, in.Data, int(count))
		}
		if err != nil {
			return refuse(http.StatusBadRequest, fmt.Sprintf("input %q data: %v", clip(in.Name, 40), err))
		}
		inputs = append(inputs, t)
	}
	if offset != int64(len(tensorBytes)) {
		return refuse(http.StatusBadRequest, fmt.Sprintf("%d bytes of binary data follow the header; the inputs' binary_data_size take %d", len(tensorBytes), offset))
	}
	binaryAll := len(req.Outputs) == 0 && req.Parameters.BinaryDataOutput
	wanted := map[string]bool{}
	for _, o := range req.Outputs {
		if !slices.ContainsFunc(sig.Outs(), func(t artifact.Tensor) bool { return t.Name == o.Name }) {
			return refuse(http.StatusBadRequest, fmt.Sprintf("unknown output %q: the model yields %s", clip(o.Name, 40), sig))
		}
		wanted[o.Name] = o.Parameters.BinaryData
	}
	budget := s.Budget
	if t := req.Parameters.Timeout; t != nil && *t != 0 {
		if *t < 0 || *t > maxBudget.Microseconds() {
			return refuse(http.StatusBadRequest, fmt.Sprintf("parameters.timeout %d: want microseconds from 1 to %d (0 or none: the scorer's %s)", *t, maxBudget.Microseconds(), s.Budget))
		}
		budget = time.Duration(*t) * time.Microsecond
	}
	out, err := s.Score(x.context(), scoring.Request{Model: m.Name, Version: pinned, Rows: int(rows), Inputs: inputs, Key: req.Parameters.Key, Budget: budget,
		NoFallback: req.Parameters.Fallback != nil && !*req.Parameters.Fallback})
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
	resp := wire.OIPInferResponse{ModelName: m.Name, ID: req.ID, ModelVersion: strconv.Itoa(out.Version),
		Parameters: wire.OIPResponseParameters{Arm: out.Arm, Reason: out.Reason, Source: out.Source, RequestID: out.RequestID}}
	// Outputs in the order asked for, else the graph's.
	tensors := out.Tensors
	if len(req.Outputs) > 0 {
		tensors = nil
		for _, o := range req.Outputs {
			if i := slices.IndexFunc(out.Tensors, func(t loader.Tensor) bool { return t.Name == o.Name }); i >= 0 {
				tensors = append(tensors, out.Tensors[i])
			}
		}
	}
	var raw [][]byte
	for _, t := range tensors {
		bin := wanted[t.Name]
		o := wire.OIPOutputTensor{Name: t.Name, Shape: t.Shape, Datatype: artifact.ServableTypes[t.Type()], Data: t.Data}
		if bin || binaryAll {
			b := loader.EncodeLE(t.Data)
			size := int64(len(b))
			o.Data, o.Parameters = nil, &wire.OIPTensorParameters{BinaryDataSize: &size}
			raw = append(raw, b)
		}
		resp.Outputs = append(resp.Outputs, o)
	}
	if raw == nil {
		return x.json(http.StatusOK, resp)
	}
	header, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	x.setHeader(HeaderInferenceLength, strconv.Itoa(len(header)))
	return x.blob(http.StatusOK, "application/octet-stream", append(header, bytes.Join(raw, nil)...))
}

// decodeJSONTensor reads want values of datatype from JSON data, flat or
// nested (up to maxTensorRank deep), naming the first that does not fit.
func decodeJSONTensor(datatype string, raw json.RawMessage, want int) (any, error) {
	if datatype == "FP32" {
		return flattenFP32(raw, want)
	}
	if d := arrayDepth(raw); d > maxTensorRank {
		return nil, fmt.Errorf("data is nested %d deep; a tensor here has at most %d dimensions", d, maxTensorRank)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("want an array: %v", err)
	}
	var leaves []any
	var walk func(any)
	walk = func(v any) {
		if a, ok := v.([]any); ok {
			for _, e := range a {
				walk(e)
			}
			return
		}
		leaves = append(leaves, v)
	}
	walk(v)
	if len(leaves) != want {
		return nil, fmt.Errorf("%d values for the shape, which needs %d", len(leaves), want)
	}
	bad := func(i int, what string) error { return fmt.Errorf("value %d (%v) is not %s", i, leaves[i], what) }
	switch datatype {
	case "BOOL":
		out := make([]bool, want)
		for i, l := range leaves {
			b, ok := l.(bool)
			if !ok {
				return nil, bad(i, "true or false")
			}
			out[i] = b
		}
		return out, nil
	case "FP64":
		out := make([]float64, want)
		for i, l := range leaves {
			n, ok := l.(json.Number)
			f, err := n.Float64()
			if !ok || err != nil || math.IsInf(f, 0) {
				return nil, bad(i, "a finite number")
			}
			out[i] = f
		}
		return out, nil
	case "INT32", "INT64":
		bits := 64
		if datatype == "INT32" {
			bits = 32
		}
		ints := make([]int64, want)
		for i, l := range leaves {
			n, ok := l.(json.Number)
			v, err := strconv.ParseInt(string(n), 10, bits)
			if !ok || err != nil {
				return nil, bad(i, fmt.Sprintf("an integer of %d bits", bits))
			}
			ints[i] = v
		}
		if bits == 64 {
			return ints, nil
		}
		out := make([]int32, want)
		for i, v := range ints {
			out[i] = int32(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("datatype %q: the scorer reads FP32, FP64, INT32, INT64 and BOOL", datatype)
}
