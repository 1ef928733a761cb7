package main

import (
	"slices"
	"testing"
)

func TestParseModelCounts(t *testing.T) {
	got, err := parseModelCounts(" 1,10, 50,")
	if err != nil || !slices.Equal(got, []int{1, 10, 50}) {
		t.Fatalf("parseModelCounts: %v, %v; want [1 10 50]", got, err)
	}
	if got, err := parseModelCounts(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v; want none", got, err)
	}
	for _, bad := range []string{"0", "x", "1,-2", "501"} {
		if _, err := parseModelCounts(bad); err == nil {
			t.Errorf("parseModelCounts(%q) took it", bad)
		}
	}
}

func TestCardModelRenamesTheCard(t *testing.T) {
	got := cardModel.ReplaceAll([]byte(`{"model":  "calling-score", "format": "x"}`), []byte(`"model": "calling-score-2"`))
	if string(got) != `{"model": "calling-score-2", "format": "x"}` {
		t.Fatalf("renamed card %s", got)
	}
}
