package scorerapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/wire"
)

func FuzzScoreRequest(f *testing.F) {
	row := strings.TrimSuffix(strings.Repeat("0.5,", 39), ",")
	for _, s := range []string{`{"features":[` + row + `]}`, `{"rows":[[` + row + `],[1,"x"]]}`, `{"features":[null]}`, `{"features":[1e999]}`, `{`, ``, `{"model":"m","key":"k","budget_ms":5,"features":[1]}`} {
		f.Add([]byte(s))
	}
	for _, s := range scoreBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req wire.ScoreRequest
		err := decodeStrict(data, &req)
		// Whatever the direct reader reads, encoding/json reads alike.
		var direct wire.ScoreRequest
		if readScoreRequest(data, &direct) && (err != nil || !reflect.DeepEqual(direct, req)) {
			t.Fatalf("%q: read %+v, encoding/json reads %+v (%v)", data, direct, req, err)
		}
		if err != nil {
			if msg := explainScoreError(data, err); msg == "" {
				t.Fatal("a refused request without a message")
			}
			return
		}
		firstBadFeature(data)
		for _, v := range req.Features {
			if math.IsNaN(v) {
				t.Fatal("JSON decoded a NaN")
			}
		}
	})
}

func FuzzOIPData(f *testing.F) {
	for _, s := range []string{`[1,2,3]`, `[[1,2],[3,4]]`, `[[[1]],[[2]]]`, `[null]`, `"x"`, `[1e39]`, `[]`, `[[]]`, `[[1],[]]`, `[1,[2]]`, `[[1],2]`, ` [ [ 0.5 , -1e-3 ] ] `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever the direct reader reads, encoding/json reads alike.
		sc := jsonScan{b: data}
		if direct, ok := sc.tensor(nil, true); ok && sc.end() {
			want, err := flattenJSON(data)
			if err != nil || len(direct) != len(want) {
				t.Fatalf("%q: read %v, encoding/json reads %v (%v)", data, direct, want, err)
			}
			for i := range want {
				if float32(direct[i]) != float32(want[i]) {
					t.Fatalf("%q: value %d read as %v, encoding/json reads %v", data, i, direct[i], want[i])
				}
			}
		}
		if !json.Valid(data) {
			return
		}
		out, err := flattenFP32(data, -1)
		if err != nil {
			return
		}
		for _, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("accepted a non-finite value from %s", data)
			}
		}
	})
}

// FuzzFP32Binary checks the binary tensor decoder against its definition: the
// little-endian float32s of the body, refused at the first one that is not finite.
func FuzzFP32Binary(f *testing.F) {
	for _, s := range [][]byte{{0, 0, 128, 63}, {0, 0, 128, 127}, {0, 0, 192, 127, 1, 2}, {}, {1, 2, 3}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := decodeFP32(nil, data)
		n := len(data) / 4
		bad := -1
		for i := 0; i < n; i++ {
			v := math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				bad = i
				break
			}
			if err == nil && math.Float32bits(out[i]) != math.Float32bits(v) {
				t.Fatalf("value %d decoded as %v, want %v", i, out[i], v)
			}
		}
		switch {
		case bad >= 0 && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("value %d ", bad))):
			t.Fatalf("value %d is not finite; err = %v", bad, err)
		case bad < 0 && (err != nil || len(out) != n):
			t.Fatalf("all finite, got %d values, err %v", len(out), err)
		}
	})
}

// scoreBodies are /v1/score bodies as clients send them, which the direct reader
// must read.
var scoreBodies = []string{
	`{"features":[0.5,1,-2.25e-3,0,1E+2,-0.0]}`,
	`{"model":"calling-score","key":"user-42","budget_ms":20,"rows":[[0.1,0.2],[0.3,0.4],[]]}`,
	"{\n  \"features\": [ 0.5 , 0.25 ],\n  \"budget_ms\": 7.5\n}\n",
	`{"rows":[]}`,
	`{"features":[]}`,
}

