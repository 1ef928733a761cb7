package scorerapi

import (
	gojson "github.com/goccy/go-json"

	"encoding/json"
	"strconv"

	"github.com/modelops/modelops/internal/wire"
)

// An inference request's JSON header costs encoding/json about as much as the
// rest of a 256-row binary request's handling together, and its answer's header
// a third of that: reflection, a validity pass before the decoding one, and an
// allocation per field. These two read and write the shape that clients send
// and the scorer answers directly, and leave everything else to encoding/json.
// Neither decides anything: a header the reader does not know is decoded by
// encoding/json, which gives every error, and FuzzOIPHeader and FuzzOIPAnswer
// hold them to encoding/json's results. (The answer writer serves JSON answers
// too: see AppendJSON.)

// readOIPHeader decodes b into req when b is an inference request of the plain
// shape: the fields of wire.OIPInferRequest spelt as their tags spell them, each at
// most once; strings of printable ASCII without escapes; integers without a
// fraction or exponent; data as flattenFP32 takes it; no nulls and no
// parameters the scorer does not read. It reports false for anything else,
// leaving req in an unspecified state.
func readOIPHeader(b []byte, req *wire.OIPInferRequest) bool {
	s := jsonScan{b: b}
	var seen uint8
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			v, ok := s.str()
			req.ID = string(v)
			return once(&seen, 1) && ok
		case "parameters":
			var seenP uint8
			return once(&seen, 2) && s.object(func(key []byte) bool {
				switch string(key) {
				case "key":
					v, ok := s.str()
					req.Parameters.Key = string(v)
					return once(&seenP, 1) && ok
				case "binary_data_output":
					v, ok := s.bool()
					req.Parameters.BinaryDataOutput = v
					return once(&seenP, 2) && ok
				case "timeout":
					v, ok := s.int()
					req.Parameters.Timeout = &v
					return once(&seenP, 4) && ok
				}
				return false
			})
		case "inputs":
			req.Inputs = make([]wire.OIPInputTensor, 0, 1)
			return once(&seen, 4) && s.array(func() bool {
				req.Inputs = append(req.Inputs, wire.OIPInputTensor{})
				return s.inputTensor(&req.Inputs[len(req.Inputs)-1])
			})
		case "outputs":
			req.Outputs = make([]wire.OIPRequestedOutput, 0, 1)
			return once(&seen, 8) && s.array(func() bool {
				req.Outputs = append(req.Outputs, wire.OIPRequestedOutput{})
				o := &req.Outputs[len(req.Outputs)-1]
				var seenO uint8
				return s.object(func(key []byte) bool {
					switch string(key) {
					case "name":
						v, ok := s.str()
						o.Name = tensorName(v)
						return once(&seenO, 1) && ok
					case "parameters":
						return once(&seenO, 2) && s.tensorParameters(&o.Parameters)
					}
					return false
				})
			})
		}
		return false
	})
	return ok && s.end()
}

func (s *jsonScan) inputTensor(t *wire.OIPInputTensor) bool {
	var seen uint8
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "name":
			v, ok := s.str()
			t.Name = tensorName(v)
			return once(&seen, 1) && ok
		case "shape":
			t.Shape = make([]int64, 0, 2)
			return once(&seen, 2) && s.array(func() bool {
				v, ok := s.int()
				t.Shape = append(t.Shape, v)
				return ok
			})
		case "datatype":
			v, ok := s.str()
			t.Datatype = "FP32"
			if string(v) != "FP32" {
				t.Datatype = string(v)
			}
			return once(&seen, 4) && ok
		case "parameters":
			return once(&seen, 8) && s.tensorParameters(&t.Parameters)
		case "data":
			s.space()
			start := s.i
			_, ok := s.tensor(nil, false)
			t.Data = s.b[start:s.i]
			return once(&seen, 16) && ok
		}
		return false
	})
}

func (s *jsonScan) tensorParameters(p *wire.OIPTensorParameters) bool {
	var seen uint8
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "binary_data_size":
			v, ok := s.int()
			p.BinaryDataSize = &v
			return once(&seen, 1) && ok
		case "binary_data":
			v, ok := s.bool()
			p.BinaryData = v
			return once(&seen, 2) && ok
		}
		return false
	})
}

