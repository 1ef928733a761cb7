package api

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func FuzzScoreRequest(f *testing.F) {
	row := strings.TrimSuffix(strings.Repeat("0.5,", 39), ",")
	for _, s := range []string{`{"features":[` + row + `]}`, `{"rows":[[` + row + `],[1,"x"]]}`, `{"features":[null]}`, `{"features":[1e999]}`, `{`, ``, `{"model":"m","key":"k","budget_ms":5,"features":[1]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req ScoreRequest
		if err := decodeStrict(data, &req); err != nil {
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
	for _, s := range []string{`[1,2,3]`, `[[1,2],[3,4]]`, `[[[1]],[[2]]]`, `[null]`, `"x"`, `[1e39]`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
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