// TestScoreBodiesTakeTheDirectReader checks that the bodies clients send are
// read without encoding/json, and read as encoding/json reads them; and that
// what the reader must not read goes to encoding/json.
func TestScoreBodiesTakeTheDirectReader(t *testing.T) {
	checkDirect(t, readScoreRequest, func(b []byte, r *wire.ScoreRequest) error { return decodeStrict(b, r) }, scoreBodies, []string{
		`{"features":[null]}`, `{"features":[1e999]}`, `{"features":[01]}`, `{"features":[1.]}`, `{"features":[.5]}`, `{"features":[1e]}`,
		`{"features":[+1]}`, `{"features":[NaN]}`, `{"features":[Infinity]}`, `{"features":[0x10]}`, `{"features":["1"]}`, `{"Features":[1]}`, `{"extra":1}`,
		`{"features":[1]} {}`, `{"features":[1],"features":[2]}`, `{"model":"caf\u00e9"}`, `{"rows":[[1],null]}`, `{"budget_ms":null}`})
}

// checkDirect holds a direct reader to encoding/json: it must read each of
// read as decode does, and leave each of leave to encoding/json, which may
// read it otherwise or refuse it.
func checkDirect[T any](t *testing.T, direct func([]byte, *T) bool, decode func([]byte, *T) error, read, leave []string) {
	t.Helper()
	for _, b := range read {
		var got, want T
		if !direct([]byte(b), &got) {
			t.Errorf("left to encoding/json: %s", b)
			continue
		}
		if err := decode([]byte(b), &want); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: read %+v, encoding/json %+v (%v)", b, got, want, err)
		}
	}
	for _, b := range leave {
		var r T
		if direct([]byte(b), &r) {
			t.Errorf("read %s directly", b)
		}
	}
}

// clientHeaders are inference request headers as clients send them: the bench's,
// Triton's Python client's (binary in and out, spaced), KServe's with an id and
// a key, one asking for every output in binary, and one with its data in JSON.
var clientHeaders = []string{
	`{"inputs":[{"name":"input","shape":[256,39],"datatype":"FP32","parameters":{"binary_data_size":39936}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`,
	`{"inputs": [{"name": "input", "shape": [2, 39], "datatype": "FP32", "parameters": {"binary_data_size": 312}}], "outputs": [{"name": "output", "parameters": {"binary_data": true}}]}`,
	"{\n  \"id\": \"req-7\",\n  \"parameters\": {\"key\": \"user-42\"},\n  \"inputs\": [{\"name\": \"input\", \"shape\": [1, 39], \"datatype\": \"FP32\", \"parameters\": {\"binary_data_size\": 156}}]\n}\n",
	`{"parameters":{"binary_data_output":true},"inputs":[{"name":"input","shape":[3,39],"datatype":"FP32","parameters":{"binary_data_size":468}}]}`,
	`{"parameters":{"timeout":20000,"binary_data_output":true},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","parameters":{"binary_data_size":156}}]}`,
	`{"id":"42","inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[[0.5,1,2],[3, 4e-2 ,5]]}],"outputs":[{"name":"output"}]}`,
}

// TestClientHeadersTakeTheDirectReader checks that the headers clients send are
// read without encoding/json, and read as encoding/json reads them.
func TestClientHeadersTakeTheDirectReader(t *testing.T) {
	checkDirect(t, readOIPHeader, func(b []byte, r *wire.OIPInferRequest) error { return json.Unmarshal(b, r) }, clientHeaders, []string{
		`{"Inputs":[]}`, `{"id":"a\"b"}`, `{"id":null}`, `{"inputs":[{"shape":[1.0]}]}`, `{"inputs":[{"shape":[1e2]}]}`,
		`{"inputs":[{"data":[1,null]}]}`, `{"inputs":[{"data":[1,[2]]}]}`, `{"inputs":[{"data":"x"}]}`,
		`{"inputs":[{"data":` + strings.Repeat("[", maxTensorRank+1) + "1" + strings.Repeat("]", maxTensorRank+1) + `}]}`,
		`{"id":"a","id":"b"}`, `{"parameters":{"priority":1}}`, `{"inputs":[]} x`, `{"inputs":[{"shape":[01]}]}`, "{\"id\":\"caf\u00e9\"}"})
}

