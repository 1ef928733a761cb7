package api

import (
	"encoding/json"
	"fmt"
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
