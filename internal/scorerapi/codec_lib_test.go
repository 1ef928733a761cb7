package scorerapi_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/modelops/modelops/internal/scorerapi"
)

// Both JSON codecs (scorer --json-codec) answer the same requests alike: the
// same status and the same answer, request ids aside, for /v1/score and OIP v2
// inference in JSON and binary, and the same refusal of a bad body.
func TestJSONCodecsAnswerAlike(t *testing.T) {
	s := newScorer(mustServed(t))
	data := make([]byte, 0, 4*39*4)
	for i := range 4 * 39 {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i%97)/97))
	}
	header := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[4,39],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`, len(data))
	row := "[" + nums(39, "0.25") + "]"
	type request struct {
		path, body string
		headerLen  int
	}
	requests := []request{
		{"/v1/score", `{"features":` + row + `,"key":"u1"}`, 0},
		{"/v1/score", `{"rows":[` + row + `,` + row + `],"budget_ms":5000}`, 0},
		{"/v1/score", `{"features":` + row + `,"extra":1}`, 0},
		{"/v1/score", `{"features":[1,2]}`, 0},
		{"/v2/models/calling-score/infer", `{"id":"a","inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":` + row + `}]}`, 0},
		{"/v2/models/calling-score/infer", header + string(data), len(header)},
		{"/v2/models/calling-score/infer", `{"inputs":[{"name":"input","shape":[1,39],"datatype":"FP32","data":"x"}]}`, 0},
	}
	serve := func(r request) (int, any) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(http.MethodPost)
		ctx.Request.SetRequestURI(r.path)
		ctx.Request.SetBody([]byte(r.body))
		if r.headerLen > 0 {
			ctx.Request.Header.Set(scorerapi.HeaderInferenceLength, fmt.Sprint(r.headerLen))
		}
		s.Handler().Serve(&ctx)
		body := ctx.Response.Body()
		if n := string(ctx.Response.Header.Peek(scorerapi.HeaderInferenceLength)); n != "" {
			var hl int
			fmt.Sscan(n, &hl)
			body = body[:hl]
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s %.60s: answer %q: %v", r.path, r.body, body, err)
		}
		delete(v, "request_id")
		if p, ok := v["parameters"].(map[string]any); ok {
			delete(p, "request_id")
		}
		return ctx.Response.StatusCode(), v
	}
	defer scorerapi.SetJSONCodec(scorerapi.HandCodec)
	for _, r := range requests {
		if err := scorerapi.SetJSONCodec(scorerapi.HandCodec); err != nil {
			t.Fatal(err)
		}
		handStatus, hand := serve(r)
		if err := scorerapi.SetJSONCodec(scorerapi.LibraryCodec); err != nil {
			t.Fatal(err)
		}
		libStatus, lib := serve(r)
		if handStatus != libStatus || !reflect.DeepEqual(hand, lib) {
			t.Errorf("%s %.60s: hand codec %d %v, library %d %v", r.path, r.body, handStatus, hand, libStatus, lib)
		}
	}
	if err := scorerapi.SetJSONCodec("sonic"); err == nil || !strings.Contains(err.Error(), "library") {
		t.Errorf("an unknown codec: %v", err)
	}
}
