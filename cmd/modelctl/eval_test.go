package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelops/modelops/internal/eval"
)

// eval runs the shipped model and a barely trained successor on the same rows
// (another sample of the shipped model's population): the successor is seen to
// be worse, with an interval that excludes no difference, and the rules are
// measured beside them.
func TestEvalComparesVersionsOnTheSameRows(t *testing.T) {
	url := mustControlPlane(t)
	dir := t.TempDir()
	shipped := filepath.Join("..", "..", "models", "calling_score")
	if _, _, err := cli(t, url, "push", filepath.Join(shipped, "model.onnx"), "--model", "calling-score", "--card", filepath.Join(shipped, "card.json")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "train", "--seed", "7", "--samples", "300", "--epochs", "2", "--quiet", "--out", filepath.Join(dir, "weak")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, url, "push", filepath.Join(dir, "weak", "model.onnx"), "--model", "calling-score", "--card", filepath.Join(dir, "weak", "card.json")); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "rows.csv")
	if _, _, err := cli(t, url, "gen-data", "--seed", "9", "--samples", "1500", "--out", data); err != nil {
		t.Fatal(err)
	}

	out, _, err := cli(t, url, "eval", "calling-score", "--versions", "1,2", "--data", data, "-o", "json", "--resamples", "500")
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	var got struct {
		Rows        int               `json:"rows"`
		Figures     []eval.Figures    `json:"figures"`
		Differences []eval.Difference `json:"differences"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("eval -o json: %v\n%s", err, out)
	}
	if got.Rows != 1500 || len(got.Figures) != 3 || got.Figures[2].Name != "rules" {
		t.Fatalf("eval -o json: %d rows, figures %+v; want 1500 rows and v1, v2, rules", got.Rows, got.Figures)
	}
	if v1, rules := got.Figures[0], got.Figures[2]; v1.R2 < 0.5 || v1.MSE >= rules.MSE {
		t.Errorf("the shipped model: R² %.3f, MSE %.5f against the rules' %.5f; want R² over 0.5 and better than the rules", v1.R2, v1.MSE, rules.MSE)
	}
	if d := got.Differences[0]; d.Name != "v2" || d.Verdict != "worse" || d.Low <= 0 {
		t.Errorf("v2 against v1: %+v, want worse with the interval above 0", d)
	}

	table, errOut, err := cli(t, url, "eval", "calling-score", "--versions", "1,2", "--data", data, "--resamples", "200", "--record")
	if err != nil || !strings.Contains(table, "v2  ") || !strings.Contains(table, "worse") || !strings.Contains(table, "calibration by decile") {
		t.Errorf("eval table: %v\n%s", err, table)
	}
	// --record keeps it on the control plane, as the model's latest evaluation.
	if !strings.Contains(errOut, "recorded as calling-score's latest evaluation on "+url) {
		t.Errorf("eval --record said %q", errOut)
	}
	hist, _, herr := cli(t, url, "history", "calling-score")
	if herr != nil || !strings.Contains(hist, "evaluated") || !strings.Contains(hist, "v1, v2 on 1500 rows of rows.csv") {
		t.Errorf("history after eval --record:\n%s\n%v", hist, herr)
	}

	for _, bad := range [][]string{
		{"eval", "calling-score", "--versions", "1,x", "--data", data},
		{"eval", "calling-score", "--versions", "1,1", "--data", data},
		{"eval", "calling-score", "--versions", "9", "--data", data},
		{"eval", "calling-score", "--versions", "1", "--data", filepath.Join(dir, "none.csv")},
	} {
		if _, _, err := cli(t, url, bad...); err == nil {
			t.Errorf("modelctl %s: no error", strings.Join(bad, " "))
		}
	}
}
