package main

import (
	"encoding/json"
	"testing"
)

func TestFallbackReason(t *testing.T) {
	for answer, want := range map[string]string{
		`{"model":"calling-score","score":0.5,"source":"fallback","version":1,"arm":"champion","reason":"timeout","request_id":"1"}`: "timeout",
		`{"model":"calling-score","score":0.5,"source":"fallback","reason":"circuit_open"}`:                                          "circuit_open",
		`{"model":"calling-score","score":0.5,"source":"fallback"}`:                                                                  "unknown",
		`{"source":"fallback","reason":"`: "unknown",
	} {
		if got := fallbackReason([]byte(answer)); got != want {
			t.Errorf("fallbackReason(%s) = %q, want %q", answer, got, want)
		}
	}
}

// The hot-swap run's request asks for a long budget and leaves the body it
// was made from as it was.
func TestSwapBodyKeepsTheOriginal(t *testing.T) {
	single, _ := jsonBodies()
	orig := string(single)
	body := append(bytesTrimmedClone(single), `,"budget_ms":`+swapBudget+`}`...)
	var req struct {
		Features []float64 `json:"features"`
		BudgetMS float64   `json:"budget_ms"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Features) != 39 || req.BudgetMS != 10000 {
		t.Errorf("swap body %s: %+v %v", body, req, err)
	}
	if string(single) != orig {
		t.Errorf("the original body changed: %s", single)
	}
}
