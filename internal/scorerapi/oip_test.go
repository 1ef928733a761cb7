package scorerapi_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/monitor/report"

	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestOIPv2HealthAndMetadata(t *testing.T) {
	url, _ := MustScorerAPI(t)
	var live, ready map[string]bool
	if getJSON(t, url+"/v2/health/live", &live) != 200 || !live["live"] {
		t.Fatalf("live: %v", live)
	}
	if getJSON(t, url+"/v2/health/ready", &ready) != 200 || !ready["ready"] {
		t.Fatalf("ready: %v", ready)
	}
	var server struct {
		Name       string   `json:"name"`
		Extensions []string `json:"extensions"`
	}
	if getJSON(t, url+"/v2", &server) != 200 || server.Name == "" || strings.Join(server.Extensions, ",") != "binary_tensor_data" {
		t.Fatalf("server metadata %+v", server)
	}
	var md wire.OIPModelMetadata
	if getJSON(t, url+"/v2/models/calling-score", &md) != 200 {
		t.Fatal("metadata status")
	}
	if md.Name != "calling-score" || md.Platform != "onnxruntime_onnx" || len(md.Versions) != 1 || md.Versions[0] != "1" ||
		len(md.Inputs) != 1 || md.Inputs[0].Name != "input" || md.Inputs[0].Datatype != "FP32" || md.Inputs[0].Shape[0] != -1 || md.Inputs[0].Shape[1] != 39 ||
		len(md.Outputs) != 1 || md.Outputs[0].Name != "output" || md.Outputs[0].Shape[1] != 1 {
		t.Fatalf("metadata %+v", md)
	}
	var mr map[string]any
	if getJSON(t, url+"/v2/models/calling-score/ready", &mr) != 200 || mr["ready"] != true {
		t.Fatalf("model ready: %v", mr)
	}
	var e map[string]string
	if getJSON(t, url+"/v2/models/churn", &e) != 404 || !strings.Contains(e["error"], "churn") {
		t.Fatalf("unknown model: %v", e)
	}
}

func TestOIPv2Infer(t *testing.T) {
	url, slot := MustScorerAPI(t)
	l := slot.Acquire()
	rows := [][]float32{testutil.Row(0.1), testutil.Row(0.9)}
	want, err := l.Run(append(append([]float32{}, rows[0]...), rows[1]...), 2)
	l.Release()
	if err != nil {
		t.Fatal(err)
	}
	flat, _ := json.Marshal(append(append([]float32{}, rows[0]...), rows[1]...))
	nested, _ := json.Marshal(rows)
	for name, data := range map[string]string{"flat": string(flat), "nested": string(nested)} {
		t.Run(name, func(t *testing.T) {
			body := `{"id":"42","inputs":[{"name":"input","shape":[2,39],"datatype":"FP32","data":` + data + `}],"outputs":[{"name":"output"}]}`
			resp, err := http.Post(url+"/v2/models/calling-score/infer", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r wire.OIPInferResponse
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, err)
			}
			if r.ID != "42" || r.ModelName != "calling-score" || r.ModelVersion != "1" || len(r.Outputs) != 1 {
				t.Fatalf("response %+v", r)
			}
			o := r.Outputs[0]
			if o.Name != "output" || o.Datatype != "FP32" || len(o.Shape) != 2 || o.Shape[0] != 2 || o.Shape[1] != 1 || len(fp32(o.Data)) != 2 {
				t.Fatalf("output %+v", o)
			}
			for i := range want {
				if math.Abs(float64(fp32(o.Data)[i]-want[i])) > 1e-6 {
					t.Fatalf("output %v, session says %v", o.Data, want)
				}
			}
		})
	}
}