// FuzzOIPHeader holds the direct header reader to encoding/json: whatever it
// reads, encoding/json must accept and read alike.
func FuzzOIPHeader(f *testing.F) {
	for _, h := range clientHeaders {
		f.Add([]byte(h))
	}
	for _, h := range []string{`{}`, `{"inputs":[]}`, `{"inputs":[{"shape":[-0,-1]}]}`, `{"outputs":[{"name":"x","parameters":{}}]}`, `{"id":""}`, `[]`, `{"inputs":[{"shape":[999999999999999999]}]}`} {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got wire.OIPInferRequest
		if !readOIPHeader(data, &got) {
			return
		}
		var want wire.OIPInferRequest
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("read %q, which encoding/json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: read %+v, encoding/json reads %+v", data, got, want)
		}
	})
}

// FuzzOIPAnswer holds the direct answer writer to json.Marshal, for binary
// answers and for answers with their data in the JSON (data holds float32
// bits, so NaNs, infinities and subnormals come up).
func FuzzOIPAnswer(f *testing.F) {
	f.Add("calling-score", "3", "", "champion", "", "model", "d7ddc33e4e000000", int64(256), false, []byte(nil))
	f.Add("calling-score", "", "req-<7>", "challenger", "timeout", "fallback", "", int64(1), true, []byte(nil))
	f.Add("m\u00e9", "1", "a\"b", "champion", "", "model", "<r>", int64(-1), false, []byte(nil))
	f.Add("calling-score", "1", "r", "champion", "", "model", "1", int64(2), false, float32Bytes(0.8507455, 1e-7))
	f.Add("calling-score", "1", "", "champion", "", "model", "", int64(1), false, float32Bytes(float32(math.NaN())))
	f.Fuzz(func(t *testing.T, model, version, id, arm, reason, source, requestID string, rows int64, nilShape bool, data []byte) {
		resp := wire.OIPInferResponse{ModelName: model, ModelVersion: version, ID: id,
			Parameters: wire.OIPResponseParameters{Arm: arm, Reason: reason, Source: source, RequestID: requestID},
			Outputs:    []wire.OIPOutputTensor{{Name: "output", Shape: []int64{rows, 1}, Datatype: "FP32"}}}
		if data == nil {
			size := 4 * rows
			resp.Outputs[0].Parameters = &wire.OIPTensorParameters{BinaryDataSize: &size}
		} else {
			resp.Outputs[0].Data = float32sOf(data)
		}
		if nilShape {
			resp.Outputs[0].Shape = nil
		}
		got, ok := appendOIPAnswer([]byte("x"), &resp)
		checkWritten(t, got, ok, resp, plain(model) && plain(version) && plain(id) && plain(arm) && plain(reason) && plain(source) && plain(requestID))
	})
}

// FuzzScoreResponse holds the direct writer of /v1/score answers to
// json.Marshal, and AppendJSON to json.Encoder.
func FuzzScoreResponse(f *testing.F) {
	f.Add("calling-score", "model", "champion", "", "d7ddc33e4e000000", 3, true, float32Bytes(0.8507455))
	f.Add("calling-score", "fallback", "challenger", "timeout", "", 0, false, float32Bytes(0.25, 1e-7, 1e21, -0.0, 3e-45))
	f.Add("m<é>", "model", "champion", "", "", 1, true, float32Bytes(float32(math.Inf(1))))
	f.Add("calling-score", "model", "champion", "", "", 1, false, []byte{})
	f.Fuzz(func(t *testing.T, model, source, arm, reason, requestID string, version int, single bool, data []byte) {
		resp := wire.ScoreResponse{Model: model, Source: source, Arm: arm, Reason: reason, RequestID: requestID, Version: version}
		if scores := float32sOf(data); single && len(scores) > 0 {
			resp.Score = &scores[0]
		} else {
			resp.Scores = scores
		}
		got, ok := appendScoreResponse([]byte("x"), &resp)
		checkWritten(t, got, ok, resp, plain(model) && plain(source) && plain(arm) && plain(reason) && plain(requestID))

		var enc bytes.Buffer
		encErr := json.NewEncoder(&enc).Encode(resp)
		out, err := AppendJSON([]byte("x"), resp)
		if (err != nil) != (encErr != nil) || err == nil && !bytes.Equal(out[1:], enc.Bytes()) || err != nil && string(out) != "x" {
			t.Fatalf("AppendJSON gave %q (%v), json.Encoder %q (%v)", out, err, enc.Bytes(), encErr)
		}
	})
}

