package scorerapi_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/artifact"
	"github.com/modelops/modelops/internal/loader"
	"github.com/modelops/modelops/internal/scorerapi"
	"github.com/modelops/modelops/internal/testutil"
	"github.com/modelops/modelops/internal/wire"
)

// serveGraph serves the graph at path as model name, version 1, with card.
func serveGraph(t *testing.T, name, path string, card *artifact.Card) string {
	t.Helper()
	s, err := loader.Open(path, loader.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(name, nil, card); err != nil {
		t.Fatal(err)
	}
	if err := s.WarmUp(); err != nil {
		t.Fatal(err)
	}
	m := scorerapi.NewServed(name, nil)
	m.Production.Swap(loader.NewLoaded(s, 1, "d", card))
	t.Cleanup(m.Close)
	return MustServe(t, newScorer(m).Handler())
}

type inferAnswer struct {
	ModelVersion string `json:"model_version"`
	Parameters   struct {
		Source string `json:"source"`
	} `json:"parameters"`
	Outputs []struct {
		Name       string          `json:"name"`
		Datatype   string          `json:"datatype"`
		Shape      []int64         `json:"shape"`
		Data       json.RawMessage `json:"data"`
		Parameters *struct {
			BinaryDataSize int64 `json:"binary_data_size"`
		} `json:"parameters"`
	} `json:"outputs"`
}

func infer(t *testing.T, url, model, body string, header int) (int, inferAnswer, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v2/models/"+model+"/infer", strings.NewReader(body))
	if header > 0 {
		req.Header.Set(scorerapi.HeaderInferenceLength, strconv.Itoa(header))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a inferAnswer
	rest := b
	if hl := resp.Header.Get(scorerapi.HeaderInferenceLength); hl != "" {
		n, _ := strconv.Atoi(hl)
		rest = b[n:]
		b = b[:n]
	} else {
		rest = nil
	}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
	} else {
		t.Logf("status %d: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, a, rest
}

// A 3-class softmax answers 3 values per row, with shape [n,3], on OIP and
// /v1/score alike, and its probabilities keep the card's contract.
func TestSoftmaxAnswersEveryClass(t *testing.T) {
	url := serveGraph(t, "classes", testutil.SoftmaxModel(t), &artifact.Card{Output: artifact.ContractProbabilities})
	row := strings.TrimSuffix(strings.Repeat("0.5,", 10), ",")
	status, a, _ := infer(t, url, "classes", `{"inputs":[{"name":"input","shape":[2,10],"datatype":"FP32","data":[`+row+`,`+row+`]}]}`, 0)
	if status != 200 || len(a.Outputs) != 1 || a.Parameters.Source != "model" {
		t.Fatalf("status %d, %+v", status, a)
	}
	o := a.Outputs[0]
	var probs []float64
	json.Unmarshal(o.Data, &probs)
	if o.Name != "probabilities" || len(o.Shape) != 2 || o.Shape[0] != 2 || o.Shape[1] != 3 || len(probs) != 6 {
		t.Fatalf("output %s %v with %d values; want probabilities [2,3] with 6", o.Name, o.Shape, len(probs))
	}
	if sum := probs[0] + probs[1] + probs[2]; math.Abs(sum-1) > 1e-5 {
		t.Fatalf("row 0 sums to %v", sum)
	}
	code, body := post(t, url+"/v1/score", `{"model":"classes","features":[`+row+`]}`)
	var r wire.ScoreResponse
	json.Unmarshal(body, &r)
	if code != 200 || r.Score != nil || len(r.Scores) != 3 || len(r.Shape) != 2 || r.Shape[1] != 3 {
		t.Fatalf("/v1/score: %d %s; want 3 scores of shape [1,3]", code, body)
	}
}

// A model of five inputs (FP32, INT64, FP64, INT32, BOOL) and three outputs is
// served through OIP v2 with JSON and binary tensors, inputs by name in any
// order, outputs with their true shapes and datatypes.
func TestAnyServableSignature(t *testing.T) {
	url := serveGraph(t, "mixed", testutil.MixedModel(t), nil)
	var md wire.OIPModelMetadata
	if getJSON(t, url+"/v2/models/mixed", &md) != 200 || len(md.Inputs) != 5 || len(md.Outputs) != 3 || md.Inputs[1].Datatype != "INT64" || md.Outputs[2].Datatype != "INT64" {
		t.Fatalf("metadata %+v", md)
	}
	body := `{"inputs":[
		{"name":"flag","shape":[2,1],"datatype":"BOOL","data":[true,false]},
		{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]},
		{"name":"n","shape":[2,1],"datatype":"INT64","data":[10,9007199254740993]},
		{"name":"w","shape":[2,1],"datatype":"FP64","data":[0.5,0.25]},
		{"name":"m","shape":[2,1],"datatype":"INT32","data":[-1,2]}]}`
	status, a, _ := infer(t, url, "mixed", body, 0)
	if status != 200 || len(a.Outputs) != 3 {
		t.Fatalf("status %d, %+v", status, a)
	}
	byName := map[string]int{}
	for i, o := range a.Outputs {
		byName[o.Name] = i
	}
	twice, sum, next := a.Outputs[byName["twice"]], a.Outputs[byName["sum"]], a.Outputs[byName["next"]]
	if twice.Datatype != "FP32" || len(twice.Shape) != 2 || twice.Shape[1] != 3 || string(twice.Data) != "[2,4,6,8,10,12]" {
		t.Fatalf("twice %+v %s", twice, twice.Data)
	}
	var sums []float64
	json.Unmarshal(sum.Data, &sums)
	if sum.Datatype != "FP32" || len(sums) != 2 || sums[0] != 6+10+0.5-1+1 {
		t.Fatalf("sum %+v %s, want row 0 = 16.5", sum, sum.Data)
	}
	if next.Datatype != "INT64" || string(next.Data) != "[11,9007199254740994]" {
		t.Fatalf("next %+v %s: want int64 values exact", next, next.Data)
	}

	// The same through the binary extension: one output asked for raw.
	var raw []byte
	le := binary.LittleEndian
	for _, v := range []float32{1, 2, 3, 4, 5, 6} {
		raw = le.AppendUint32(raw, math.Float32bits(v))
	}
	raw = le.AppendUint64(le.AppendUint64(raw, 10), 7)
	header := `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","parameters":{"binary_data_size":24}},` +
		`{"name":"n","shape":[2,1],"datatype":"INT64","parameters":{"binary_data_size":16}},` +
		`{"name":"w","shape":[2,1],"datatype":"FP64","data":[0,0]},{"name":"m","shape":[2,1],"datatype":"INT32","data":[0,0]},` +
		`{"name":"flag","shape":[2,1],"datatype":"BOOL","data":[false,false]}],` +
		`"outputs":[{"name":"next","parameters":{"binary_data":true}},{"name":"sum"}]}`
	status, a, rest := infer(t, url, "mixed", header+string(raw), len(header))
	if status != 200 || len(a.Outputs) != 2 || a.Outputs[0].Name != "next" || a.Outputs[0].Parameters == nil || a.Outputs[0].Parameters.BinaryDataSize != 16 || len(rest) != 16 {
		t.Fatalf("binary: status %d, %+v, %d bytes after the header", status, a, len(rest))
	}
	if le.Uint64(rest) != 11 || le.Uint64(rest[8:]) != 8 {
		t.Fatalf("next as binary: %v", rest)
	}

	// Wrong datatype and a missing input are 400s that say so.
	for _, bad := range []string{
		strings.Replace(body, `"datatype":"INT32"`, `"datatype":"INT64"`, 1),
		`{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`,
	} {
		req, _ := http.NewRequest("POST", url+"/v2/models/mixed/infer", bytes.NewReader([]byte(bad)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "input") {
			t.Fatalf("bad request: %d %s", resp.StatusCode, b)
		}
	}
}