func TestOIPv2InferErrors(t *testing.T) {
	url, _ := MustScorerAPI(t)
	row := nums(39, "0.5")
	tests := []struct {
		name, model, body string
		status            int
		want              string
	}{
		{"malformed", "calling-score", `{"inputs":`, 400, "malformed"},
		{"wrong name", "calling-score", `{"inputs":[{"name":"x","shape":[1,39],"datatype":"FP32","data":[` + row + `]}]}`, 400, `unexpected input "x"`},
		{"wrong type", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"INT64","data":[` + row + `]}]}`, 400, "FP32"},
		{"wrong shape", "calling-score", `{"inputs":[{"name":"input","shape":[1,38],"datatype":"FP32","data":[` + row + `]}]}`, 400, "want [N,39]"},
		{"data short", "calling-score", `{"inputs":[{"name":"input","shape":[2,39],"datatype":"FP32","data":[` + row + `]}]}`, 400, "39 values for the shape, which needs 78"},
		{"string data", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":["a"]}]}`, 400, "input data"},
		{"null data", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[null,` + nums(38, "0") + `]}]}`, 400, "null"},
		{"unknown output", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[` + row + `]}],"outputs":[{"name":"probs"}]}`, 400, `unknown output "probs"`},
		{"a string, not an object", "calling-score", `"x"`, 400, "the body must be a JSON object, not a string"},
		{"key not a string", "calling-score", `{"parameters":{"key":7},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[` + row + `]}]}`, 400, "parameters.key must be a string, not number"},
		{"binary_data_size not a number", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","parameters":{"binary_data_size":"156"}}]}`, 400, "inputs.parameters.binary_data_size must be an integer, not string"},
		{"shape of strings", "calling-score", `{"inputs":[{"name":"input","shape":["1",39],"datatype":"FP32","data":[` + row + `]}]}`, 400, "inputs.shape must be an integer, not string"},
		{"binary_data_size without the header", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","parameters":{"binary_data_size":156}}]}`, 400, "without the Inference-Header-Content-Length header"},
		{"nested too deep", "calling-score", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":` + strings.Repeat("[", 5000) + "1" + strings.Repeat("]", 5000) + `}]}`, 400, "nested 5000 deep"},
		{"timeout below 0", "calling-score", `{"parameters":{"timeout":-5},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[` + row + `]}]}`, 400, "parameters.timeout -5: want microseconds from 1 to 60000000"},
		{"timeout over a minute", "calling-score", `{"parameters":{"timeout":60000001},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[` + row + `]}]}`, 400, "parameters.timeout 60000001"},
		{"timeout not a number", "calling-score", `{"parameters":{"timeout":"5"},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":[` + row + `]}]}`, 400, "parameters.timeout must be an integer, not string"},
		{"unknown model", "churn", `{}`, 404, "unknown model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(url+"/v2/models/"+tt.model+"/infer", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e map[string]string
			if resp.StatusCode != tt.status || json.Unmarshal(b, &e) != nil || !strings.Contains(e["error"], tt.want) {
				t.Fatalf("%d %s; want %d with error containing %q", resp.StatusCode, b, tt.status, tt.want)
			}
		})
	}
}