// checkWritten holds what a direct writer appended to "x" (got; ok whether it
// wrote) to json.Marshal's v: the same bytes when it wrote; nothing when it
// gave up, which it may do only when a string is not plain or a number is not
// finite (json.Marshal fails on those).
func checkWritten(t *testing.T, got []byte, ok bool, v any, plainStrings bool) {
	t.Helper()
	want, err := json.Marshal(v)
	if !ok {
		if string(got) != "x" {
			t.Fatalf("appended %q and gave up", got)
		}
		if plainStrings && err == nil {
			t.Fatalf("gave up on plain strings and finite numbers: %+v", v)
		}
		return
	}
	if err != nil {
		t.Fatalf("wrote %s; json.Marshal fails: %v", got[1:], err)
	}
	if !bytes.Equal(got[1:], want) {
		t.Fatalf("wrote\n%s\njson.Marshal writes\n%s", got[1:], want)
	}
}

// float32sOf reads b as little-endian float32 bits (a partial last value is
// dropped); nil for nil.
func float32sOf(b []byte) []float32 {
	if b == nil {
		return nil
	}
	v := make([]float32, 0, len(b)/4)
	for ; len(b) >= 4; b = b[4:] {
		v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(b)))
	}
	return v
}

func float32Bytes(v ...float32) []byte { return appendFP32(nil, v) }

// TestAppendJSONWritesWhatEncoderWrites covers the values AppendJSON does not
// write itself: nil pointers, maps, and an answer with a NaN (an error, and
// nothing appended).
func TestAppendJSONWritesWhatEncoderWrites(t *testing.T) {
	nan := float32(math.NaN())
	for _, v := range []any{(*wire.ScoreResponse)(nil), (*wire.OIPInferResponse)(nil), map[string]string{"error": "<bad>"}, nil, wire.ScoreResponse{Model: "m", Score: &nan}} {
		var enc bytes.Buffer
		encErr := json.NewEncoder(&enc).Encode(v)
		got, err := AppendJSON([]byte("x"), v)
		if (err != nil) != (encErr != nil) || err == nil && string(got[1:]) != enc.String() || err != nil && string(got) != "x" {
			t.Fatalf("%#v: AppendJSON gave %q (%v), json.Encoder %q (%v)", v, got, err, enc.String(), encErr)
		}
	}
}

// TestFloat32sWriteAsEncodingJSON holds appendFloat32 to encoding/json over
// random float32 bit patterns, the exponent cut-offs and the extremes.
func TestFloat32sWriteAsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	values := []float32{0, float32(math.Copysign(0, -1)), 1e-6, math.Nextafter32(1e-6, 0), 1e21, math.Nextafter32(1e21, 0), -1e21,
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1, 0.1, 0.8507455, 1e-7, 1e-10, 1e-45}
	for range 300000 {
		values = append(values, math.Float32frombits(rng.Uint32()), rng.Float32())
	}
	for _, f := range values {
		want, err := json.Marshal(f)
		got, ok := appendFloat32(nil, f)
		if ok != (err == nil) || ok && string(got) != string(want) {
			t.Fatalf("%g (bits %#x): wrote %q (%v), json.Marshal %q (%v)", f, math.Float32bits(f), got, ok, want, err)
		}
	}
}

// TestNumbersReadAsStrconvReadsThem holds jsonScan.number, whose short decimals
// skip strconv, to strconv.ParseFloat bit for bit over random values written
// the ways clients write them.
func TestNumbersReadAsStrconvReadsThem(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200000 {
		v := rng.Float64() * math.Pow(10, float64(rng.IntN(12)-6))
		if rng.IntN(2) == 0 {
			v = -v
		}
		for _, text := range []string{
			strconv.FormatFloat(v, 'f', -1, 64),
			strconv.FormatFloat(v, 'f', rng.IntN(18), 64),
			strconv.FormatFloat(float64(float32(v)), 'f', -1, 32),
			strconv.FormatFloat(v, 'e', rng.IntN(17), 64),
		} {
			want, err := strconv.ParseFloat(text, 64)
			s := jsonScan{b: []byte(text)}
			got, ok := s.number()
			if err != nil || !ok || math.Float64bits(got) != math.Float64bits(want) || s.i != len(text) {
				t.Fatalf("%s: read %v (%v, at %d), strconv reads %v (%v)", text, got, ok, s.i, want, err)
			}
		}
	}
}