// tensorName spares the usual names an allocation.
func tensorName(v []byte) string {
	switch string(v) {
	case "input":
		return "input"
	case "output":
		return "output"
	}
	return string(v)
}

// appendOIPAnswer appends an inference answer, byte for byte what json.Marshal
// makes of resp, when resp is the scorer's usual answer: one output, its data
// either in the JSON (finite numbers) or binary after it, and strings that need
// no escaping. It reports false otherwise, appending nothing.
func appendOIPAnswer(dst []byte, resp *wire.OIPInferResponse) ([]byte, bool) {
	if len(resp.Outputs) != 1 {
		return dst, false
	}
	o := &resp.Outputs[0]
	p := resp.Parameters
	if o.Parameters != nil && (o.Parameters.BinaryDataSize == nil || o.Parameters.BinaryData) ||
		!plain(resp.ModelName) || !plain(resp.ModelVersion) || !plain(resp.ID) || !plain(p.Arm) || !plain(p.Reason) || !plain(p.Source) || !plain(p.RequestID) || !plain(o.Name) || !plain(o.Datatype) {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, `{"model_name":"`...)
	dst = append(dst, resp.ModelName...)
	if resp.ModelVersion != "" {
		dst = append(dst, `","model_version":"`...)
		dst = append(dst, resp.ModelVersion...)
	}
	if resp.ID != "" {
		dst = append(dst, `","id":"`...)
		dst = append(dst, resp.ID...)
	}
	dst = append(dst, `","parameters":{"arm":"`...)
	dst = append(dst, p.Arm...)
	if p.Reason != "" {
		dst = append(dst, `","reason":"`...)
		dst = append(dst, p.Reason...)
	}
	dst = append(dst, `","source":"`...)
	dst = append(dst, p.Source...)
	if p.RequestID != "" {
		dst = append(dst, `","request_id":"`...)
		dst = append(dst, p.RequestID...)
	}
	dst = append(dst, `"},"outputs":[{"name":"`...)
	dst = append(dst, o.Name...)
	dst = append(dst, `","shape":`...)
	if o.Shape == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, d := range o.Shape {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, d, 10)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"datatype":"`...)
	dst = append(dst, o.Datatype...)
	dst = append(dst, '"')
	if o.Parameters != nil {
		dst = append(dst, `,"parameters":{"binary_data_size":`...)
		dst = strconv.AppendInt(dst, *o.Parameters.BinaryDataSize, 10)
		dst = append(dst, '}')
	}
	if o.Data != nil {
		data, isFP32 := o.Data.([]float32)
		if !isFP32 {
			return dst[:start], false
		}
		dst = append(dst, `,"data":`...)
		var ok bool
		if dst, ok = appendFloat32s(dst, data); !ok {
			return dst[:start], false
		}
	}
	return append(dst, "}]}"...), true
}

// plain reports whether json.Marshal writes s as it is: printable ASCII other
// than the quote, the backslash and the characters it escapes for HTML.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return false
		}
	}
	return true
}

var plainByte = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// decodeOIPHeader decodes an inference request's JSON header: directly when it
// has the plain shape, with encoding/json otherwise.
func decodeOIPHeader(b []byte, req *wire.OIPInferRequest) error {
	if libraryJSON.Load() {
		if gojson.Unmarshal(b, req) == nil {
			return nil
		}
	} else if readOIPHeader(b, req) {
		return nil
	}
	*req = wire.OIPInferRequest{}
	return json.Unmarshal(b, req)
}

// marshalOIPAnswerHeader encodes a binary answer's JSON header into dst.
func marshalOIPAnswerHeader(dst []byte, resp *wire.OIPInferResponse) ([]byte, error) {
	if libraryJSON.Load() {
		return libraryAppend(dst, resp)
	}
	if out, ok := appendOIPAnswer(dst, resp); ok {
		return out, nil
	}
	b, err := json.Marshal(resp)
	return append(dst, b...), err
}
