package scorerapi_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/modelops/modelops/internal/wire"
)

// The scorer reads and writes its usual requests and answers with its own
// codecs (readScoreRequest, readOIPHeader, appendScoreResponse,
// appendOIPAnswer) and leaves every other shape to encoding/json. A field
// added to a wire type that a codec does not know would be dropped or
// misread: this test fails until the codec, and this list, are brought along.
func TestCodecsKnowEveryWireField(t *testing.T) {
	known := map[reflect.Type][]string{
		reflect.TypeFor[wire.ScoreRequest]():          {"model", "features", "rows", "key", "budget_ms", "fallback"},
		reflect.TypeFor[wire.ScoreResponse]():         {"model", "score", "scores", "source", "version", "arm", "reason", "request_id", "shape", "outputs", "shapes"},
		reflect.TypeFor[wire.OIPInferRequest]():       {"id", "parameters", "inputs", "outputs"},
		reflect.TypeFor[wire.OIPRequestParameters]():  {"key", "binary_data_output", "timeout", "fallback"},
		reflect.TypeFor[wire.OIPInputTensor]():        {"name", "shape", "datatype", "parameters", "data"},
		reflect.TypeFor[wire.OIPTensorParameters]():   {"binary_data_size", "binary_data"},
		reflect.TypeFor[wire.OIPRequestedOutput]():    {"name", "parameters"},
		reflect.TypeFor[wire.OIPInferResponse]():      {"model_name", "model_version", "id", "parameters", "outputs"},
		reflect.TypeFor[wire.OIPResponseParameters](): {"arm", "reason", "source", "request_id"},
		reflect.TypeFor[wire.OIPOutputTensor]():       {"name", "shape", "datatype", "parameters", "data"},
	}
	for typ, fields := range known {
		var got []string
		for f := range typ.Fields() {
			name, _, _ := cutComma(f.Tag.Get("json"))
			got = append(got, name)
		}
		if !slices.Equal(got, fields) {
			t.Errorf("%s has fields %v; its codec knows %v. Teach the codec the new field (or make it bail out to encoding/json), then update this list", typ, got, fields)
		}
	}
}

func cutComma(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