// binaryInfer sends rows with the binary tensor extension, asking for a binary
// output too.
func binaryInfer(t *testing.T, url string, rows [][]float32, tamper func(header []byte, data []byte) ([]byte, []byte)) (*http.Response, []byte) {
	t.Helper()
	var flat []float32
	for _, r := range rows {
		flat = append(flat, r...)
	}
	data := make([]byte, 4*len(flat))
	for i, v := range flat {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	header := []byte(fmt.Sprintf(`{"inputs":[{"name":"input","shape":[%d,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`, len(rows), len(data)))
	if tamper != nil {
		header, data = tamper(header, data)
	}
	req, _ := http.NewRequest("POST", url+"/v2/models/calling-score/infer", bytes.NewReader(append(header, data...)))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(scorerapi.HeaderInferenceLength, strconv.Itoa(len(header)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

func TestOIPv2BinaryTensors(t *testing.T) {
	url, slot := MustScorerAPI(t)
	rows := [][]float32{testutil.Row(0.2), testutil.Row(0.7), testutil.Row(0.9)}
	l := slot.Acquire()
	want, _ := l.Run(append(append(append([]float32{}, rows[0]...), rows[1]...), rows[2]...), 3)
	l.Release()

	resp, body := binaryInfer(t, url, rows, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	n, err := strconv.Atoi(resp.Header.Get(scorerapi.HeaderInferenceLength))
	if err != nil || n > len(body) {
		t.Fatalf("response header length %q", resp.Header.Get(scorerapi.HeaderInferenceLength))
	}
	var r wire.OIPInferResponse
	if err := json.Unmarshal(body[:n], &r); err != nil {
		t.Fatal(err)
	}
	raw := body[n:]
	if p := r.Outputs[0].Parameters; p == nil || p.BinaryDataSize == nil || *p.BinaryDataSize != 12 || len(raw) != 12 {
		t.Fatalf("binary output: %+v, %d bytes", r.Outputs[0], len(raw))
	}
	for i := range want {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); math.Abs(float64(got-want[i])) > 1e-6 {
			t.Fatalf("row %d: %v, session says %v", i, got, want[i])
		}
	}

	// White space may follow the header; it moves the rows through every
	// alignment.
	for pad := range 4 {
		resp, body := binaryInfer(t, url, rows, func(h, d []byte) ([]byte, []byte) {
			return append(h, strings.Repeat(" ", pad)...), d
		})
		n, _ := strconv.Atoi(resp.Header.Get(scorerapi.HeaderInferenceLength))
		if resp.StatusCode != 200 || n == 0 || len(body) != n+12 {
			t.Fatalf("pad %d: %d %s", pad, resp.StatusCode, body)
		}
		for i := range want {
			if got := math.Float32frombits(binary.LittleEndian.Uint32(body[n+4*i:])); math.Abs(float64(got-want[i])) > 1e-6 {
				t.Fatalf("pad %d, row %d: %v, session says %v", pad, i, got, want[i])
			}
		}
		resp, body = binaryInfer(t, url, rows, func(h, d []byte) ([]byte, []byte) {
			binary.LittleEndian.PutUint32(d[4*(39+pad):], math.Float32bits(float32(math.Inf(1))))
			return append(h, strings.Repeat(" ", pad)...), d
		})
		if want := fmt.Sprintf("value %d is not a finite number", 39+pad); resp.StatusCode != 400 || !strings.Contains(string(body), want) {
			t.Fatalf("pad %d, infinite value: %d %s, want 400 with %q", pad, resp.StatusCode, body, want)
		}
	}

	// binary_data_output on the request asks for every output in binary when
	// it names none; without either, the answer is JSON.
	for _, tt := range []struct {
		from, to string
		binary   bool
	}{
		{`"outputs":[{"name":"output","parameters":{"binary_data":true}}]`, `"parameters":{"binary_data_output":true}`, true},
		{`"outputs":[{"name":"output","parameters":{"binary_data":true}}]`, `"parameters":{"unknown":[1,{"a":null}],"key":"k"}`, false},
	} {
		resp, body := binaryInfer(t, url, rows, func(h, d []byte) ([]byte, []byte) {
			return bytes.Replace(h, []byte(tt.from), []byte(tt.to), 1), d
		})
		hl := resp.Header.Get(scorerapi.HeaderInferenceLength)
		if resp.StatusCode != 200 || (hl != "") != tt.binary {
			t.Fatalf("%s: %d, header length %q, %s; want binary %v", tt.to, resp.StatusCode, hl, body, tt.binary)
		}
	}

	for name, tamper := range map[string]func([]byte, []byte) ([]byte, []byte){
		"short data": func(h, d []byte) ([]byte, []byte) { return h, d[:len(d)-4] },
		"NaN value": func(h, d []byte) ([]byte, []byte) {
			binary.LittleEndian.PutUint32(d[8:], math.Float32bits(float32(math.NaN())))
			return h, d
		},
	} {
		resp, body := binaryInfer(t, url, rows, tamper)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "error") {
			t.Errorf("%s: %d %s, want 400", name, resp.StatusCode, body)
		}
	}
}

// TestOIPv2Versions asks for versions by path: each answer comes from the
// version asked for (under the arm that serves it, whatever the A/B split and
// the key), and a version the scorer does not serve is a 404 that says which
// it serves, on every versioned route.
func TestOIPv2Versions(t *testing.T) {
	url, _, m1, m2 := twoArms(t, scorerapi.Routing{Traffic: 50, Mode: "ab", Blend: 1})
	row := testutil.Row(0.37)
	want := map[string]float32{}
	for v, m := range map[string]testutil.Model{"1": m1, "2": m2} {
		l := mustLoad(t, m, 0)
		out, err := l.Run(row, 1)
		l.Release()
		if err != nil {
			t.Fatal(err)
		}
		want[v] = out[0]
	}
	if want["1"] == want["2"] {
		t.Fatal("the two versions score the row alike; the test could not tell them apart")
	}
	data, _ := json.Marshal(row)
	for v, arm := range map[string]string{"1": scorerapi.ArmProduction, "2": scorerapi.ArmCanary} {
		for i := range 20 {
			body := fmt.Sprintf(`{"parameters":{"key":"user-%d"},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":%s}]}`, i, data)
			resp, err := http.Post(url+"/v2/models/calling-score/versions/"+v+"/infer", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var r wire.OIPInferResponse
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || len(r.Outputs) != 1 || len(fp32(r.Outputs[0].Data)) != 1 {
				t.Fatalf("version %s: %d %+v %v", v, resp.StatusCode, r, err)
			}
			if r.ModelVersion != v || r.Parameters.Arm != arm || r.Parameters.Source != scorerapi.SourceModel || fp32(r.Outputs[0].Data)[0] != want[v] {
				t.Fatalf("asked for version %s (key user-%d): answered %+v with %v; v%s scores the row %v", v, i, r, r.Outputs[0].Data, v, want[v])
			}
		}
	}

	var md wire.OIPModelMetadata
	if getJSON(t, url+"/v2/models/calling-score", &md) != 200 || strings.Join(md.Versions, ",") != "1,2" {
		t.Fatalf("metadata lists versions %v, want [1 2]", md.Versions)
	}
	md = wire.OIPModelMetadata{}
	if getJSON(t, url+"/v2/models/calling-score/versions/2", &md) != 200 || strings.Join(md.Versions, ",") != "2" || len(md.Inputs) != 1 || md.Inputs[0].Shape[1] != 39 {
		t.Fatalf("version 2 metadata %+v", md)
	}
	var ready map[string]any
	if getJSON(t, url+"/v2/models/calling-score/versions/2/ready", &ready) != 200 || ready["ready"] != true || ready["version"] != "2" {
		t.Fatalf("version 2 ready: %v", ready)
	}

	for _, v := range []string{"3", "0", "01", "abc", "-1"} {
		for _, route := range []string{"", "/ready", "/infer"} {
			path := url + "/v2/models/calling-score/versions/" + v + route
			var resp *http.Response
			var err error
			if route == "/infer" {
				resp, err = http.Post(path, "application/json", strings.NewReader(`{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":`+string(data)+`}]}`))
			} else {
				resp, err = http.Get(path)
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e map[string]string
			if resp.StatusCode != 404 || json.Unmarshal(b, &e) != nil || !strings.Contains(e["error"], strconv.Quote(v)) || !strings.Contains(e["error"], "it serves 1 and 2") {
				t.Fatalf("version %q%s: %d %s; want 404 naming it and the versions served", v, route, resp.StatusCode, b)
			}
		}
	}
}

// TestOIPv2TimeoutIsTheBudget sends Triton's timeout parameter: a budget of a
// microsecond runs out before any run ends, so the rules answer with reason
// timeout; 0 (Triton's "none") leaves the scorer's budget, and the model answers.
func TestOIPv2TimeoutIsTheBudget(t *testing.T) {
	url, _ := MustScorerAPI(t)
	data, _ := json.Marshal(testutil.Row(0.4))
	for timeout, want := range map[string]wire.OIPResponseParameters{
		"1": {Arm: scorerapi.ArmProduction, Source: scorerapi.SourceFallback, Reason: "timeout"},
		"0": {Arm: scorerapi.ArmProduction, Source: scorerapi.SourceModel},
	} {
		body := `{"parameters":{"timeout":` + timeout + `},"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":` + string(data) + `}]}`
		resp, err := http.Post(url+"/v2/models/calling-score/infer", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var r wire.OIPInferResponse
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || r.Parameters != want {
			t.Fatalf("timeout %s µs: %d %+v (%v); want parameters %+v", timeout, resp.StatusCode, r, err, want)
		}
	}
}

// OIP answers from the model carry a request_id in their parameters, as /v1/score
// answers do, so a Triton or KServe client can send outcomes to /v1/feedback.
func TestOIPv2AnswersCarryARequestIDForFeedback(t *testing.T) {
	sc := newScorer(mustServed(t))
	sc.Recorder = report.NewRecorder()
	sc.Join = report.NewJoin(sc.Recorder, 100)
	url := MustServe(t, sc.Handler())

	body := `{"inputs":[{"name":"input","shape":[2,39],"datatype":"FP32","data":` + mustJSON(t, append(testutil.Row(0.1), testutil.Row(0.9)...)) + `}]}`
	code, raw := post(t, url+"/v2/models/calling-score/infer", body)
	var r wire.OIPInferResponse
	if err := json.Unmarshal(raw, &r); err != nil || code != 200 || r.Parameters.RequestID == "" || r.Parameters.Source != scorerapi.SourceModel {
		t.Fatalf("JSON answer %d %s: want a request_id in its parameters", code, raw)
	}
	resp, bin := binaryInfer(t, url, [][]float32{testutil.Row(0.2), testutil.Row(0.5), testutil.Row(0.8)}, nil)
	n, _ := strconv.Atoi(resp.Header.Get(scorerapi.HeaderInferenceLength))
	var rb wire.OIPInferResponse
	if resp.StatusCode != 200 || n > len(bin) || json.Unmarshal(bin[:n], &rb) != nil || rb.Parameters.RequestID == "" || rb.Parameters.RequestID == r.Parameters.RequestID {
		t.Fatalf("binary answer %d %q: want a request_id of its own", resp.StatusCode, bin[:min(n, len(bin))])
	}
	for _, c := range []struct {
		id       string
		outcomes string
		want     int
	}{
		{r.Parameters.RequestID, "[1]", 400},   // two rows answered
		{r.Parameters.RequestID, "[0,2]", 400}, // outside the scores' [0,1]
		{r.Parameters.RequestID, "[0,1]", 204},
		{r.Parameters.RequestID, "[0,1]", 404}, // taken once
		{rb.Parameters.RequestID, "[1,0,1]", 204},
	} {
		if code, msg := post(t, url+"/v1/feedback", fmt.Sprintf(`{"request_id":%q,"outcomes":%s}`, c.id, c.outcomes)); code != c.want {
			t.Errorf("feedback %s for %s: %d %s, want %d", c.outcomes, c.id, code, msg, c.want)
		}
	}
	var outcomes int64
	for _, w := range sc.Recorder.Flush() {
		outcomes += w.Outcomes
	}
	if outcomes != 5 {
		t.Errorf("the monitor joined %d outcomes, want 5", outcomes)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A malformed feedback body is refused in the request's terms, not Go's.
func TestFeedbackSaysWhatIsWrongInTheRequestsTerms(t *testing.T) {
	sc := newScorer(mustServed(t))
	sc.Recorder = report.NewRecorder()
	sc.Join = report.NewJoin(sc.Recorder, 100)
	url := MustServe(t, sc.Handler())
	for body, want := range map[string]string{
		``:                                     "body is empty",
		`{"request_id":"x","outcome":"yes"}`:   "outcome must be a number, not string",
		`{"request_id":7,"outcome":1}`:         "request_id must be a string, not number",
		`{"request_id":"x","outcomes":{}}`:     "outcomes must be an array, not object",
		`[]`:                                   "the body must be a JSON object, not an array",
		`{"request_id":"x","outcome":1,"z":1}`: `unknown field "z"`,
		`{"request_id":"x",`:                   "unexpected end of input",
		`{"request_id":"x","outcome":1} {}`:    "trailing data",
		`{"request_id":"x","outcome":1,,}`:     "malformed JSON at byte",
	} {
		code, raw := post(t, url+"/v1/feedback", body)
		var eb wire.ErrorBody
		json.Unmarshal(raw, &eb)
		msg := eb.Error.Message
		if code != 400 || !strings.Contains(msg, want) || strings.Contains(msg, "Go ") || strings.Contains(msg, "scorerapi.") {
			t.Errorf("feedback %q: %d %s, want 400 saying %q", body, code, raw, want)
		}
	}
}

// fp32 reads an output's JSON data, decoded as []any, as float32 values.
func fp32(data any) []float32 {
	var out []float32
	switch d := data.(type) {
	case []float32:
		return d
	case []any:
		for _, v := range d {
			f, _ := v.(float64)
			out = append(out, float32(f))
		}
	}
	return out
}
